"""Input checks shared by the ensemble modules: validate at the edge, quote the bad value."""
from __future__ import annotations

import numpy as np

from .errors import EnsembleError

__all__ = ["check_groups", "check_labels", "check_margins", "check_member_matrix", "check_probabilities", "plain"]


def check_labels(y: object, *, both_classes: bool = True) -> np.ndarray:
    """Labels as int64 in {0, 1}; 1 is the positive class."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise EnsembleError(f"labels must be 1-D, got shape {arr.shape}")
    values = np.unique(arr)
    if not np.isin(values, (0, 1)).all():
        raise EnsembleError(f"labels must be 0 (negative) or 1 (positive), got values {values[:10].tolist()}")
    if both_classes and len(values) < 2:
        raise EnsembleError(
            f"labels hold one class only ({values.tolist()}); fitting needs positives and negatives"
        )
    return arr.astype(np.int64)


def check_margins(m: object, n: int | None = None) -> np.ndarray:
    """One margin per sample (positive minus negative logit), 1-D float64; an (n, 1) column is accepted."""
    arr = np.asarray(m, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise EnsembleError(f"margins must be 1-D (one per sample), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise EnsembleError(
            f"margins hold {int((~np.isfinite(arr)).sum())} non-finite values; check the member predictions"
        )
    if n is not None and len(arr) != n:
        raise EnsembleError(f"{len(arr)} margins for {n} labels")
    return arr


def check_member_matrix(X: object, n: int | None = None, n_members: int | None = None) -> np.ndarray:
    """Member margins as float64 of shape (n_samples, n_members)."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise EnsembleError(
            f"member predictions must be 2-D (n_samples, n_members), got shape {arr.shape}; "
            "reshape a single member with X[:, None]"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EnsembleError(f"member predictions are empty, shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise EnsembleError(
            f"member predictions hold {int((~np.isfinite(arr)).sum())} non-finite margins; check the member predictions"
        )
    if n is not None and arr.shape[0] != n:
        raise EnsembleError(f"{arr.shape[0]} rows of member predictions for {n} labels")
    if n_members is not None and arr.shape[1] != n_members:
        raise EnsembleError(f"fitted on {n_members} members, got predictions of {arr.shape[1]}; keep the member order")
    return arr


def check_groups(groups: object, n: int) -> np.ndarray:
    """Group ids (patients), one per sample; None makes every sample its own group."""
    if groups is None:
        return np.arange(n)
    arr = np.asarray(groups)
    if arr.ndim != 1 or len(arr) != n:
        raise EnsembleError(f"groups must hold one id per sample ({n}), got shape {arr.shape}")
    return arr


def check_probabilities(p: object, n: int | None = None) -> np.ndarray:
    """Probabilities of the positive class, 1-D float64 in [0, 1]."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise EnsembleError(f"probabilities must be 1-D (P(positive) per sample), got shape {arr.shape}")
    if not (np.isfinite(arr).all() and (arr >= 0).all() and (arr <= 1).all()):
        raise EnsembleError(
            f"probabilities must lie in [0, 1], got min {np.nanmin(arr) if arr.size else 'n/a'} and "
            f"max {np.nanmax(arr) if arr.size else 'n/a'}; pass expit(margin), not the margin"
        )
    if n is not None and len(arr) != n:
        raise EnsembleError(f"{len(arr)} probabilities for {n} labels")
    return arr


def plain(params: dict) -> dict:
    """get_params() with numpy scalars turned into Python ones, so json.dumps takes it."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
