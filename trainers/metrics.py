"""Point metrics of a binary classifier: the one definition training, ensembling and reports share.

Point values come from scikit-learn wherever it has the metric. Three rules are
ours and live only here:

* Clipping. Probabilities are used as given, except in the log-loss (nll),
  where each p is clipped to [eps, 1 - eps] with eps = np.finfo(np.float64).eps,
  as scikit-learn's log_loss clips float64 input. So a confident mistake
  (p = 1 - 1e-12 for a negative) costs about -log(1e-12), the same per epoch
  and in the ensemble report; AUC sees the unclipped scores.
* ECE. The expected calibration error, which scikit-learn lacks, is

      ECE = sum_b (n_b / n) * |mean(y in b) - mean(p in b)|

  over equal-mass bins of the positive-class probability p (ECE_BIN_RULE):
  round(sqrt(n) / 2) bins, clipped to [2, 15], cut at the percentiles of p
  exactly as scikit-learn's calibration_curve(strategy="quantile") cuts them,
  so the reliability figure plots the bins the ECE sums over. Equal-width bins
  leave most bins nearly empty where p crowds near 0 and 1, and a fixed 15 bins
  of ~5 images measure noise: every |mean(y) - mean(p)| is biased upward by its
  sampling error, about 0.4 / sqrt(images per bin). With sqrt(n)/2 bins both the
  resolution and the images per bin (~2 sqrt(n)) grow with n. This is the
  calibration of P(positive), not the "top-label confidence" ECE of Guo et al.
  (2017); for a binary task the two differ when p < 0.5.
* Calibration slope and intercept (Cox 1958): the logistic regression
  P(y = 1) = expit(a + b * logit(p)) (scikit-learn's LogisticRegression,
  unpenalised), p clipped as in the log-loss. b is the slope, a the intercept;
  b = 1 and a = 0 are perfect. b < 1: predictions too extreme (over-confident),
  b > 1: too timid; with b near 1, a > 0 means too low, a < 0 too high. Both are
  nan where the fit has no finite answer: one class, or classes that p
  separates completely (no positive ranked below a negative, or the reverse).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from .errors import MetricsError

__all__ = [
    "BINARY_METRIC_NAMES",
    "ECE_BIN_RULE",
    "LOG_LOSS_EPS",
    "METRIC_NAMES",
    "binary_metrics",
    "calibration_line",
    "calibration_logit",
    "check_binary",
    "clinical_metrics",
    "ece_bin_count",
    "ece_bins",
    "ece_edges",
    "expected_calibration_error",
    "log_loss_per_sample",
    "separated",
]

METRIC_NAMES = (
    "accuracy", "balanced_accuracy", "f1", "auc", "average_precision", "sensitivity",
    "specificity", "ppv", "npv", "brier", "nll", "ece", "calibration_slope", "calibration_intercept",
)
BINARY_METRIC_NAMES = ("accuracy", "auc", "f1", "sensitivity", "specificity", "nll")  # per epoch
ECE_MIN_BINS, ECE_MAX_BINS = 2, 15
ECE_BIN_RULE = (f"equal-mass bins cut at percentiles of p, round(sqrt(n) / 2) of them clipped to "
                f"[{ECE_MIN_BINS}, {ECE_MAX_BINS}]")
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


def check_binary(y: object, p: object) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 in {0, 1} and P(positive) as float64 in [0, 1], one per sample."""
    y_arr = np.asarray(y)
    if y_arr.ndim != 1:
        raise MetricsError(f"labels must be 1-D, got shape {y_arr.shape}")
    values = np.unique(y_arr)
    if not np.isin(values, (0, 1)).all():
        raise MetricsError(f"labels must be 0 (negative) or 1 (positive), got values {values[:10].tolist()}")
    p_arr = np.asarray(p, dtype=np.float64)
    if p_arr.ndim != 1:
        raise MetricsError(f"probabilities must be 1-D (P(positive) per sample), got shape {p_arr.shape}")
    if not (np.isfinite(p_arr).all() and (p_arr >= 0).all() and (p_arr <= 1).all()):
        raise MetricsError(
            f"probabilities must lie in [0, 1], got min {np.nanmin(p_arr) if p_arr.size else 'n/a'} and "
            f"max {np.nanmax(p_arr) if p_arr.size else 'n/a'}; pass expit(margin), not the margin"
        )
    if len(p_arr) != len(y_arr):
        raise MetricsError(f"{len(p_arr)} probabilities for {len(y_arr)} labels")
    return y_arr.astype(np.int64), p_arr


def log_loss_per_sample(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """-log P(true label) per sample, p clipped to [LOG_LOSS_EPS, 1 - LOG_LOSS_EPS] (module docstring)."""
    pc = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return -(y * np.log(pc) + (1 - y) * np.log1p(-pc))


def ece_bin_count(n: int) -> int:
    """How many ECE bins n samples get: round(sqrt(n) / 2), clipped to [2, 15] (module docstring)."""
    return int(np.clip(round(math.sqrt(n) / 2), ECE_MIN_BINS, ECE_MAX_BINS))


def ece_edges(p: np.ndarray, n_bins: int | None = None) -> np.ndarray:
    """The inner edges of equal-mass bins of `p`: its percentiles, as calibration_curve(strategy="quantile")."""
    n_bins = ece_bin_count(len(p)) if n_bins is None else n_bins
    return np.percentile(p, np.linspace(0, 100, n_bins + 1))[1:-1]


def ece_bins(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index per sample, as calibration_curve assigns it: a p equal to an edge goes to the lower bin."""
    return np.searchsorted(edges, p)


def expected_calibration_error(
    y: np.ndarray, p: np.ndarray, n_bins: int | None = None, *, edges: np.ndarray | None = None
) -> float:
    """ECE of P(positive) over equal-mass bins, weighted by bin counts (module docstring).

    n_bins: default ece_bin_count(len(p)). edges: fixed inner bin edges instead (the bootstrap scores
    every resample over the bins of the whole sample).
    """
    y, p = check_binary(y, p)
    edges = ece_edges(p, n_bins) if edges is None else np.asarray(edges, dtype=np.float64)
    bins = ece_bins(p, edges)
    k = len(edges) + 1
    # n_b/n * |mean_y - mean_p| = |sum_y - sum_p| / n: empty bins add nothing.
    gap = np.abs(np.bincount(bins, weights=y, minlength=k) - np.bincount(bins, weights=p, minlength=k))
    return float(gap.sum() / len(y))


def calibration_logit(p: np.ndarray) -> np.ndarray:
    """logit(p), p clipped to [LOG_LOSS_EPS, 1 - LOG_LOSS_EPS] as the log-loss clips it: 0 and 1 stay finite."""
    return logit(np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS))


def separated(y: np.ndarray, x: np.ndarray) -> bool:
    """Whether `x` separates the classes (one class, or no positive below a negative or no negative below a
    positive): then the logistic regression of y on x has no finite maximum-likelihood fit."""
    pos, neg = x[y == 1], x[y == 0]
    return not (len(pos) and len(neg)) or pos.min() >= neg.max() or neg.min() >= pos.max()


def calibration_line(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the logistic recalibration P(y = 1) = expit(a + b logit(p)); nan, nan where
    `separated` (module docstring)."""
    y, p = check_binary(y, p)
    x = calibration_logit(p)
    if separated(y, x):
        return float("nan"), float("nan")
    fit = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(x[:, None], y)
    return float(fit.intercept_[0]), float(fit.coef_[0, 0])


def clinical_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric of METRIC_NAMES at `threshold` (positive when p >= threshold).

    Ratios with an empty denominator are 0 (scikit-learn's zero_division=0);
    AUC and average precision are nan when `y` holds one class; the calibration
    slope and intercept are nan where `separated` (module docstring).
    """
    y, p = check_binary(y, p)
    y_pred = (p >= threshold).astype(np.int64)
    both = len(np.unique(y)) == 2
    intercept, slope = calibration_line(y, p)
    return {
        "accuracy": float(accuracy_score(y, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, y_pred)) if both else float("nan"),
        "f1": float(f1_score(y, y_pred, zero_division=0)),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, p)) if both else float("nan"),
        "sensitivity": float(recall_score(y, y_pred, pos_label=1, zero_division=0)),
        "specificity": float(recall_score(y, y_pred, pos_label=0, zero_division=0)),
        "ppv": float(precision_score(y, y_pred, pos_label=1, zero_division=0)),
        "npv": float(precision_score(y, y_pred, pos_label=0, zero_division=0)),
        "brier": float(brier_score_loss(y, p, pos_label=1)),
        "nll": float(log_loss_per_sample(y, p).mean()),
        "ece": expected_calibration_error(y, p),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }


def binary_metrics(y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The per-epoch view of clinical_metrics: accuracy, auc, f1, sensitivity, specificity, nll."""
    metrics = clinical_metrics(y_true, p_positive, threshold)
    return {name: metrics[name] for name in BINARY_METRIC_NAMES}
