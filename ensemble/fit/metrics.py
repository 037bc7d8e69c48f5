"""95% bootstrap intervals for the clinical metrics, over groups (patients) when there are enough.

The metrics themselves (METRIC_NAMES, clinical_metrics, the ECE bins, the
calibration slope and intercept and the one clipping rule of the log-loss) are
defined once, in trainers.metrics, and re-exported here so that
`ensemble.metrics.clinical_metrics` keeps working.

What is resampled (`interval_unit`): whole groups, when every class has at
least MIN_GROUPS_PER_CLASS groups; a cluster bootstrap that draws groups with
replacement and keeps every sample of a drawn group. With fewer, a group
bootstrap draws the same one or two groups over and over and its intervals
are zero-width or span the whole range, so images are resampled instead,
within each class (a stratified bootstrap), and metrics.json says so: those
intervals are too narrow where images of one patient are alike.

Each resample is scored as a weighted sample (weight = how often its unit was
drawn), which is the same as scoring the materialised resample and lets 1000
resamples run as a few matrix products. The ECE of every resample is taken over
the bins of the whole sample.

The interval is BCa (Efron 1987): the percentile interval with its ends moved
by the bias correction z0 (where the estimate sits among its resamples) and the
acceleration a (the skewness of leave-one-unit-out jackknife values). A plain
percentile interval is an interval for the resamples, not for the estimate: for
a statistic biased upward under resampling, as the ECE is (noise only adds to
|mean(y) - mean(p)|), it sits above the estimate, e.g. ECE 0.102 [0.101, 0.319].
BCa moves it back. No interval is given, and `interval.missing` says why,
where the statistic is undefined on the data, undefined in more than
1 - MIN_DEFINED_SHARE of the resamples, where the interval would be zero-width
(most resamples equal the estimate) or span the whole range [0, 1] of a
bounded metric, or where it would not contain the estimate (a bias BCa cannot
correct: the estimate lies beyond the central 95% of its resamples). So every
interval in metrics.json contains its point estimate.
"""
from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from scipy.special import expit
from scipy.stats import norm

from trainers.metrics import (
    ECE_BIN_RULE,
    METRIC_NAMES,
    calibration_logit,
    clinical_metrics,
    ece_bin_count,
    ece_bins,
    ece_edges,
    expected_calibration_error,
    log_loss_per_sample,
)

from .._checks import Interval, check_groups, check_labels, check_param, check_probabilities
from ..errors import EnsembleError

__all__ = [
    "CALIBRATION_LINE", "ECE_BIN_RULE", "MIN_DEFINED_SHARE", "MIN_GROUPS_PER_CLASS", "METRIC_NAMES",
    "bootstrap_metrics", "clinical_metrics", "ece_bin_count", "ece_bins", "ece_edges", "expected_calibration_error",
    "interval_unit", "metric_text", "which_estimate",
]

# A group bootstrap needs this many groups in each class; with fewer, images are resampled within each class.
# On simulated clustered holdouts (bench/ensembling/bench_intervals.py) the group bootstrap's 95% AUC interval covers the
# truth 0.90 of the time from 5 groups a class on, the image bootstrap's 0.58-0.68 at any size.
MIN_GROUPS_PER_CLASS = 5
# A metric undefined (e.g. no predicted positives for ppv) in more resamples than 1 - this share gets no interval.
MIN_DEFINED_SHARE = 0.9
# Metrics that live in [0, 1]: an interval from 0 to 1 says nothing, so none is given.
_UNBOUNDED = ("nll", "calibration_slope", "calibration_intercept")
# Leave-one-unit-out jackknife for the BCa acceleration; above this many units, delete-a-block with this many blocks.
_JACKKNIFE_BLOCKS = 400
CALIBRATION_LINE = ("logistic regression of the outcome on logit(p) (Cox 1958): slope 1 and intercept 0 are "
                    "perfect; slope < 1 means over-confident predictions")
_CLASS_NAMES = ("negative", "positive")
# Resamples are scored in chunks so that the (resamples x samples) weight matrix stays near 32 MB.
_CHUNK_CELLS = 4_000_000


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, nan where den is 0: a metric a resample cannot define is left out of its interval."""
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _weighted_line(y: np.ndarray, x: np.ndarray, W: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(intercept, slope) of the weighted logistic regression of y on x for each row of W.

    The same fit as trainers.metrics.calibration_line (scikit-learn) on the materialised resample, for
    1000 resamples at once: Newton's method, each step halved until the likelihood does not fall (the
    log-likelihood is concave, so this converges). nan where a row's data are `separated` or it does not settle.
    """
    rows = W > 0
    pos, neg = rows & (y == 1), rows & (y == 0)
    lo_pos, hi_pos = np.where(pos, x, np.inf).min(axis=1), np.where(pos, x, -np.inf).max(axis=1)
    lo_neg, hi_neg = np.where(neg, x, np.inf).min(axis=1), np.where(neg, x, -np.inf).max(axis=1)
    todo = np.flatnonzero((lo_pos < hi_neg) & (lo_neg < hi_pos))  # not separated, as trainers.metrics.separated
    a, b = np.full(len(W), np.nan), np.full(len(W), np.nan)
    if len(todo) and len(W) > 1:  # resamples start from the whole sample's fit, a few steps from their own
        a[todo], b[todo] = (v[0] for v in _weighted_line(y, x, np.ones((1, len(x)))))
    start = np.flatnonzero(~np.isfinite(a[todo]))
    a[todo[start]], b[todo[start]] = 0.0, 1.0  # else from perfect calibration

    def loglik(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        eta = a[:, None] + b[:, None] * x
        return (w * (y * eta - np.logaddexp(0.0, eta))).sum(axis=1)

    now = loglik(W[todo], a[todo], b[todo])
    for _ in range(max_iter):
        if not len(todo):
            break
        w, a0, b0 = W[todo], a[todo], b[todo]
        mu = expit(a0[:, None] + b0[:, None] * x)
        r, s = w * (y - mu), w * mu * (1 - mu)
        g0, g1 = r.sum(axis=1), r @ x
        h00, h01, h11 = s.sum(axis=1), s @ x, s @ (x * x)
        det = h00 * h11 - h01 * h01
        with np.errstate(divide="ignore", invalid="ignore"):
            da, db = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        step = np.ones(len(todo))
        new = loglik(w, a0 + da, b0 + db)
        for _ in range(40):  # halve the steps that lower the likelihood
            worse = ~(new >= now - 1e-12 * np.abs(now))
            if not worse.any():
                break
            step[worse] /= 2
            new[worse] = loglik(w[worse], a0[worse] + step[worse] * da[worse], b0[worse] + step[worse] * db[worse])
        a[todo], b[todo] = a0 + step * da, b0 + step * db
        settled = (np.abs(step * da) <= 1e-10 * (1 + np.abs(a0))) & (np.abs(step * db) <= 1e-10 * (1 + np.abs(b0)))
        todo, now = todo[~settled], new[~settled]
    a[todo] = b[todo] = np.nan  # did not settle in max_iter steps
    return a, b


def _weighted_metrics(
    y: np.ndarray, p: np.ndarray, W: np.ndarray, threshold: float | np.ndarray, edges: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every metric for each row of sample weights W (resamples x samples).

    Equals clinical_metrics on the materialised resample wherever the metric is
    defined there, except that the ECE is taken over `edges` (default: the
    equal-mass bins of all of p) rather than over the resample's own bins;
    where a resample leaves a denominator empty (no positives, no predicted
    positives, one class for AUC) the value is nan, not 0.
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

    edges = ece_edges(p) if edges is None else edges
    onehot = np.zeros((len(p), len(edges) + 1))
    onehot[np.arange(len(p)), ece_bins(p, edges)] = 1.0
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
    intercept, slope = _weighted_line(y, calibration_logit(p), W)

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
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }


def interval_unit(y: np.ndarray, groups: np.ndarray | None) -> tuple[str, str, dict[str, int]]:
    """("group" | "image", why, groups per class): what the bootstrap resamples (module docstring)."""
    per_class = {_CLASS_NAMES[c]: len(set(np.asarray(groups)[y == c].tolist())) if groups is not None
                 else int((y == c).sum()) for c in (0, 1)}
    if groups is None:
        return "image", (f"no groups were given (given groups, whole groups are resampled when every class has "
                         f"at least {MIN_GROUPS_PER_CLASS})"), per_class
    few = {name: k for name, k in per_class.items() if k < MIN_GROUPS_PER_CLASS}
    if not few:
        return "group", (f"every class has at least {MIN_GROUPS_PER_CLASS} groups "
                         f"({', '.join(f'{c} {k}' for c, k in per_class.items())})"), per_class
    which = " and ".join(f"the {c} class has {'only ' if k else ''}{k} group{'' if k == 1 else 's'}"
                         for c, k in few.items())
    return "image", (f"{which} (a group bootstrap needs at least {MIN_GROUPS_PER_CLASS} in each class); images "
                     "of one group are alike, so these intervals are too narrow"), per_class


def _draws(rng: np.random.Generator, strata: list[np.ndarray], n_units: int, size: int) -> np.ndarray:
    """(size, n_units) counts: each stratum's units drawn with replacement, as many as it holds."""
    draws = np.zeros((size, n_units), dtype=np.float64)
    for units in strata:
        draws[:, units] = rng.multinomial(len(units), np.full(len(units), 1.0 / len(units)), size=size)
    return draws


def _jackknife_weights(codes: np.ndarray, n_units: int, rng: np.random.Generator) -> np.ndarray:
    """(blocks, samples) weights, each leaving out one unit, or one block of units when there are many."""
    block = np.arange(n_units) if n_units <= _JACKKNIFE_BLOCKS else rng.permutation(n_units) % _JACKKNIFE_BLOCKS
    n_blocks = int(block.max()) + 1
    return (block[codes][None, :] != np.arange(n_blocks)[:, None]).astype(np.float64)


def _bca(point: float, values: np.ndarray, jackknife: np.ndarray, confidence: float) -> tuple[float, float] | str:
    """The BCa interval of `point` from finite bootstrap `values`, or why there is none."""
    below = np.mean(values < point) + 0.5 * np.mean(values == point)
    if below in (0.0, 1.0):
        side = "below" if below == 1.0 else "above"
        return f"every resample lies {side} the estimate (a bias the bootstrap cannot correct)"
    z0 = norm.ppf(below)
    jack = jackknife[np.isfinite(jackknife)]
    d = jack.mean() - jack if len(jack) > 1 else np.zeros(1)
    spread = float((d * d).sum())
    accel = float((d ** 3).sum() / (6 * spread ** 1.5)) if spread > 0 else 0.0
    z = norm.ppf([(1 - confidence) / 2, (1 + confidence) / 2])
    shares = norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    low, high = np.percentile(values, 100 * shares)
    return float(low), float(high)


def _interval(name: str, point: float, values: np.ndarray, jackknife: np.ndarray,
              confidence: float) -> tuple[float, float] | str:
    """The interval of one metric, or the reason it has none (module docstring)."""
    if not np.isfinite(point):
        return "undefined on these data" + (
            " (the predictions separate the classes, or one class is missing: the fit has no finite slope)"
            if name.startswith("calibration_") else " (one class is missing)")
    finite = values[np.isfinite(values)]
    if len(finite) < MIN_DEFINED_SHARE * len(values):
        return f"undefined in {len(values) - len(finite)} of {len(values)} resamples"
    found = _bca(point, finite, jackknife, confidence)
    if isinstance(found, str):
        return found
    low, high = found
    if low == high:
        return f"{np.mean(finite == point):.0%} of resamples give exactly {point:.4g}: a zero-width interval"
    if not low <= point <= high:
        return (f"the bias-corrected interval [{low:.4g}, {high:.4g}] misses the estimate: a bias the "
                "bootstrap cannot correct on these data")
    if name not in _UNBOUNDED and low <= 0.0 and high >= 1.0:
        return "the resamples span the whole range [0, 1]"
    return low, high


def bootstrap_metrics(
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray | None,
    threshold: float | np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """{metric: {"value", "ci_low", "ci_high"}} plus "threshold", "n", "interval" and "calibration_measures".

    `value` is clinical_metrics on all of (y, p). The interval is the BCa interval
    over `n_boot` resamples of whole groups (patients) when every class has at
    least MIN_GROUPS_PER_CLASS groups, else of images within each class
    (`interval_unit`); `groups=None` resamples images. A resample in which a metric
    is undefined (e.g. no positives for sensitivity) is skipped for that metric.
    Where there is no interval, ci_low and ci_high are None and
    `interval["missing"][metric]` says why (module docstring).
    """
    check_param("n_boot", n_boot, Interval(int, 1, None))
    check_param("confidence", confidence, Interval(Real, 0, 1, closed="neither"))
    y = check_labels(y, both_classes=False)
    p = check_probabilities(p, len(y))
    if len(y) == 0:
        raise EnsembleError("no samples to score")
    given = None if groups is None else check_groups(groups, len(y))
    unit, why, per_class = interval_unit(y, given)
    if unit == "group":
        _, codes = np.unique(given, return_inverse=True)
        strata = [np.arange(int(codes.max()) + 1)]
    else:  # images, within each class
        codes = np.arange(len(y))
        strata = [idx for idx in (np.flatnonzero(y == 0), np.flatnonzero(y == 1)) if len(idx)]
    n_units = int(codes.max()) + 1

    rng = np.random.default_rng(seed)
    edges = ece_edges(p)  # every resample's ECE over the whole sample's bins
    chunk = max(1, _CHUNK_CELLS // len(y))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in METRIC_NAMES}
    for start in range(0, n_boot, chunk):
        W = _draws(rng, strata, n_units, min(chunk, n_boot - start))[:, codes]
        for name, values in _weighted_metrics(y, p, W, threshold, edges).items():
            parts[name].append(values)
    jackknife = _weighted_metrics(y, p, _jackknife_weights(codes, n_units, rng), threshold, edges)

    point = clinical_metrics(y, p, threshold)
    out: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name in METRIC_NAMES:
        found = _interval(name, point[name], np.concatenate(parts[name]), jackknife[name], confidence)
        if isinstance(found, str):
            missing[name] = found
            low = high = None
        else:
            low, high = found
        out[name] = {"value": point[name], "ci_low": low, "ci_high": high}
    # a per-sample array is each cross-fitting fold's own threshold: no single number to report
    out["threshold"] = float(threshold) if np.ndim(threshold) == 0 else None
    out["n"] = int(len(y))
    resampled = ("whole groups (patients)" if unit == "group" else "images within each class")
    out["interval"] = {
        "method": "BCa bootstrap", "confidence": confidence, "resamples": n_boot, "unit": unit, "why": why,
        "groups_per_class": per_class, "min_groups_per_class": MIN_GROUPS_PER_CLASS, "missing": missing,
        "statement": f"{confidence:.0%} intervals: BCa bootstrap over {n_boot} resamples of {resampled}, "
                     f"because {why}.",
    }
    out["calibration_measures"] = {
        "ece_bins": len(edges) + 1, "ece_bin_rule": ECE_BIN_RULE, "slope_and_intercept": CALIBRATION_LINE,
    }
    return out


def metric_text(block: dict[str, Any], name: str, digits: int = 3) -> str:
    """One metric of a bootstrap_metrics block as words: "0.912 [0.871, 0.944]", or the value and why no interval."""
    m = block.get(name)
    if not isinstance(m, dict):
        return "n/a"
    if m.get("ci_low") is not None:
        return f"{m['value']:.{digits}f} [{m['ci_low']:.{digits}f}, {m['ci_high']:.{digits}f}]"
    why = block.get("interval", {}).get("missing", {}).get(name, "not computed")
    return f"{m['value']:.{digits}f} (no interval: {why})"


def which_estimate(n_holdout: int, n_crossfit: int) -> str:
    """Which of a k-fold job's two estimates to lean on, in words (the terminal's and the report's)."""
    larger = "development cross-fit" if n_crossfit > n_holdout else "holdout"
    return (f"The {larger} is the larger-sample estimate ({max(n_crossfit, n_holdout)} vs "
            f"{min(n_crossfit, n_holdout)} images). The holdout is the untouched one: no training, selection or "
            "fitting step saw it. The cross-fit reuses the out-of-fold predictions the members were chosen on, so "
            "it leans optimistic.")
