"""choose_threshold: Youden's J is the brute-force maximum; a target sensitivity is met with 95% confidence."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, norm
from sklearn.metrics import recall_score

from ensemble import EnsembleError, choose_threshold, sensitivity_bound
from ensemble.fit.threshold import sensitivity_lower_bound


def _scores(n: int = 157, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.round(1 / (1 + np.exp(-(1.2 * (2 * y - 1) + rng.normal(0, 1.3, n)))), 2)  # with ties
    return y, p


def _sens_spec(y: np.ndarray, p: np.ndarray, t: float) -> tuple[float, float]:
    """By counting, for the brute-force loops (recall_score is checked once per test below)."""
    pred = p >= t
    return float(pred[y == 1].mean()), float((~pred[y == 0]).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_youden_equals_brute_force(seed: int) -> None:
    y, p = _scores(seed=seed)
    t = choose_threshold(y, p)
    candidates = np.unique(p)[::-1]  # highest first, like roc_curve
    j = np.array([sum(_sens_spec(y, p, c)) - 1 for c in candidates])
    assert sum(_sens_spec(y, p, t)) - 1 == pytest.approx(j.max())
    chosen = candidates[int(np.argmax(j))]  # the highest threshold among ties
    assert p[p < chosen].max() < t <= chosen  # halfway to the next score: the same calls


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_target_sensitivity_met_with_confidence_on_fitting_data(target: float, seed: int) -> None:
    # Rule changed on purpose: the lower confidence bound of sensitivity, not sensitivity itself, meets the target.
    y, p = _scores(seed=seed)
    n_pos = int(y.sum())
    t = choose_threshold(y, p, target_sensitivity=target)
    assert 0 <= t <= 1

    def bound(c: float) -> float:
        return float(sensitivity_lower_bound(int(((p >= c) & (y == 1)).sum()), n_pos))

    sens, spec = _sens_spec(y, p, t)
    assert recall_score(y, (p >= t).astype(int)) == sens
    if bound(t) >= target:
        # the highest such threshold: the next observed score above the lowest one called positive falls short
        higher = np.unique(p[p > p[p >= t].min()])
        if len(higher):
            assert bound(higher[0]) < target
        # so no qualifying threshold has better specificity
        for c in np.unique(p):
            if bound(c) >= target:
                assert _sens_spec(y, p, c)[1] <= spec
    else:  # out of reach even calling every positive: the highest threshold that does
        lowest = p[y == 1].min()
        assert sens == 1.0 and bound(0.0) < target and p[p < lowest].max() < t <= lowest


def test_clopper_pearson_lower_bound() -> None:
    # k = n has the closed form alpha ** (1 / n); none called positive bounds nothing
    assert sensitivity_lower_bound(20, 20) == pytest.approx(0.05 ** (1 / 20))
    assert sensitivity_lower_bound(0, 20) == 0.0
    assert sensitivity_lower_bound(np.array([18, 19]), 20) == pytest.approx(beta.ppf(0.05, [18, 19], [3, 2]))
    # 57 of 60 is 0.95 exactly, yet its bound is 0.876: the old rule's choice promises 0.95 half the time
    y = np.r_[np.ones(60, dtype=int), np.zeros(60, dtype=int)]
    p = np.r_[np.linspace(0.5, 0.99, 60), np.linspace(0.01, 0.6, 60)]
    t = choose_threshold(y, p, target_sensitivity=0.85)
    called = int((p[y == 1] >= t).sum())
    assert sensitivity_lower_bound(called, 60) >= 0.85 > sensitivity_lower_bound(called - 1, 60)


def test_a_target_sensitivity_holds_on_new_data() -> None:
    """On fresh data from the same distribution the chosen threshold meets the target >= 90% of the time.

    Positives score z ~ N(1.5, 1) on the logit scale, so a threshold t has true sensitivity
    P(z >= logit(t)), exactly. The old rule (the highest threshold that just reaches the target on
    the fitting data) meets it about half the time.
    """
    target, reps = 0.9, 300
    rng = np.random.default_rng(0)
    met, met_naive = [], []
    for _ in range(reps):
        y = np.r_[np.ones(150, dtype=int), np.zeros(150, dtype=int)]
        z = np.r_[rng.normal(1.5, 1, 150), rng.normal(-1.5, 1, 150)]
        p = 1 / (1 + np.exp(-z))
        t = choose_threshold(y, p, target_sensitivity=target)
        met.append(norm.sf(np.log(t / (1 - t)) - 1.5) >= target)
        naive = np.sort(z[y == 1])[::-1][int(np.ceil(target * 150)) - 1]  # the lowest positive it must call
        met_naive.append(norm.sf(naive - 1.5) >= target)
        assert sensitivity_bound(y, p, t, target_sensitivity=target)["target_met"]
    assert np.mean(met) >= 0.9
    assert np.mean(met_naive) < 0.7


def test_sensitivity_bound_says_what_to_expect() -> None:
    y = np.r_[np.ones(20, dtype=int), np.zeros(20, dtype=int)]
    p = np.r_[np.linspace(0.5, 0.99, 20), np.linspace(0.01, 0.6, 20)]
    t = choose_threshold(y, p, target_sensitivity=0.95)
    out = sensitivity_bound(y, p, t, target_sensitivity=0.95)
    # 20 positives cannot promise 0.95: every positive is called and the bound is 0.05 ** (1/20) = 0.861
    assert out["called_positive"] == out["positives"] == 20 and out["sensitivity"] == 1.0
    assert out["sensitivity_lower_bound"] == pytest.approx(0.8609, abs=1e-4) and out["target_met"] is False
    assert "cannot be promised with 95% confidence from 20 positives" in out["statement"]
    youden = sensitivity_bound(y, p, choose_threshold(y, p))
    assert "target_met" not in youden and "Youden" in youden["rule"] and "at least" in youden["statement"]


@pytest.mark.parametrize(
    ("y", "p", "target", "match"),
    [
        ([0, 1, 1, 0], [0.1, 0.8, 0.7, 0.2], 0.0, r"target_sensitivity must be a number in \(0, 1\], got 0.0"),
        ([0, 1, 1, 0], [0.1, 0.8, 0.7, 0.2], 1.5, r"target_sensitivity must be a number in \(0, 1\], got 1.5"),
        ([0, 1, 1, 0], [0.1, 0.8, 0.7, 0.2], float("nan"), r"target_sensitivity must be a number in \(0, 1\], got nan"),
        ([0, 1, 1, 0], [0.1, 0.8, 0.7, 0.2], "0.9", "target_sensitivity must be a number"),
        ([0, 1, 1, 0], [0.1, 0.8, 0.7, 0.2], True, "target_sensitivity must be a number"),
        ([1, 1, 1, 1], [0.1, 0.8, 0.7, 0.2], None, r"labels hold one class only \(\[1\]\)"),
        ([0, 1, 1, 0], [0.1, 8.0, 0.7, 0.2], None, r"probabilities must lie in \[0, 1\]"),
        ([0, 1, 1], [0.1, 0.8, 0.7, 0.2], None, "4 probabilities for 3 labels"),
    ],
)
def test_threshold_errors(y: list, p: list, target: object, match: str) -> None:
    with pytest.raises(EnsembleError, match=match):
        choose_threshold(np.array(y), np.array(p), target_sensitivity=target)


def _binormal(n: int, rng: np.random.Generator, share: float = 0.46) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities: logit scores N(+-1.2, 1) with the log prior odds added, as a calibrator gives."""
    y = (rng.random(n) < share).astype(int)
    z = np.where(y == 1, 1.2, -1.2) + rng.normal(0, 1, n)
    return y, 1 / (1 + np.exp(-(2.4 * z + np.log(share / (1 - share)))))


def test_each_rule_has_its_threshold() -> None:
    y, p = _binormal(400, np.random.default_rng(0))
    assert choose_threshold(y, p, rule="half") == 0.5
    assert choose_threshold(y, p, rule="prevalence") == pytest.approx(y.mean())
    assert choose_threshold(y, p, rule="youden") == choose_threshold(y, p)  # the default until the bench said
    # a target sensitivity decides whatever the rule
    assert choose_threshold(y, p, rule="half", target_sensitivity=0.9) == choose_threshold(y, p, target_sensitivity=0.9)
    with pytest.raises(EnsembleError, match="unknown threshold rule 'otsu'; choose one of youden, smoothed_youden"):
        choose_threshold(y, p, rule="otsu")


def test_smoothed_youden_finds_the_true_optimum_and_moves_less() -> None:
    """On calibrated binormal scores J peaks where P(positive | score) is the positive share (the class
    densities cross). Over 40 pools of 150 images the smoothed rule lands nearer that point than the empirical
    maximum, and varies less."""
    rng = np.random.default_rng(1)
    y, p = _binormal(20_000, rng)
    assert choose_threshold(y, p, rule="smoothed_youden") == pytest.approx(0.46, abs=0.03)
    plain, smooth = [], []
    for _ in range(40):
        y, p = _binormal(150, rng)
        plain.append(choose_threshold(y, p, rule="youden"))
        smooth.append(choose_threshold(y, p, rule="smoothed_youden"))
    assert np.std(smooth) < 0.8 * np.std(plain)
    assert np.mean(np.abs(np.array(smooth) - 0.46)) < np.mean(np.abs(np.array(plain) - 0.46))
    assert sensitivity_bound(y, p, smooth[-1], rule="smoothed_youden")["rule"].startswith("Youden's J on smoothed")
