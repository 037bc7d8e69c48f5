"""Calibrators: scikit-learn style estimators from one margin per sample to a calibrated P(positive).

A margin is the positive minus the negative logit, so expit(margin) is the
uncalibrated probability. Every calibrator here:

    fit(margins, y, groups=None) -> self    # groups accepted so all estimators fit alike
    predict_proba(margins) -> 1-D P(positive)
    to_dict() / from_dict(d)                # learned state as plain JSON values, no pickle

`select_calibrator` ("auto") picks the one with the lowest cross-fitted log-loss.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from ._checks import check_labels, check_margins, plain
from .crossfit import crossfit_predict
from .errors import EnsembleError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CALIBRATORS",
    "Identity",
    "IsotonicCalibration",
    "PlattScaling",
    "TemperatureScaling",
    "calibrator_from_dict",
    "make_calibrator",
    "select_calibrator",
]


class _Calibrator(BaseEstimator):
    """Shared plumbing; subclasses set `name`, `_state_keys` and implement `_fit`, `predict_proba`."""

    name: ClassVar[str]
    _state_keys: ClassVar[tuple[str, ...]] = ()

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> _Calibrator:
        y = check_labels(y)
        self._fit(check_margins(X, len(y)), y)
        return self

    def _fit(self, m: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """{"name", "params", "state"}: every learned value as floats and lists of floats."""
        state = {}
        for key in self._state_keys:
            value = getattr(self, key)
            state[key] = value.tolist() if isinstance(value, np.ndarray) else float(value)
        return {"name": self.name, "params": plain(self.get_params()), "state": state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Calibrator:
        """A fitted calibrator from to_dict()'s output."""
        try:
            est = cls(**d["params"])
            for key in cls._state_keys:
                value = d["state"][key]
                setattr(est, key, np.asarray(value, dtype=np.float64) if isinstance(value, list) else float(value))
        except (KeyError, TypeError) as e:
            raise EnsembleError(f"cannot rebuild a {cls.name!r} calibrator from {d!r}: {e}") from e
        est._restore()
        return est

    def _restore(self) -> None:
        """Hook for derived state after from_dict."""


class TemperatureScaling(_Calibrator):
    """P = expit(margin / T) with T > 0 minimising the log-loss (Guo et al., 2017).

    One parameter: it can soften or sharpen but never reorder, so AUC is kept.
    T is searched on log T in [log 1e-3, log 1e3] (bounded Brent).
    """

    name = "temperature"
    _state_keys = ("T_",)

    def __init__(self, *, max_iter: int = 500) -> None:
        self.max_iter = max_iter

    def _fit(self, m: np.ndarray, y: np.ndarray) -> None:
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise EnsembleError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        sign = 2 * y - 1

        def nll(log_t: float) -> float:
            # -log expit(s * z) = logaddexp(0, -s * z), exact for any margin
            return float(np.logaddexp(0.0, -sign * m / np.exp(log_t)).mean())

        res = minimize_scalar(
            nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded",
            options={"maxiter": self.max_iter, "xatol": 1e-8},
        )
        self.T_ = float(np.exp(res.x))

    def transform_margin(self, X: np.ndarray) -> np.ndarray:
        """The calibrated margin m / T: a model export can fold T into its last layer."""
        return check_margins(X) / self.T_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return expit(self.transform_margin(X))


class PlattScaling(_Calibrator):
    """P = expit(a * margin + b): Platt's method, fitted as scikit-learn's LogisticRegression on the margin.

    `C` is large so the fit is nearly unpenalised, yet finite so that a holdout
    the members separate perfectly still gives a finite slope. (scikit-learn's
    own CalibratedClassifierCV "sigmoid" adds Platt's target smoothing instead.)
    """

    name = "platt"
    _state_keys = ("coef_", "intercept_")

    def __init__(self, *, C: float = 1e4) -> None:
        self.C = C

    def _fit(self, m: np.ndarray, y: np.ndarray) -> None:
        if not self.C > 0:
            raise EnsembleError(f"C must be > 0, got {self.C!r}")
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(m[:, None], y)
        self.coef_ = float(lr.coef_[0, 0])
        self.intercept_ = float(lr.intercept_[0])

    def transform_margin(self, X: np.ndarray) -> np.ndarray:
        """The calibrated margin a * m + b."""
        return self.coef_ * check_margins(X) + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return expit(self.transform_margin(X))


class IsotonicCalibration(_Calibrator):
    """scikit-learn's IsotonicRegression of y on expit(margin), clipped outside the fitted range.

    Prediction interpolates linearly between (X_thresholds_, y_thresholds_), as
    IsotonicRegression.predict does, so an export needs only those two lists.
    Non-parametric: it needs a larger holdout than temperature or Platt, and
    may return exactly 0 or 1.
    """

    name = "isotonic"
    _state_keys = ("X_thresholds_", "y_thresholds_")

    def __init__(self) -> None:
        pass

    def _fit(self, m: np.ndarray, y: np.ndarray) -> None:
        self.isotonic_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
        self.isotonic_.fit(expit(m), y)
        self.X_thresholds_ = np.asarray(self.isotonic_.X_thresholds_, dtype=np.float64)
        self.y_thresholds_ = np.asarray(self.isotonic_.y_thresholds_, dtype=np.float64)

    def _restore(self) -> None:
        # The step function through its own knots is already monotone: refitting gives the same curve.
        self.isotonic_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
        self.isotonic_.fit(self.X_thresholds_, self.y_thresholds_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.interp(expit(check_margins(X)), self.X_thresholds_, self.y_thresholds_)


class Identity(_Calibrator):
    """No calibration ("none"): P = expit(margin). The baseline "auto" must beat."""

    name = "none"

    def __init__(self) -> None:
        pass

    def _fit(self, m: np.ndarray, y: np.ndarray) -> None:
        self.fitted_ = True

    def _restore(self) -> None:
        self.fitted_ = True

    def transform_margin(self, X: np.ndarray) -> np.ndarray:
        return check_margins(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return expit(check_margins(X))


CALIBRATORS: dict[str, type[_Calibrator]] = {
    cls.name: cls for cls in (TemperatureScaling, PlattScaling, IsotonicCalibration, Identity)
}


def make_calibrator(name: str) -> _Calibrator:
    """An unfitted calibrator by name: one of CALIBRATORS ("auto" is resolved by select_calibrator)."""
    if name not in CALIBRATORS:
        raise EnsembleError(
            f"unknown calibration {name!r}; choose one of {sorted(CALIBRATORS)}, or 'auto' in an EnsemblePipeline"
        )
    return CALIBRATORS[name]()


def calibrator_from_dict(d: dict[str, Any]) -> _Calibrator:
    """A fitted calibrator from any calibrator's to_dict()."""
    name = d.get("name") if isinstance(d, dict) else None
    if name not in CALIBRATORS:
        raise EnsembleError(f"cannot rebuild a calibrator: name {name!r} is not one of {sorted(CALIBRATORS)}")
    return CALIBRATORS[name].from_dict(d)


def select_calibrator(
    margins: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None,
    *,
    candidates: Sequence[str] = ("temperature", "platt", "isotonic", "none"),
    n_splits: int = 5,
    seed: int = 0,
) -> tuple[str, dict[str, float]]:
    """("auto") The candidate with the lowest cross-fitted log-loss, and every candidate's loss.

    All candidates are scored on the same StratifiedGroupKFold folds of the
    groups; ties go to the earlier candidate.
    """
    candidates = list(candidates)
    if not candidates:
        raise EnsembleError("select_calibrator needs at least one candidate")
    for name in candidates:
        if name not in CALIBRATORS:
            raise EnsembleError(f"unknown calibration candidate {name!r}; choose from {sorted(CALIBRATORS)}")
    y = check_labels(y)
    margins = check_margins(margins, len(y))
    scores: dict[str, float] = {}
    for name in candidates:
        oof = crossfit_predict(
            lambda name=name: make_calibrator(name), margins, y, groups, n_splits=n_splits, seed=seed
        )
        scores[name] = float(log_loss(y, oof, labels=[0, 1]))
    best = min(candidates, key=lambda name: scores[name])
    return best, scores
