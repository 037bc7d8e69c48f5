"""EnsemblePipeline: combiner, then calibrator, then decision threshold, fitted on holdout predictions.

    pipe = EnsemblePipeline(method="greedy", calibration="auto", target_sensitivity=0.95)
    pipe.fit(X_holdout, y_holdout, groups_holdout)        # X: member margins
    p = pipe.predict_proba(X_new)                         # calibrated P(positive), 1-D
    json.dumps(pipe.to_dict())                            # the ensemble folder's record
    EnsemblePipeline.from_dict(d)                         # rebuilt without pickle

Fitting order, all on the same fitting data (the holdout, or K-1 folds of it
when cross-fitted):
1. the combiner on X;
2. the calibrator on the combiner's margins. For stacking those are the
   stacker's out-of-fold margins, because a meta-learner's in-sample margins
   are over-confident by construction; for mean (nothing learned from y) and
   greedy (a handful of counts) they are its in-sample margins;
3. the threshold on the calibrated probabilities of step 2's margins.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator

from .._checks import check_groups, check_labels, check_member_matrix, plain
from .calibration import CALIBRATORS, calibrator_from_dict, make_calibrator, select_calibrator
from .combine import COMBINERS, StackingEnsemble, combiner_from_dict, make_combiner
from ..errors import EnsembleError
from .threshold import check_target_sensitivity, check_threshold_rule, choose_threshold

__all__ = ["AUTO", "CALIBRATIONS", "FORMAT", "EnsemblePipeline"]

FORMAT = "lungsweep-ensemble/1"
AUTO = "auto"  # not a calibrator: the pipeline picks one by cross-fitted log-loss (select_calibrator)
CALIBRATIONS = (*CALIBRATORS, AUTO)  # what `calibration` accepts


class EnsemblePipeline(BaseEstimator):
    """Combine member margins, calibrate, threshold.

    method: "mean" | "greedy" | "stack"; calibration: "temperature" | "platt" |
    "isotonic" | "none" | "auto" (lowest cross-fitted log-loss);
    threshold_rule: how the threshold is chosen (ensemble.fit.threshold.THRESHOLD_RULES);
    target_sensitivity: None for the rule, else e.g. 0.95. n_splits and seed
    drive the group folds that stacking and "auto" need.

    Learned: combiner_, calibrator_, calibration_ (the resolved name),
    calibration_scores_ (cross-fitted log-loss per candidate, "auto" only),
    threshold_, n_members_.
    """

    def __init__(
        self,
        *,
        method: str = "mean",
        calibration: str = "temperature",
        target_sensitivity: float | None = None,
        threshold_rule: str = "youden",
        n_splits: int = 5,
        seed: int = 0,
    ) -> None:
        self.method = method
        self.calibration = calibration
        self.target_sensitivity = target_sensitivity
        self.threshold_rule = threshold_rule
        self.n_splits = n_splits
        self.seed = seed

    def _check_params(self) -> None:
        if self.method not in COMBINERS:
            raise EnsembleError(f"unknown ensemble method {self.method!r}; choose one of {sorted(COMBINERS)}")
        if self.calibration not in CALIBRATIONS:
            raise EnsembleError(
                f"unknown calibration {self.calibration!r}; choose one of {sorted(CALIBRATORS) + [AUTO]}"
            )
        if self.target_sensitivity is not None:
            check_target_sensitivity(self.target_sensitivity)
        check_threshold_rule(self.threshold_rule)

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> EnsemblePipeline:
        """Fit on holdout member margins X (n_samples, n_members); groups=None makes each sample its own group."""
        self._check_params()
        y = check_labels(y)
        X = check_member_matrix(X, len(y))
        groups = check_groups(groups, len(y))

        # 1. combiner
        combiner = make_combiner(self.method)
        if isinstance(combiner, StackingEnsemble):
            combiner.set_params(n_splits=self.n_splits, seed=self.seed)
        self.combiner_ = combiner.fit(X, y, groups)

        # 2. calibrator, on margins the calibrator can trust (module docstring)
        margins = self._fitting_margins(X, y, groups)
        self.calibration_scores_: dict[str, float] | None = None
        if self.calibration == AUTO:
            self.calibration_, self.calibration_scores_ = select_calibrator(
                margins, y, groups, n_splits=self.n_splits, seed=self.seed
            )
        else:
            self.calibration_ = self.calibration
        self.calibrator_ = make_calibrator(self.calibration_).fit(margins, y)

        # 3. threshold
        self.threshold_ = choose_threshold(
            y, self.calibrator_.predict_proba(margins), target_sensitivity=self.target_sensitivity,
            rule=self.threshold_rule,
        )
        self.n_members_ = int(X.shape[1])
        return self

    def threshold_proba(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """The calibrated probabilities on the fitting data that `threshold_` was chosen on (fit, step 3)."""
        return self.calibrator_.predict_proba(self._fitting_margins(X, y, check_groups(groups, len(y))))

    def _fitting_margins(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """The combined margins on the fitting data: out of fold for stacking, whose in-sample margins flatter it."""
        if isinstance(self.combiner_, StackingEnsemble):
            return self.combiner_.out_of_fold_predict_margin(X, y, groups)
        return self.combiner_.predict_margin(X)

    @classmethod
    def single_member(cls, threshold: float = 0.5) -> EnsemblePipeline:
        """One model as trained: its own probability, no calibration, a fixed threshold."""
        pipe = cls(method="mean", calibration="none")
        pipe.combiner_ = make_combiner("mean").fit(np.zeros((2, 1)), np.array([0, 1]))
        pipe.calibration_, pipe.calibration_scores_ = "none", None
        pipe.calibrator_ = make_calibrator("none").fit(np.zeros(2), np.array([0, 1]))
        pipe.threshold_, pipe.n_members_ = float(threshold), 1
        return pipe

    def uncalibrated_proba(self, X: np.ndarray) -> np.ndarray:
        """The combiner's own P(positive), for "before calibration" reporting."""
        return expit(self.combiner_.predict_margin(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(positive), 1-D (not scikit-learn's (n, 2))."""
        return self.calibrator_.predict_proba(self.combiner_.predict_margin(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 (positive) where the calibrated probability is >= threshold_, else 0."""
        return (self.predict_proba(X) >= self.threshold_).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """Every learned parameter as plain JSON values (json.dumps works on it as is)."""
        return {
            "format": FORMAT,
            "params": plain(self.get_params()),
            "n_members": self.n_members_,
            "combiner": self.combiner_.to_dict(),
            "calibration": self.calibration_,
            "calibration_scores": self.calibration_scores_,
            "calibrator": self.calibrator_.to_dict(),
            "threshold": float(self.threshold_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnsemblePipeline:
        """A fitted pipeline from to_dict()'s output, without pickle."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise EnsembleError(
                f"not a {FORMAT} record (format {found!r}); was it written by EnsemblePipeline.to_dict?"
            )
        try:
            pipe = cls(**d["params"])
            pipe.combiner_ = combiner_from_dict(d["combiner"])
            pipe.calibrator_ = calibrator_from_dict(d["calibrator"])
            pipe.calibration_ = str(d["calibration"])
            pipe.calibration_scores_ = d.get("calibration_scores")
            pipe.threshold_ = float(d["threshold"])
            pipe.n_members_ = int(d["n_members"])
        except (KeyError, TypeError) as e:
            raise EnsembleError(
                f"the ensemble record lacks or garbles {e}; rewrite it with EnsemblePipeline.to_dict"
            ) from e
        return pipe
