"""choose_threshold: Youden's J is the brute-force maximum; a target sensitivity is met on the fitting data."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import recall_score

from ensemble.errors import EnsembleError
from ensemble.threshold import choose_threshold


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
def test_target_sensitivity_met_on_fitting_data(target: float, seed: int) -> None:
    y, p = _scores(seed=seed)
    t = choose_threshold(y, p, target_sensitivity=target)
    assert 0 <= t <= 1
    sens, spec = _sens_spec(y, p, t)
    assert recall_score(y, (p >= t).astype(int)) == sens >= target
    # the highest such threshold: the next observed score above the lowest one called positive misses
    higher = np.unique(p[p > p[p >= t].min()])
    if len(higher):
        assert _sens_spec(y, p, higher[0])[0] < target
    # so no qualifying threshold has better specificity
    for c in np.unique(p):
        s, sp = _sens_spec(y, p, c)
        if s >= target:
            assert sp <= spec


def test_target_met_exactly_at_a_count_boundary() -> None:
    # 19 of 20 positives is a sensitivity of exactly 0.95, which must count as meeting 0.95
    y = np.r_[np.ones(20, dtype=int), np.zeros(20, dtype=int)]
    p = np.r_[np.linspace(0.5, 0.99, 20), np.linspace(0.01, 0.6, 20)]
    t = choose_threshold(y, p, target_sensitivity=0.95)
    assert p[p < p[1]].max() < t <= p[1]  # calls p[1] and up positive, halfway to the next score
    assert _sens_spec(y, p, t)[0] == 0.95


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
