"""The decision threshold: a rule (THRESHOLD_RULES), or a target sensitivity for screening, met with confidence.

A sample is called positive when its probability is >= the threshold, the
convention of scikit-learn's roc_curve, whose thresholds are the observed
scores. Youden's J returns a threshold halfway between the chosen score and the
next lower one, so every choice is reproduced exactly on the fitting data.

The rules, all on the calibrated probability the ensemble ships:
- "youden": the threshold that maximises J = sensitivity + specificity - 1 on the fitting data. The maximum
  of a step function over ~460 images: it lands wherever a few patients' scores happen to fall.
- "smoothed_youden": the same maximum on kernel-smoothed class score distributions (Gaussian kernels on
  the logit scale, Silverman's bandwidth per class), which a few patients move less.
- "prevalence": the fitting data's positive share. Where the probabilities are calibrated, J's maximum on
  the population is where the density of positives' scores equals the negatives', which is where
  P(positive | score) equals the positive share: the rule reads that point from the calibrator instead of
  searching the noisy empirical curve.
- "half": probability 0.5, the most likely class (accuracy's optimum for calibrated probabilities).

A target sensitivity S is met on new data, not only on the data the threshold
is chosen on. The threshold that just reaches S there has a true sensitivity
near S, so on new patients it falls short about half the time. Instead the
threshold is the highest one whose one-sided 95% Clopper-Pearson lower bound
of sensitivity (k of n positives called positive: scipy.stats.beta.ppf(0.05, k,
n - k + 1)) is >= S, so its true sensitivity is >= S with about 95% confidence
(the threshold is the first to cross, so choosing it barely erodes the bound: 96%
of 300 simulated fits in tests/ensemble_tests/test_threshold.py).
`sensitivity_bound` gives what to expect on new data: the point and that bound.
"""
from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from scipy.special import expit, logit
from scipy.stats import beta, norm
from sklearn.metrics import roc_curve

from .._checks import Interval, check_labels, check_param, check_probabilities
from ..errors import EnsembleError
from .settings import THRESHOLD_RULES

__all__ = ["SENSITIVITY_CONFIDENCE", "THRESHOLD_RULES", "check_target_sensitivity", "check_threshold_rule",
           "choose_threshold", "sensitivity_bound", "sensitivity_lower_bound"]

SENSITIVITY_CONFIDENCE = 0.95  # a target sensitivity is met with this one-sided confidence
SMOOTHING_GRID = 2001  # points on the logit axis where smoothed_youden evaluates J


def sensitivity_lower_bound(called: np.ndarray | int, positives: int,
                            confidence: float = SENSITIVITY_CONFIDENCE) -> np.ndarray:
    """One-sided Clopper-Pearson lower confidence bound of the sensitivity `called` / `positives` (0 if none called)."""
    k = np.asarray(called, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(k > 0, beta.ppf(1 - confidence, np.maximum(k, 1), positives - k + 1), 0.0)


def check_target_sensitivity(target: object) -> float:
    check_param(
        "target_sensitivity", target, Interval(Real, 0, 1, closed="right"),
        hint="e.g. 0.95 for screening, or leave it unset to maximise Youden's J",
    )
    return float(target)


def check_threshold_rule(rule: object) -> str:
    if rule not in THRESHOLD_RULES:
        raise EnsembleError(f"unknown threshold rule {rule!r}; choose one of {', '.join(THRESHOLD_RULES)}")
    return str(rule)


def choose_threshold(y: np.ndarray, p: np.ndarray, *, target_sensitivity: float | None = None,
                     rule: str = "youden", confidence: float = SENSITIVITY_CONFIDENCE) -> float:
    """Threshold on P(positive) in [0, 1].

    Without a target sensitivity, `rule` (module docstring). "youden": maximise
    J = sensitivity + specificity - 1; among ties the highest threshold (fewest
    positive calls). Only when no threshold has J > 0 (a model no better than
    chance) is the answer 1.0, which calls nothing positive except probabilities of exactly 1.

    With `target_sensitivity`: the highest threshold whose one-sided `confidence`
    Clopper-Pearson lower bound of sensitivity on (y, p) is >= the target (module
    docstring). Where too few positives make that impossible even when every
    positive is called (20 positives bound 20/20 at 0.86), the highest threshold
    that calls every positive; `sensitivity_bound` then reports a bound below the target.
    """
    target = None if target_sensitivity is None else check_target_sensitivity(target_sensitivity)
    rule = check_threshold_rule(rule)
    check_param("confidence", confidence, Interval(Real, 0, 1, closed="neither"))
    y = check_labels(y)
    p = check_probabilities(p, len(y))
    if target is None and rule != "youden":
        return _RULES[rule](y, p)
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    if target is None:
        # np.argmax takes the first maximum; thresholds descend, so the highest tied threshold.
        best = int(np.argmax(tpr - fpr))
    else:
        # A target sensitivity, met with the fewest false positives. The lower bound only
        # grows as the threshold falls (more positives called), so every threshold below a
        # qualifying one also qualifies but calls more negatives positive. The operating point
        # wanted is the least aggressive one that still meets the target: the HIGHEST threshold
        # whose lower bound is >= target, which has the best specificity among those that qualify.
        n_pos = int(y.sum())
        tps = np.rint(tpr * n_pos)
        qualifies = sensitivity_lower_bound(tps, n_pos, confidence) >= target
        best = int(np.flatnonzero(qualifies)[0]) if qualifies.any() else int(np.flatnonzero(tps == n_pos)[0])
    # Any threshold between the chosen score and the next lower one makes the same calls on
    # the fitting data; the midpoint leaves a margin on both sides for new patients, instead
    # of sitting on a fitting sample's score (1.0 when a calibrator saturates). thresholds[0]
    # is +inf (call nothing positive); map it into [0, 1].
    chosen = float(np.clip(thresholds[best], 0.0, 1.0))
    below = p[p < chosen]
    return (chosen + float(below.max())) / 2 if below.size else chosen


def _smoothed_youden(y: np.ndarray, p: np.ndarray) -> float:
    """J's maximum where each class's scores are a Gaussian kernel density on the logit scale."""
    z = logit(np.clip(p, 1e-6, 1 - 1e-6))
    grid = np.linspace(z.min(), z.max(), SMOOTHING_GRID)
    # F_c(t): the smoothed share of class c's scores below t; J(t) = F_0(t) - F_1(t)
    below = [norm.cdf((grid[:, None] - z[y == c][None, :]) / _bandwidth(z[y == c])).mean(axis=1) for c in (0, 1)]
    return float(expit(grid[int(np.argmax(below[0] - below[1]))]))


def _bandwidth(z: np.ndarray) -> float:
    """Silverman's rule of thumb, 0.9 min(sd, IQR / 1.34) n^(-1/5): the IQR keeps a few outlying scores from
    widening the kernel (scipy's gaussian_kde "silverman" uses the sd alone)."""
    q75, q25 = np.percentile(z, [75, 25])
    spread = min(float(np.std(z, ddof=1)) if len(z) > 1 else 0.0, (q75 - q25) / 1.34) or float(np.std(z)) or 1.0
    return 0.9 * spread * len(z) ** -0.2


_RULES = {
    "smoothed_youden": _smoothed_youden,
    "prevalence": lambda y, p: float(np.mean(y)),
    "half": lambda y, p: 0.5,
}


def sensitivity_bound(y: np.ndarray, p: np.ndarray, threshold: float, *,
                      target_sensitivity: float | None = None, rule: str = "youden",
                      confidence: float = SENSITIVITY_CONFIDENCE) -> dict[str, Any]:
    """What sensitivity `threshold` promises on new data, from the (y, p) it was chosen on: metrics.json's
    "operating_point" (the point, its one-sided Clopper-Pearson lower bound, and whether the target is met)."""
    y = check_labels(y, both_classes=False)
    p = check_probabilities(p, len(y))
    n_pos, called = int(y.sum()), int(((p >= threshold) & (y == 1)).sum())
    lower = float(sensitivity_lower_bound(called, n_pos, confidence)) if n_pos else float("nan")
    out: dict[str, Any] = {
        "rule": (THRESHOLD_RULES[rule] if target_sensitivity is None else
                 f"the highest threshold whose one-sided {confidence:.0%} Clopper-Pearson lower bound of "
                 f"sensitivity is >= {target_sensitivity:g}"),
        "target_sensitivity": target_sensitivity, "confidence": confidence, "threshold": float(threshold),
        "positives": n_pos, "called_positive": called,
        "sensitivity": called / n_pos if n_pos else float("nan"), "sensitivity_lower_bound": lower,
    }
    if target_sensitivity is not None:
        out["target_met"] = bool(lower >= target_sensitivity)
    expect = (f"on new data expect sensitivity about {out['sensitivity']:.3f}, and at least {lower:.3f} with "
              f"{confidence:.0%} confidence ({called} of {n_pos} positives called positive where it was chosen)")
    if target_sensitivity is not None and not out["target_met"]:
        expect += (f"; the target {target_sensitivity:g} cannot be promised with {confidence:.0%} confidence from "
                   f"{n_pos} positives, even calling all of them: more positives are needed")
    out["statement"] = f"Threshold {threshold:.4f} ({out['rule']}): {expect}."
    return out
