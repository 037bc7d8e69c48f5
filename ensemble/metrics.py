"""Clinical metrics of a binary classifier, with 95% group-bootstrap intervals.

Point values come from scikit-learn wherever it has the metric. The expected
calibration error (ECE), which scikit-learn lacks, is defined here as

    ECE = sum_b (n_b / n) * |mean(y in b) - mean(p in b)|

over 15 equal-width bins of the positive-class probability p:
[0, 1/15), [1/15, 2/15), ..., [14/15, 1] (the last bin closed). This is the
calibration of P(positive), not the "top-label confidence" ECE of Guo et al.
(2017); for a binary task the two differ when p < 0.5.

Intervals resample patients, not images: a cluster bootstrap that draws groups
with replacement and keeps every sample of a drawn group. Each resample is
scored as a weighted sample (weight = how often its group was drawn), which is
the same as scoring the materialised resample and lets 1000 resamples run as
a few matrix products.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ._checks import check_groups, check_labels, check_probabilities
from .errors import EnsembleError

__all__ = ["METRIC_NAMES", "N_ECE_BINS", "bootstrap_metrics", "clinical_metrics", "expected_calibration_error"]

METRIC_NAMES = (
    "accuracy", "balanced_accuracy", "f1", "auc", "average_precision", "sensitivity",
    "specificity", "ppv", "npv", "brier", "nll", "ece",
)
N_ECE_BINS = 15

# Resamples are scored in chunks so that the (resamples x samples) weight matrix stays near 32 MB.
_CHUNK_CELLS = 4_000_000


def _ece_bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index per sample; right-open bins except the last, so p = 1 lands in the top bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.digitize(p, edges, right=False)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = N_ECE_BINS) -> float:
    """ECE of P(positive) over `n_bins` equal-width bins, weighted by bin counts (module docstring)."""
    y = check_labels(y, both_classes=False)
    p = check_probabilities(p, len(y))
    bins = _ece_bins(p, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    # n_b/n * |mean_y - mean_p| = |sum_y - sum_p| / n: empty bins add nothing.
    gap = np.abs(np.bincount(bins, weights=y, minlength=n_bins) - np.bincount(bins, weights=p, minlength=n_bins))
    return float(gap.sum() / count.sum())


def clinical_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric of METRIC_NAMES at `threshold` (positive when p >= threshold).

    Ratios with an empty denominator are 0 (scikit-learn's zero_division=0);
    AUC and average precision are nan when `y` holds one class.
    """
    y = check_labels(y, both_classes=False)
    p = check_probabilities(p, len(y))
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
        "nll": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
    }


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, nan where den is 0: a metric a resample cannot define is left out of its interval."""
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _weighted_metrics(y: np.ndarray, p: np.ndarray, W: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Every metric for each row of sample weights W (resamples x samples).

    Equals clinical_metrics on the materialised resample wherever the metric is
    defined there; where a resample leaves a denominator empty (no positives,
    no predicted positives, one class for AUC) the value is nan, not 0.
    """
    pos = y == 1
    pred = p >= threshold
    tp, fn = W @ (pos & pred), W @ (pos & ~pred)
    fp, tn = W @ (~pos & pred), W @ (~pos & ~pred)
    n_pos, n_neg = tp + fn, fp + tn
    total = n_pos + n_neg
    sens, spec = _ratio(tp, n_pos), _ratio(tn, n_neg)
    both = (n_pos > 0) & (n_neg > 0)

    # log loss clipped as scikit-learn clips it
    eps = np.finfo(np.float64).eps
    pc = np.clip(p, eps, 1 - eps)
    nll = -(y * np.log(pc) + (1 - y) * np.log1p(-pc))

    bins = _ece_bins(p, N_ECE_BINS)
    onehot = np.zeros((len(p), N_ECE_BINS))
    onehot[np.arange(len(p)), bins] = 1.0
    ece = np.abs(W @ (onehot * y[:, None]) - W @ (onehot * p[:, None])).sum(axis=1)

    # Ranking metrics over the distinct scores: weights of positives and negatives per score.
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    Ws = W[:, order]
    wpos = np.add.reduceat(Ws * pos[order], starts, axis=1)
    wneg = np.add.reduceat(Ws * ~pos[order], starts, axis=1)
    # AUC as Mann-Whitney: P(score_pos > score_neg) + 1/2 P(tie), which is the trapezoidal ROC area.
    neg_below = np.cumsum(wneg, axis=1) - wneg
    auc = _ratio((wpos * (neg_below + 0.5 * wneg)).sum(axis=1), n_pos * n_neg)
    # Average precision: sum over thresholds (descending) of recall increment x precision.
    tp_desc = np.cumsum(wpos[:, ::-1], axis=1)
    fp_desc = np.cumsum(wneg[:, ::-1], axis=1)
    precision = _ratio(tp_desc, tp_desc + fp_desc)
    ap = _ratio(np.nansum(wpos[:, ::-1] * precision, axis=1), n_pos)

    return {
        "accuracy": _ratio(tp + tn, total),
        "balanced_accuracy": np.where(both, (sens + spec) / 2, np.nan),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc": np.where(both, auc, np.nan),
        "average_precision": np.where(both, ap, np.nan),
        "sensitivity": sens,
        "specificity": spec,
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "brier": _ratio(W @ (p - y) ** 2, total),
        "nll": _ratio(W @ nll, total),
        "ece": _ratio(ece, total),
    }


def bootstrap_metrics(
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray | None,
    threshold: float | np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, object]:
    """{metric: {"value", "ci_low", "ci_high"}} plus "threshold" and "n": the metrics.json layout.

    `value` is clinical_metrics on all of (y, p). The interval is the percentile
    interval over `n_boot` resamples of whole groups (patients); a resample in
    which a metric is undefined (e.g. no positives for sensitivity, one class
    for AUC) is skipped for that metric. `groups=None` resamples samples.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise EnsembleError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise EnsembleError(f"confidence must be in (0, 1), got {confidence!r}")
    y = check_labels(y, both_classes=False)
    p = check_probabilities(p, len(y))
    if len(y) == 0:
        raise EnsembleError("no samples to score")
    groups = check_groups(groups, len(y))
    _, codes = np.unique(groups, return_inverse=True)
    n_groups = int(codes.max()) + 1

    rng = np.random.default_rng(seed)
    # How often each group is drawn when drawing n_groups groups with replacement.
    draws = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    chunk = max(1, _CHUNK_CELLS // len(y))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in METRIC_NAMES}
    for start in range(0, n_boot, chunk):
        W = draws[start:start + chunk][:, codes].astype(np.float64)
        for name, values in _weighted_metrics(y, p, W, threshold).items():
            parts[name].append(values)

    point = clinical_metrics(y, p, threshold)
    alpha = (1 - confidence) / 2
    out: dict[str, object] = {}
    for name in METRIC_NAMES:
        values = np.concatenate(parts[name])
        values = values[np.isfinite(values)]
        if len(values):
            low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
        else:
            low = high = float("nan")
        out[name] = {"value": point[name], "ci_low": float(low), "ci_high": float(high)}
    # a per-sample array is each cross-fitting fold's own threshold: no single number to report
    out["threshold"] = float(threshold) if np.ndim(threshold) == 0 else None
    out["n"] = int(len(y))
    return out
