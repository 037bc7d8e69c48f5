"""clinical_metrics equals scikit-learn; bootstrap_metrics resamples groups."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy.special import expit
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from ensemble import METRIC_NAMES, EnsembleError, bootstrap_metrics, clinical_metrics
from trainers.metrics import binary_metrics
from ensemble.fit.metrics import (
    MIN_GROUPS_PER_CLASS, _weighted_metrics, ece_bin_count, ece_bins, ece_edges, expected_calibration_error,
)


def _data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # rounded so that scores tie, which AUC and AP must handle as scikit-learn does
    p = np.round(np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.25, n), 0, 1), 2)
    return y, p


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_every_metric_equals_sklearn(threshold: float) -> None:
    y, p = _data()
    pred = (p >= threshold).astype(int)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "auc": skm.roc_auc_score(y, p),
        "average_precision": skm.average_precision_score(y, p),
        "sensitivity": skm.recall_score(y, pred),
        "specificity": skm.recall_score(y, pred, pos_label=0),
        "ppv": skm.precision_score(y, pred),
        "npv": skm.precision_score(y, pred, pos_label=0),
        "brier": skm.brier_score_loss(y, p),
        "nll": skm.log_loss(y, p),
    }
    got = clinical_metrics(y, p, threshold)
    assert set(got) == set(METRIC_NAMES)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert 0 <= got["ece"] <= 1


def test_ece_hand_computed() -> None:
    # ECE definition changed on purpose (equal-width 15 bins -> equal-mass bins, round(sqrt(n)/2) in [2, 15]).
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.10, 0.12, 0.50, 0.52, 0.99, 1.0])
    # 6 samples: 2 bins split at the median 0.51: {0.10, 0.12, 0.50} and {0.52, 0.99, 1.0}
    # (3/6)|1/3 - 0.24| + (3/6)|2/3 - 2.51/3| = (0.28 + 0.51) / 6
    assert expected_calibration_error(y, p) == pytest.approx((0.28 + 0.51) / 6)
    assert clinical_metrics(y, p, 0.5)["ece"] == pytest.approx(0.79 / 6)
    # 3 bins at the 33rd and 67th percentiles: {0.10, 0.12}, {0.50, 0.52}, {0.99, 1.0}
    assert expected_calibration_error(y, p, 3) == pytest.approx((0.11 + 0.49 + 0.495) / 3)
    # perfectly calibrated within each bin
    assert expected_calibration_error(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.0


@pytest.mark.parametrize(("n", "bins"), [(1, 2), (6, 2), (36, 3), (78, 4), (203, 7), (900, 15), (10_000, 15)])
def test_ece_bin_count_rule(n: int, bins: int) -> None:
    assert ece_bin_count(n) == bins


def test_ece_bins_are_the_reliability_curves_bins() -> None:
    """The ECE sums over the bins scikit-learn's calibration_curve(strategy="quantile") plots."""
    y, p = _data(n=150, seed=3)
    n_bins = ece_bin_count(len(y))
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
    counts = np.bincount(ece_bins(p, ece_edges(p)), minlength=n_bins)
    counts = counts[counts > 0]
    assert expected_calibration_error(y, p) == pytest.approx(np.sum(counts * np.abs(observed - predicted)) / len(y))


def test_calibration_slope_and_intercept() -> None:
    """The logistic recalibration of y on logit(p): (0, 1) for calibrated p, slope < 1 for over-confident p."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, 20_000)
    y = (rng.random(len(z)) < expit(z)).astype(int)
    calibrated = clinical_metrics(y, expit(z), 0.5)
    assert calibrated["calibration_slope"] == pytest.approx(1, abs=0.05)
    assert calibrated["calibration_intercept"] == pytest.approx(0, abs=0.05)
    over = clinical_metrics(y, expit(2 * z + 0.5), 0.5)  # twice too extreme, shifted up
    assert over["calibration_slope"] == pytest.approx(0.5, abs=0.03)
    assert over["calibration_intercept"] == pytest.approx(-0.25, abs=0.05)
    # classes that p separates have no finite fit
    separated = clinical_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9]), 0.5)
    assert np.isnan(separated["calibration_slope"]) and np.isnan(separated["calibration_intercept"])


def test_single_class_gives_nan_ranking_metrics() -> None:
    out = clinical_metrics(np.zeros(5, dtype=int), np.linspace(0.1, 0.9, 5), 0.5)
    assert np.isnan(out["auc"]) and np.isnan(out["average_precision"])
    assert out["sensitivity"] == 0.0  # zero_division=0
    assert out["specificity"] == pytest.approx(0.4)


def test_per_epoch_metrics_equal_the_reports_on_saturated_probabilities() -> None:
    # a confident mistake (1 - 1e-12 for a negative), exact 0 and 1, and a positive at 1e-300
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    p = np.array([1.0 - 1e-12, 0.2, 1.0, 0.9, 0.0, 1e-300, 0.4, 1.0 - 1e-13])
    per_epoch = binary_metrics(y, p)
    report = clinical_metrics(y, p, 0.5)
    assert set(per_epoch) == {"accuracy", "auc", "f1", "sensitivity", "specificity", "nll"}
    for name, value in per_epoch.items():
        assert value == report[name], name
    # one clipping rule, scikit-learn's: the mistake costs -log(1e-12), not a clip at 1e-7's 16
    assert report["nll"] == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    assert report["nll"] > (-np.log(1e-12) - np.log(np.finfo(np.float64).eps)) / len(y)
    assert report["auc"] == skm.roc_auc_score(y, p)  # unclipped scores: 1 - 1e-12 and 1 do not tie
    weighted = _weighted_metrics(y, p, np.ones((1, len(y))), 0.5)
    assert weighted["nll"][0] == pytest.approx(report["nll"], rel=1e-12)
    assert weighted["auc"][0] == pytest.approx(report["auc"], abs=1e-12)


def test_weighted_metrics_equal_materialised_resamples() -> None:
    """Scoring a resample as weights equals scoring the repeated samples, wherever the metric is defined."""
    y, p = _data(n=40, seed=1)
    rng = np.random.default_rng(2)
    W = rng.multinomial(40, np.full(40, 1 / 40), size=25).astype(float)
    batch = _weighted_metrics(y, p, W, 0.5)
    for row, w in enumerate(W.astype(int)):
        y_rep, p_rep = np.repeat(y, w), np.repeat(p, w)
        expected = clinical_metrics(y_rep, p_rep, 0.5)
        expected["ece"] = expected_calibration_error(y_rep, p_rep, edges=ece_edges(p))  # over the sample's bins
        for name in METRIC_NAMES:
            if np.isfinite(batch[name][row]):
                # the calibration line: Newton here, scikit-learn's lbfgs (tol 1e-10) there
                tol = 1e-6 if name.startswith("calibration_") else 1e-10
                assert batch[name][row] == pytest.approx(expected[name], rel=tol, abs=tol), name


def test_undefined_metrics_are_nan_in_a_resample() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.9])
    W = np.array([[2.0, 2.0, 0.0, 0.0]])  # a resample without positives
    out = _weighted_metrics(y, p, W, 0.5)
    for name in ("auc", "average_precision", "sensitivity", "balanced_accuracy", "ppv"):
        assert np.isnan(out[name][0]), name
    assert out["specificity"][0] == 1.0 and out["accuracy"][0] == 1.0


def test_bootstrap_layout_and_point_values(members) -> None:
    X, y, groups = members
    p = 1 / (1 + np.exp(-X[:, 0]))
    out = bootstrap_metrics(y, p, groups, 0.5, n_boot=300)
    json.dumps(out, allow_nan=False)
    assert set(out) == set(METRIC_NAMES) | {"threshold", "n", "interval", "calibration_measures"}
    assert out["threshold"] == 0.5 and out["n"] == len(y)
    assert out["interval"]["unit"] == "group" and out["interval"]["missing"] == {}
    assert out["calibration_measures"]["ece_bins"] == ece_bin_count(len(y))
    point = clinical_metrics(y, p, 0.5)
    for name in METRIC_NAMES:
        entry = out[name]
        assert set(entry) == {"value", "ci_low", "ci_high"}
        assert entry["value"] == point[name]
        assert entry["ci_low"] < entry["value"] < entry["ci_high"], name


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("n", "scale"), [(78, 1.0), (78, 2.5), (203, 0.6), (40, 4.0)])
def test_every_interval_contains_its_estimate(seed: int, n: int, scale: float) -> None:
    """BCa, and no interval where it would miss: ECE's upward bias no longer puts the estimate at the edge."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < expit(z)).astype(int)
    p = expit(scale * z + rng.normal(0, 0.3, n))
    out = bootstrap_metrics(y, p, np.arange(n), 0.5, n_boot=300, seed=seed)
    for name in METRIC_NAMES:
        entry = out[name]
        if entry["ci_low"] is None:
            assert entry["ci_high"] is None and out["interval"]["missing"][name], name
        else:
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name
            assert entry["ci_low"] < entry["ci_high"], name


def test_few_groups_resample_images_and_say_why() -> None:
    """The issue: 203 images in 2 groups gave [0.6847, 0.6847] and [0.0000, 0.9050] without a word."""
    y, p = _data(n=203, seed=5)
    groups = np.where(y == 1, "covid", "normal")
    out = bootstrap_metrics(y, p, groups, 0.5, n_boot=500)
    interval = out["interval"]
    assert interval["unit"] == "image" and interval["groups_per_class"] == {"negative": 1, "positive": 1}
    assert "the positive class has only 1 group" in interval["why"]
    assert f"needs at least {MIN_GROUPS_PER_CLASS} in each class" in interval["why"] and "too narrow" in interval["why"]
    assert "500 resamples of images within each class" in interval["statement"]
    for name in ("balanced_accuracy", "auc", "f1", "ece"):
        entry = out[name]
        assert 0 < entry["ci_low"] < entry["value"] < entry["ci_high"] < 1, name
        assert entry["ci_high"] - entry["ci_low"] < 0.3, name
    enough = np.arange(len(y)) % 30  # 30 groups, each holding both classes
    assert bootstrap_metrics(y, p, enough, 0.5, n_boot=50)["interval"]["unit"] == "group"
    assert bootstrap_metrics(y, p, None, 0.5, n_boot=50)["interval"]["why"].startswith("no groups were given")


def test_zero_width_and_undefined_intervals_are_not_given() -> None:
    y = np.r_[np.ones(30, dtype=int), np.zeros(30, dtype=int)]
    p = np.r_[np.linspace(0.6, 0.95, 30), np.linspace(0.05, 0.7, 30)]
    out = bootstrap_metrics(y, p, None, 0.5, n_boot=200)
    # every positive is called positive in every resample: [1, 1] would look like certainty
    assert out["sensitivity"] == {"value": 1.0, "ci_low": None, "ci_high": None}
    assert "100% of resamples give exactly 1: a zero-width interval" in out["interval"]["missing"]["sensitivity"]
    # a model that separates the classes has no finite calibration slope
    sep = bootstrap_metrics(y, np.r_[np.full(30, 0.9), np.full(30, 0.2)], None, 0.5, n_boot=100)
    assert sep["calibration_slope"]["ci_low"] is None
    assert "no finite slope" in sep["interval"]["missing"]["calibration_slope"]


def test_bootstrap_narrows_with_more_groups(make_members) -> None:
    def width(n_groups: int, name: str) -> float:
        X, y, groups = make_members(n_groups=n_groups, signal=(1.0,), seed=3)
        out = bootstrap_metrics(y, 1 / (1 + np.exp(-X[:, 0])), groups, 0.5, n_boot=300)
        return out[name]["ci_high"] - out[name]["ci_low"]

    for name in ("auc", "accuracy", "nll"):
        assert width(300, name) < 0.6 * width(30, name), name


def test_bootstrap_resamples_groups_not_samples() -> None:
    y, p = _data(n=60, seed=4)
    groups = np.arange(60)
    single = bootstrap_metrics(y, p, groups, 0.5, n_boot=200, seed=7)
    # every patient imaged 5 times with the same prediction: a group bootstrap sees the same 60 patients
    rep = bootstrap_metrics(np.repeat(y, 5), np.repeat(p, 5), np.repeat(groups, 5), 0.5, n_boot=200, seed=7)
    for name in set(METRIC_NAMES) - {"ece"}:  # the ECE's bin count grows with the images: another statistic
        assert rep[name]["ci_low"] == pytest.approx(single[name]["ci_low"]), name
        assert rep[name]["ci_high"] == pytest.approx(single[name]["ci_high"]), name
    # ... while resampling images treats 300 copies as 300 patients and is over-confident
    naive = bootstrap_metrics(np.repeat(y, 5), np.repeat(p, 5), None, 0.5, n_boot=200, seed=7)
    assert naive["auc"]["ci_high"] - naive["auc"]["ci_low"] < 0.7 * (rep["auc"]["ci_high"] - rep["auc"]["ci_low"])


def test_bootstrap_is_fast_and_seeded() -> None:
    y, p = _data(n=100)
    groups = np.arange(100) // 2
    start = time.perf_counter()
    a = bootstrap_metrics(y, p, groups, 0.5, n_boot=1000, seed=1)
    assert time.perf_counter() - start < 2.0
    assert a == bootstrap_metrics(y, p, groups, 0.5, n_boot=1000, seed=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_boot": 0}, "n_boot must be a positive integer, got 0"),
        ({"n_boot": 2.5}, "n_boot must be a positive integer"),
        ({"confidence": 1.0}, r"confidence must be a number in \(0, 1\), got 1.0"),
        ({"p": np.array([0.2, 1.5, 0.1, 0.3])}, r"probabilities must lie in \[0, 1\].*pass expit\(margin\)"),
        ({"y": np.array([0, 2, 1, 0])}, r"labels must be 0 \(negative\) or 1 \(positive\), got values \[0, 1, 2\]"),
        ({"groups": np.array([1, 2, 3])}, r"groups must hold one id per sample \(4\)"),
    ],
)
def test_bootstrap_errors(kwargs: dict, match: str) -> None:
    args = {"y": np.array([0, 1, 1, 0]), "p": np.array([0.2, 0.7, 0.6, 0.1]), "groups": np.arange(4)}
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(EnsembleError, match=match):
        bootstrap_metrics(args["y"], args["p"], args["groups"], 0.5, **kwargs)
