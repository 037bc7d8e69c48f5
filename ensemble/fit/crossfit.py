"""Cross-fitting over holdout groups: fit on K-1 folds of patients, predict the remaining fold.

The ensemble's weights, stacker, calibrator and threshold are all fitted on the
holdout, so the holdout cannot also score them. Cross-fitting scores every
holdout sample with a model that never saw its patient, and pools those
out-of-fold predictions into one set of metrics.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from .._checks import Interval, check_groups, check_labels, check_param
from ..errors import EnsembleError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["check_crossfit", "crossfit_predict", "crossfit_splits"]


class _Fittable(Protocol):
    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> _Fittable: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


def check_crossfit(
    y: np.ndarray,
    groups: np.ndarray | None,
    n_splits: int,
    *,
    class_names: Sequence[str] | None = None,
    data_name: str = "the holdout",
) -> None:
    """Refuse data too small for `n_splits`-fold cross-fitting: every fold needs a group of each class.

    Like scikit-learn's calibration.py, the message names both numbers.
    `class_names[k]` names label k in the message when given.
    """
    check_param("n_splits", n_splits, Interval(int, 2, None))
    y = check_labels(y, both_classes=False)
    groups = check_groups(groups, len(y))
    for label in (1, 0):
        n_groups = len(np.unique(groups[y == label]))
        if n_groups < n_splits:
            name = f" ({class_names[label]})" if class_names is not None else ""
            # the development pool is everything but the holdout: a larger holdout would shrink it
            more = "a larger holdout" if data_name == "the holdout" else "more patients of this class in the data"
            remedy = f"Use n_splits <= {n_groups} or {more}." if n_groups >= 2 else f"Use {more}."
            raise EnsembleError(
                f"Requesting {n_splits}-fold cross-fitting but {data_name} has only {n_groups} "
                f"group{'s' if n_groups != 1 else ''} of class {label}{name}; each fold needs at "
                f"least one group of each class. {remedy}"
            )


def crossfit_splits(
    y: np.ndarray, groups: np.ndarray | None, *, n_splits: int = 5, seed: int = 0, data_name: str = "the holdout"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, score) index pairs of StratifiedGroupKFold; every fitting part holds both classes."""
    check_crossfit(y, groups, n_splits, data_name=data_name)
    y = check_labels(y)
    groups = check_groups(groups, len(y))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    splits = list(folds.split(np.zeros(len(y)), y, groups))
    for k, (fit_idx, _) in enumerate(splits):
        if len(np.unique(y[fit_idx])) < 2:
            raise EnsembleError(
                f"cross-fitting fold {k} of {n_splits} leaves one class only in its fitting part; "
                "use fewer folds or a larger holdout"
            )
    return splits


def crossfit_predict(
    make_pipeline: Callable[[], _Fittable],
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None,
    *,
    n_splits: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Pooled out-of-fold P(positive): each fold is predicted by a fresh `make_pipeline()` fitted on the others.

    `make_pipeline()` returns an object with fit(X, y, groups) -> self and
    predict_proba(X) -> 1-D P(positive). X is indexed by rows (1-D or 2-D).
    """
    X = np.asarray(X)
    y = check_labels(y)
    groups = check_groups(groups, len(y))
    if X.shape[0] != len(y):
        raise EnsembleError(f"{X.shape[0]} rows of predictions for {len(y)} labels")
    out = np.full(len(y), np.nan)
    for fit_idx, score_idx in crossfit_splits(y, groups, n_splits=n_splits, seed=seed):
        model = make_pipeline().fit(X[fit_idx], y[fit_idx], groups=groups[fit_idx])
        out[score_idx] = np.asarray(model.predict_proba(X[score_idx]), dtype=np.float64)
    return out
