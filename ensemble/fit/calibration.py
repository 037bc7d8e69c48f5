"""Calibrators: scikit-learn style estimators from one margin per sample to a calibrated P(positive).

A margin is the positive minus the negative logit, so expit(margin) is the
uncalibrated probability. Every calibrator here:

    fit(margins, y, groups=None) -> self    # groups accepted so all estimators fit alike
    predict_proba(margins) -> 1-D P(positive)
    to_torch()                              # the same arithmetic as a torch module, margin (B,) -> P (B,), float64
    to_dict() / from_dict(d)                # learned state as plain JSON values, no pickle

to_torch() uses only ops every ONNX runtime has (elementwise, sigmoid, clamp),
so a calibrator is exported exactly as it predicts.

`select_calibrator` ("auto") picks the one with the lowest cross-fitted log-loss.
"""
from __future__ import annotations

from numbers import Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from torch import nn

from .._checks import Interval, check_labels, check_margins, plain, validate_params
from .crossfit import crossfit_predict
from ..errors import EnsembleError

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


class _AffineSigmoid(nn.Module):
    """margin (B,) -> expit(scale * margin + offset), float64: temperature, Platt and no calibration."""

    def __init__(self, scale: float, offset: float) -> None:
        super().__init__()
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, margin: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(margin * self.scale + self.offset)


class _Interp(nn.Module):
    """margin (B,) -> np.interp(expit(margin), x, y), float64, with elementwise ops only.

    np.interp is y[0] plus, for each knot interval, its slope times the part of
    the interval below p: a sum of clipped ramps. It clips to y[0] and y[-1]
    outside [x[0], x[-1]] as np.interp does.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        width = np.diff(x)
        slope = np.divide(np.diff(y), width, out=np.zeros_like(width), where=width > 0)
        self.register_buffer("knots", torch.as_tensor(x[:-1], dtype=torch.float64))
        self.register_buffer("widths", torch.as_tensor(width, dtype=torch.float64))
        self.register_buffer("slopes", torch.as_tensor(slope, dtype=torch.float64))
        self.y0 = float(y[0])

    def forward(self, margin: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(margin).unsqueeze(1)
        ramps = torch.minimum(torch.clamp(p - self.knots, min=0.0), self.widths)
        return self.y0 + (ramps * self.slopes).sum(dim=1)


class _Calibrator(BaseEstimator):
    """Shared plumbing; subclasses set `name`, `_state_keys` and implement `_fit`, `predict_proba`, `to_torch`."""

    name: ClassVar[str]
    _state_keys: ClassVar[tuple[str, ...]] = ()
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> _Calibrator:
        validate_params(self)
        y = check_labels(y)
        self._fit(check_margins(X, len(y)), y)
        return self

    def to_torch(self) -> nn.Module:
        """A module computing predict_proba: margin (B,), float64 -> P(positive) (B,), float64."""
        raise NotImplementedError

    def _fit(self, m: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """{"name", "params", "state"}: every learned value as floats and lists of floats."""
        state = {key: plain(getattr(self, key)) for key in self._state_keys}
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
    _parameter_constraints = {"max_iter": [Interval(int, 1, None)]}

    def __init__(self, *, max_iter: int = 500) -> None:
        self.max_iter = max_iter

    def _fit(self, m: np.ndarray, y: np.ndarray) -> None:
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

    def to_torch(self) -> nn.Module:
        return _AffineSigmoid(1.0 / self.T_, 0.0)


class PlattScaling(_Calibrator):
    """P = expit(a * margin + b): Platt's method, fitted as scikit-learn's LogisticRegression on the margin.

    `C` is large so the fit is nearly unpenalised, yet finite so that a holdout
    the members separate perfectly still gives a finite slope. (scikit-learn's
    own CalibratedClassifierCV "sigmoid" adds Platt's target smoothing instead.)
    """

    name = "platt"
    _state_keys = ("coef_", "intercept_")
    _parameter_constraints = {"C": [Interval(Real, 0, None, closed="neither")]}

    def __init__(self, *, C: float = 1e4) -> None:
        self.C = C

    def _fit(self, m: np.ndarray, y: np.ndarray) -> None:
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(m[:, None], y)
        self.coef_ = float(lr.coef_[0, 0])
        self.intercept_ = float(lr.intercept_[0])

    def transform_margin(self, X: np.ndarray) -> np.ndarray:
        """The calibrated margin a * m + b."""
        return self.coef_ * check_margins(X) + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return expit(self.transform_margin(X))

    def to_torch(self) -> nn.Module:
        return _AffineSigmoid(self.coef_, self.intercept_)


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

    def to_torch(self) -> nn.Module:
        return _Interp(self.X_thresholds_, self.y_thresholds_)


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

    def to_torch(self) -> nn.Module:
        return _AffineSigmoid(1.0, 0.0)


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
