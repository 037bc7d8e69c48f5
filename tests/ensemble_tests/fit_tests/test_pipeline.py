"""EnsemblePipeline: fit order, JSON round trip without pickle, and the cross-fitted report flow."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import recall_score

from ensemble import EnsembleError, EnsemblePipeline, bootstrap_metrics, choose_threshold, crossfit_predict
from ensemble.fit.pipeline import FORMAT


@pytest.mark.parametrize("calibration", ["temperature", "platt", "isotonic", "none", "auto"])
@pytest.mark.parametrize("method", ["mean", "greedy", "stack"])
def test_round_trip_through_json(method: str, calibration: str, make_members) -> None:
    X, y, groups = make_members(n_groups=40, per_group=2)
    pipe = EnsemblePipeline(method=method, calibration=calibration, target_sensitivity=0.9).fit(X, y, groups)
    text = json.dumps(pipe.to_dict())
    back = EnsemblePipeline.from_dict(json.loads(text))
    assert back.get_params() == pipe.get_params()
    assert back.calibration_ == pipe.calibration_ != "auto"
    assert back.threshold_ == pipe.threshold_
    X_new = make_members(n_groups=20, seed=9)[0]
    np.testing.assert_array_equal(back.predict_proba(X_new), pipe.predict_proba(X_new))
    np.testing.assert_array_equal(back.uncalibrated_proba(X_new), pipe.uncalibrated_proba(X_new))
    np.testing.assert_array_equal(back.predict(X_new), pipe.predict(X_new))


@pytest.mark.parametrize("rule", ["prevalence", "smoothed_youden"])
def test_the_threshold_rule_is_fitted_and_kept(rule: str, members) -> None:
    X, y, groups = members
    pipe = EnsemblePipeline(threshold_rule=rule).fit(X, y, groups)
    assert pipe.threshold_ == choose_threshold(y, pipe.threshold_proba(X, y, groups), rule=rule)
    record = pipe.to_dict()
    assert EnsemblePipeline.from_dict(record).get_params()["threshold_rule"] == rule
    del record["params"]["threshold_rule"]  # an ensemble.json written before rules: Youden's J, as it was
    assert EnsemblePipeline.from_dict(record).threshold_rule == "youden"
    with pytest.raises(EnsembleError, match="unknown threshold rule 'mode'"):
        EnsemblePipeline(threshold_rule="mode").fit(X, y, groups)


def test_auto_records_the_candidates_scores(members) -> None:
    X, y, groups = members
    pipe = EnsemblePipeline(calibration="auto").fit(X, y, groups)
    scores = pipe.calibration_scores_
    assert set(scores) == {"temperature", "platt", "isotonic", "none"}
    assert scores[pipe.calibration_] == min(scores.values())


@pytest.mark.parametrize("method", ["mean", "stack"])
def test_threshold_proba_is_what_the_threshold_was_chosen_on(method: str, members) -> None:
    X, y, groups = members
    pipe = EnsemblePipeline(method=method, target_sensitivity=0.9).fit(X, y, groups)
    chosen_on = pipe.threshold_proba(X, y, groups)
    assert choose_threshold(y, chosen_on, target_sensitivity=0.9) == pipe.threshold_
    in_sample = np.allclose(chosen_on, pipe.predict_proba(X))
    assert in_sample == (method == "mean"), "stacking's threshold is chosen on out-of-fold margins"


def test_mean_pipeline_steps(members) -> None:
    X, y, groups = members
    pipe = EnsemblePipeline(method="mean", calibration="temperature", target_sensitivity=0.95).fit(X, y, groups)
    np.testing.assert_allclose(pipe.uncalibrated_proba(X), expit(X).mean(axis=1))
    p = pipe.predict_proba(X)
    np.testing.assert_allclose(p, expit(pipe.combiner_.predict_margin(X) / pipe.calibrator_.T_))
    np.testing.assert_array_equal(pipe.predict(X), (p >= pipe.threshold_).astype(int))
    assert recall_score(y, pipe.predict(X)) >= 0.95  # the target holds on the fitting data


def test_stacking_calibrates_on_out_of_fold_margins(members) -> None:
    X, y, groups = members
    pipe = EnsemblePipeline(method="stack", calibration="platt", n_splits=4, seed=3).fit(X, y, groups)
    assert pipe.combiner_.get_params()["n_splits"] == 4
    oof = pipe.combiner_.out_of_fold_predict_margin(X, y, groups)
    expected = type(pipe.calibrator_)().fit(oof, y)
    assert pipe.calibrator_.coef_ == pytest.approx(expected.coef_)


def test_cross_fitted_report(members) -> None:
    """The issue's flow: pooled out-of-fold ensemble predictions, then group-bootstrap metrics."""
    X, y, groups = members
    oof = crossfit_predict(lambda: EnsemblePipeline(method="greedy", calibration="auto"), X, y, groups, n_splits=5)
    final = EnsemblePipeline(method="greedy", calibration="auto").fit(X, y, groups)
    report = bootstrap_metrics(y, oof, groups, final.threshold_, n_boot=200)
    assert report["auc"]["value"] > 0.8 and report["n"] == len(y)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"method": "median"}, r"unknown ensemble method 'median'; choose one of \['greedy', 'mean', 'stack'\]"),
        ({"calibration": "beta"}, r"unknown calibration 'beta'; choose one of .*'auto'\]"),
        ({"target_sensitivity": 1.5}, r"target_sensitivity must be a number in \(0, 1\], got 1.5"),
        ({"method": "stack", "n_splits": 50},
         "Requesting 50-fold cross-fitting but the stacker's fitting data has only 30"),
        ({"calibration": "auto", "n_splits": 50}, "Requesting 50-fold cross-fitting but the holdout has only 30"),
    ],
)
def test_pipeline_errors(params: dict, match: str, members) -> None:
    X, y, groups = members
    with pytest.raises(EnsembleError, match=match):
        EnsemblePipeline(**params).fit(X, y, groups)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(format="other/1"), rf"not a {FORMAT} record \(format 'other/1'\)"),
        (lambda d: d.pop("threshold"), "lacks or garbles 'threshold'"),
        (lambda d: d["combiner"].update(name="vote"), "name 'vote' is not one of"),
        (lambda d: d["calibrator"]["state"].pop("T_"), "cannot rebuild a 'temperature' calibrator"),
    ],
)
def test_from_dict_errors(mutate, match: str, members) -> None:
    X, y, groups = members
    d = json.loads(json.dumps(EnsemblePipeline().fit(X, y, groups).to_dict()))
    mutate(d)
    with pytest.raises(EnsembleError, match=match):
        EnsemblePipeline.from_dict(d)
