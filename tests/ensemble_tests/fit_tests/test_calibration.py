"""Calibrators: temperature fixes over-confidence; Platt and isotonic behave; "auto" takes the lowest loss."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import expit
from sklearn.metrics import log_loss

from ensemble import (
    CALIBRATORS, EnsembleError, IsotonicCalibration, PlattScaling, TemperatureScaling, make_calibrator,
    select_calibrator,
)
from ensemble.fit.calibration import Identity, calibrator_from_dict
from ensemble.fit.metrics import expected_calibration_error


def _overconfident(n: int = 1500, factor: float = 5.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels drawn from expit(true margin); the model reports factor x the true margin."""
    rng = np.random.default_rng(seed)
    true_margin = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < expit(true_margin)).astype(int)
    groups = np.arange(n) // 3
    return factor * true_margin, y, groups


def test_temperature_lowers_ece_on_overconfident_logits() -> None:
    m, y, _ = _overconfident()
    cal = TemperatureScaling().fit(m, y)
    assert cal.T_ == pytest.approx(5.0, rel=0.2)
    before = expected_calibration_error(y, expit(m))
    after = expected_calibration_error(y, cal.predict_proba(m))
    assert after < 0.5 * before
    assert log_loss(y, cal.predict_proba(m)) < log_loss(y, expit(m))
    np.testing.assert_allclose(cal.transform_margin(m), m / cal.T_)


def test_platt_recovers_an_affine_miscalibration() -> None:
    m, y, _ = _overconfident(factor=1.0)
    cal = PlattScaling().fit(3.0 * m - 2.0, y)  # the truth is expit((m' + 2) / 3)
    assert cal.coef_ == pytest.approx(1 / 3, rel=0.2)
    assert cal.intercept_ == pytest.approx(2 / 3, rel=0.3)
    np.testing.assert_allclose(cal.predict_proba(m), expit(cal.coef_ * m + cal.intercept_))


def test_platt_is_finite_on_a_separable_holdout() -> None:
    cal = PlattScaling().fit(np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]), np.array([0, 0, 0, 1, 1, 1]))
    assert np.isfinite(cal.coef_) and cal.coef_ > 0


def test_isotonic_is_monotone_bounded_and_equals_sklearn() -> None:
    m, y, _ = _overconfident(n=400)
    cal = IsotonicCalibration().fit(m, y)
    grid = np.linspace(-20, 20, 201)
    q = cal.predict_proba(grid)
    assert np.all(np.diff(q) >= 0) and q.min() >= 0 and q.max() <= 1
    np.testing.assert_allclose(cal.predict_proba(m), cal.isotonic_.predict(expit(m)), atol=1e-12)
    assert cal.X_thresholds_.shape == cal.y_thresholds_.shape


def test_identity_is_expit() -> None:
    m = np.array([-40.0, -1.0, 0.0, 2.0, 40.0])
    cal = Identity().fit(m, np.array([0, 0, 1, 1, 1]))
    np.testing.assert_array_equal(cal.predict_proba(m), expit(m))


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
def test_calibrator_round_trips_through_json(name: str) -> None:
    m, y, _ = _overconfident(n=300)
    cal = make_calibrator(name).fit(m, y)
    back = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    assert type(back) is type(cal)
    grid = np.linspace(-30, 30, 61)
    np.testing.assert_array_equal(back.predict_proba(grid), cal.predict_proba(grid))


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
def test_to_torch_computes_what_predict_proba_computes(name: str) -> None:
    m, y, _ = _overconfident(n=400)
    cal = make_calibrator(name).fit(m, y)
    rng = np.random.default_rng(1)
    # random margins, saturated ones (|m| > 40), and the fitted range's own knots
    grid = np.r_[rng.normal(0.0, 8.0, 500), -800.0, -60.0, -40.5, 0.0, 40.5, 60.0, 800.0]
    if name == "isotonic":
        grid = np.r_[grid, np.log(cal.X_thresholds_[1:-1] / (1 - cal.X_thresholds_[1:-1]))]
    module = cal.to_torch()
    assert isinstance(module, torch.nn.Module)
    with torch.no_grad():
        got = module(torch.from_numpy(grid))
    assert got.dtype == torch.float64 and got.shape == grid.shape
    np.testing.assert_allclose(got.numpy(), cal.predict_proba(grid), rtol=1e-12, atol=1e-12)


def test_select_calibrator_takes_the_lowest_cross_fitted_loss() -> None:
    m, y, groups = _overconfident(n=600)
    name, scores = select_calibrator(m, y, groups)
    assert set(scores) == {"temperature", "platt", "isotonic", "none"}
    assert scores[name] == min(scores.values())
    assert name in ("temperature", "platt")  # a pure scale error: a parametric fix wins
    assert scores["none"] > scores[name] + 0.05
    assert select_calibrator(m, y, groups) == (name, scores)  # seeded folds
    only = select_calibrator(m, y, groups, candidates=("none", "isotonic"))
    assert only[0] == min(only[1], key=only[1].get)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_calibrator("beta"), r"unknown calibration 'beta'; choose one of \['isotonic', 'none', 'platt'"),
        (lambda: make_calibrator("auto"), "'auto' in an EnsemblePipeline"),
        (lambda: select_calibrator(np.zeros(20), np.arange(20) % 2, None, candidates=("sigmoid",)),
         "unknown calibration candidate 'sigmoid'"),
        (lambda: select_calibrator(np.zeros(20), np.arange(20) % 2, None, candidates=()), "at least one candidate"),
        (lambda: TemperatureScaling(max_iter=0).fit(np.zeros(4), [0, 1, 0, 1]), "max_iter must be a positive integer"),
        (lambda: PlattScaling(C=0.0).fit(np.zeros(4), [0, 1, 0, 1]), "C must be a number > 0, got 0.0"),
        (lambda: TemperatureScaling().fit(np.zeros((4, 2)), [0, 1, 0, 1]), r"margins must be 1-D.*\(4, 2\)"),
        (lambda: TemperatureScaling().fit(np.array([0, np.inf, 1, 2]), [0, 1, 0, 1]), "1 non-finite values"),
        (lambda: calibrator_from_dict({"name": "beta"}), "name 'beta' is not one of"),
        (lambda: calibrator_from_dict({"name": "temperature", "params": {}}), "cannot rebuild a 'temperature'"),
    ],
)
def test_calibration_errors(call, match: str) -> None:
    with pytest.raises(EnsembleError, match=match):
        call()
