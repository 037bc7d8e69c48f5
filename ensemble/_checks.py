"""Input and parameter checks shared by the ensemble modules: validate at the edge, quote the bad value."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .errors import EnsembleError

__all__ = [
    "Interval",
    "check_groups",
    "check_labels",
    "check_margins",
    "check_member_matrix",
    "check_param",
    "check_probabilities",
    "plain",
    "validate_params",
]


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


def plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into Python ones, recursively, so json.dumps takes it."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# Parameter rules, declared once per estimator as scikit-learn's `_parameter_constraints`:
#     _parameter_constraints = {"n_iter": [Interval(int, 1, None)]}
# and checked by validate_params(self) at fit time (scikit-learn's own helper is private).


@dataclass(frozen=True)
class Interval:
    """Numbers of `kind` (int or numbers.Real) between left and right; None is unbounded.

    closed: "left", "right", "both" or "neither" says which ends belong to it.
    bool is never a number here, though Python says it is an int.
    """

    kind: type
    left: float | None
    right: float | None
    closed: str = "both"

    def accepts(self, value: object) -> bool:
        numpy_kind = np.integer if self.kind is int else np.number
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (self.kind, numpy_kind)):
            return False
        lo_closed, hi_closed = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.left is not None and not (value >= self.left if lo_closed else value > self.left):
            return False
        if self.right is not None and not (value <= self.right if hi_closed else value < self.right):
            return False
        return True

    def __str__(self) -> str:
        lo_closed, hi_closed = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.kind is int and self.left == 1 and lo_closed and self.right is None:
            return "a positive integer"
        kind = "an integer " if self.kind is int else "a number "
        if self.left is not None and self.right is not None:
            return f"{kind}in {'[' if lo_closed else '('}{self.left}, {self.right}{']' if hi_closed else ')'}"
        if self.left is not None:
            return f"{kind}{'>=' if lo_closed else '>'} {self.left}"
        if self.right is not None:
            return f"{kind}{'<=' if hi_closed else '<'} {self.right}"
        return "an integer" if self.kind is int else "a number"


Rule = Union[Interval, None]  # None in a rule list: the parameter may be None


def check_param(name: str, value: object, rules: Interval | list[Rule], *, hint: str = "") -> None:
    """Raise EnsembleError quoting `value` and the rule(s), then `hint`, unless one of `rules` accepts it."""
    rules = rules if isinstance(rules, list) else [rules]
    for rule in rules:
        if (value is None) if rule is None else rule.accepts(value):
            return
    allowed = " or ".join("None" if rule is None else str(rule) for rule in rules)
    raise EnsembleError(f"{name} must be {allowed}, got {value!r}" + (f"; {hint}" if hint else ""))


def validate_params(estimator: object) -> None:
    """Check every parameter `type(estimator)._parameter_constraints` names (a {name: rules} dict)."""
    for name, rules in getattr(type(estimator), "_parameter_constraints", {}).items():
        check_param(name, getattr(estimator, name), rules)
