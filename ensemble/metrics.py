"""95% group-bootstrap intervals for the clinical metrics.

The metrics themselves (METRIC_NAMES, clinical_metrics, the ECE and the one
clipping rule of the log-loss) are defined once, in trainers.metrics, and
re-exported here so that `ensemble.metrics.clinical_metrics` keeps working.

Intervals resample patients, not images: a cluster bootstrap that draws groups
with replacement and keeps every sample of a drawn group. Each resample is
scored as a weighted sample (weight = how often its group was drawn), which is
the same as scoring the materialised resample and lets 1000 resamples run as
a few matrix products.
"""
from __future__ import annotations

from numbers import Real

import numpy as np

from trainers.metrics import (
    METRIC_NAMES,
    N_ECE_BINS,
    clinical_metrics,
    ece_bins,
    expected_calibration_error,
    log_loss_per_sample,
)

from ._checks import Interval, check_groups, check_labels, check_param, check_probabilities
from .errors import EnsembleError

__all__ = ["METRIC_NAMES", "N_ECE_BINS", "bootstrap_metrics", "clinical_metrics", "expected_calibration_error"]

# Resamples are scored in chunks so that the (resamples x samples) weight matrix stays near 32 MB.
_CHUNK_CELLS = 4_000_000


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

    nll = log_loss_per_sample(y, p)  # clipped exactly as clinical_metrics clips it

    bins = ece_bins(p, N_ECE_BINS)
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
    check_param("n_boot", n_boot, Interval(int, 1, None))
    check_param("confidence", confidence, Interval(Real, 0, 1, closed="neither"))
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
