"""The decision threshold: Youden's J by default, or a target sensitivity for screening.

A sample is called positive when its probability is >= the threshold, the
convention of scikit-learn's roc_curve, whose thresholds are the observed
scores. The threshold returned lies halfway between the chosen score and the
next lower one, so every choice is reproduced exactly on the fitting data.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np
from sklearn.metrics import roc_curve

from ._checks import Interval, check_labels, check_param, check_probabilities

__all__ = ["check_target_sensitivity", "choose_threshold"]


def check_target_sensitivity(target: object) -> float:
    check_param(
        "target_sensitivity", target, Interval(Real, 0, 1, closed="right"),
        hint="e.g. 0.95 for screening, or leave it unset to maximise Youden's J",
    )
    return float(target)


def choose_threshold(y: np.ndarray, p: np.ndarray, *, target_sensitivity: float | None = None) -> float:
    """Threshold on P(positive) in [0, 1].

    Default: maximise Youden's J = sensitivity + specificity - 1; among ties the
    highest threshold (fewest positive calls). Only when no threshold has J > 0
    (a model no better than chance) is the answer 1.0, which calls nothing
    positive except probabilities of exactly 1.

    With `target_sensitivity`: the highest threshold whose sensitivity on
    (y, p) is >= the target.
    """
    target = None if target_sensitivity is None else check_target_sensitivity(target_sensitivity)
    y = check_labels(y)
    p = check_probabilities(p, len(y))
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    if target is None:
        # np.argmax takes the first maximum; thresholds descend, so the highest tied threshold.
        best = int(np.argmax(tpr - fpr))
    else:
        # A target sensitivity, met with the fewest false positives. Sensitivity
        # only grows as the threshold falls, so every threshold below a qualifying one also
        # qualifies but calls more negatives positive. The operating point wanted is the
        # least aggressive one that still meets the target: the HIGHEST threshold with
        # sensitivity >= target, which has the best specificity among those that qualify.
        # Compare counts, not float ratios, so that 19/20 meets 0.95 exactly.
        n_pos = int(y.sum())
        tps = np.rint(tpr * n_pos)
        needed = math.ceil(target * n_pos - 1e-9)
        best = int(np.flatnonzero(tps >= needed)[0])
    # Any threshold between the chosen score and the next lower one makes the same calls on
    # the fitting data; the midpoint leaves a margin on both sides for new patients, instead
    # of sitting on a fitting sample's score (1.0 when a calibrator saturates). thresholds[0]
    # is +inf (call nothing positive); map it into [0, 1].
    chosen = float(np.clip(thresholds[best], 0.0, 1.0))
    below = p[p < chosen]
    return (chosen + float(below.max())) / 2 if below.size else chosen
