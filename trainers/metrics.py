"""Point metrics of a binary classifier: the one definition training, ensembling and reports share.

Point values come from scikit-learn wherever it has the metric. Two rules are
ours and live only here:

* Clipping. Probabilities are used as given, except in the log-loss (nll),
  where each p is clipped to [eps, 1 - eps] with eps = np.finfo(np.float64).eps,
  as scikit-learn's log_loss clips float64 input. So a confident mistake
  (p = 1 - 1e-12 for a negative) costs about -log(1e-12), the same per epoch
  and in the ensemble report; AUC sees the unclipped scores.
* ECE. The expected calibration error, which scikit-learn lacks, is

      ECE = sum_b (n_b / n) * |mean(y in b) - mean(p in b)|

  over 15 equal-width bins of the positive-class probability p:
  [0, 1/15), [1/15, 2/15), ..., [14/15, 1] (the last bin closed). This is the
  calibration of P(positive), not the "top-label confidence" ECE of Guo et al.
  (2017); for a binary task the two differ when p < 0.5.
"""
from __future__ import annotations

import numpy as np
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
    "LOG_LOSS_EPS",
    "METRIC_NAMES",
    "N_ECE_BINS",
    "binary_metrics",
    "check_binary",
    "clinical_metrics",
    "ece_bins",
    "expected_calibration_error",
    "log_loss_per_sample",
]

METRIC_NAMES = (
    "accuracy", "balanced_accuracy", "f1", "auc", "average_precision", "sensitivity",
    "specificity", "ppv", "npv", "brier", "nll", "ece",
)
BINARY_METRIC_NAMES = ("accuracy", "auc", "f1", "sensitivity", "specificity", "nll")  # per epoch
N_ECE_BINS = 15
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


def ece_bins(p: np.ndarray, n_bins: int = N_ECE_BINS) -> np.ndarray:
    """Bin index per sample; right-open bins except the last, so p = 1 lands in the top bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.digitize(p, edges, right=False)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = N_ECE_BINS) -> float:
    """ECE of P(positive) over `n_bins` equal-width bins, weighted by bin counts (module docstring)."""
    y, p = check_binary(y, p)
    bins = ece_bins(p, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    # n_b/n * |mean_y - mean_p| = |sum_y - sum_p| / n: empty bins add nothing.
    gap = np.abs(np.bincount(bins, weights=y, minlength=n_bins) - np.bincount(bins, weights=p, minlength=n_bins))
    return float(gap.sum() / count.sum())


def clinical_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric of METRIC_NAMES at `threshold` (positive when p >= threshold).

    Ratios with an empty denominator are 0 (scikit-learn's zero_division=0);
    AUC and average precision are nan when `y` holds one class.
    """
    y, p = check_binary(y, p)
    y_pred = (p >= threshold).astype(np.int64)
    both = len(np.unique(y)) == 2
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
    }


def binary_metrics(y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The per-epoch view of clinical_metrics: accuracy, auc, f1, sensitivity, specificity, nll."""
    metrics = clinical_metrics(y_true, p_positive, threshold)
    return {name: metrics[name] for name in BINARY_METRIC_NAMES}
