"""ensemble/fit/members.py: which trials become members, and their stored predictions, read as stored."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from ensemble import EnsembleError, fill_unscored, holdout_predictions, mean_spread, oof_predictions, pick_members
from ensemble.fit.members import check_compatible


def _checkpoint(folder: Path, holdout: dict, split_sha: str = "s1", fingerprint: str = "f1") -> Path:
    folder.mkdir(parents=True)
    meta = {
        "format_version": 1, "config": {"model": "m"}, "classes": ["A", "B"], "positive": "A",
        "preprocessing": {"image_size": 32, "mean": 0.5, "std": 0.5}, "metrics": {},
        "data_fingerprint": fingerprint, "split": {"seed": 0, "sha256": split_sha},
        "predictions": {"val": {}, "holdout": holdout},
    }
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    return folder


def _sweep(tmp_path: Path, rows: list[tuple[str, str, float]], holdout: dict | None = None) -> Path:
    """A results table and one checkpoint per trial, as `lungsweep results` and Tune leave them."""
    sweep = tmp_path / "sweep"
    table = []
    for rank, (trial, status, metric) in enumerate(rows, start=1):
        preds = holdout or {"b": {"label": 0, "group": "g2", "logit": -1.0 * rank},
                            "a": {"label": 1, "group": "g1", "logit": 2.0 * rank}}
        ckpt = _checkpoint(sweep / f"trial_{trial}" / "checkpoint_000001", preds)
        table.append({"rank": rank, "trial_id": trial, "status": status, "best_metric": metric,
                      "checkpoint": str(ckpt)})
    pd.DataFrame(table).to_parquet(sweep / "results.parquet")
    return sweep


def test_top_members_skip_errored_trials_and_align_predictions_by_id(tmp_path):
    sweep = _sweep(tmp_path, [("t1", "completed", 0.9), ("t2", "error", float("nan")), ("t3", "stopped", 0.8)])
    members = pick_members(sweep, top=2)
    assert [m.trial_id for m in members] == ["t1", "t3"] and not members[0].is_bag
    preds = holdout_predictions(members)
    assert preds.ids == ["a", "b"] and preds.y.tolist() == [1, 0] and preds.groups.tolist() == ["g1", "g2"]
    np.testing.assert_array_equal(preds.margins, [[2.0, 6.0], [-1.0, -3.0]])


def test_members_all_takes_every_usable_trial(tmp_path):
    sweep = _sweep(tmp_path, [("t1", "completed", 0.9), ("t2", "error", float("nan")), ("t3", "stopped", 0.8),
                              ("t4", "completed", 0.7)])
    assert [m.trial_id for m in pick_members(sweep, top="all")] == ["t1", "t3", "t4"]


def test_a_margin_a_member_did_not_make_is_the_pooled_margin_of_those_that_did():
    margins = np.array([[2.0, -1.0, np.nan], [0.5, np.nan, np.nan], [1.0, 1.0, 1.0]])
    filled = fill_unscored(margins, ~np.isnan(margins))
    assert np.isfinite(filled).all() and filled[2].tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(expit(filled[0, 2]), expit([2.0, -1.0]).mean())
    np.testing.assert_allclose(filled[1], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(expit(filled).mean(axis=1)[:2], [expit([2.0, -1.0]).mean(), expit(0.5)])


def test_asking_for_more_members_than_finished_uses_those_there_are(tmp_path, caplog):
    sweep = _sweep(tmp_path, [("t1", "completed", 0.9), ("t2", "completed", 0.8)])
    with caplog.at_level(logging.WARNING):
        assert len(pick_members(sweep, top=5)) == 2
    assert "asked for 5 members, but only 2 trial(s)" in caplog.text


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"top": 0}, r"--members must be a whole number of at least 1 or 'all', got 0"),
        ({"top": -2}, r"--members must be a whole number of at least 1 or 'all', got -2"),
        ({"top": "every"}, r"--members must be a whole number of at least 1 or 'all', got 'every'"),
        ({"trials": ["nope"]}, r"trial 'nope' is not in .*; trials there: t1, t2"),
        ({"trials": ["t2"]}, r"trial t2 has no usable checkpoint \(status error\)"),
    ],
)
def test_bad_member_requests_are_named(tmp_path, kwargs, match):
    sweep = _sweep(tmp_path, [("t1", "completed", 0.9), ("t2", "error", float("nan"))])
    with pytest.raises(EnsembleError, match=match):
        pick_members(sweep, **kwargs)


def test_a_sweep_without_results_or_usable_trials_says_what_to_do(tmp_path):
    with pytest.raises(EnsembleError, match=r"results.parquet is missing: run `lungsweep results"):
        pick_members(tmp_path)
    sweep = _sweep(tmp_path, [("t1", "error", float("nan"))])
    with pytest.raises(EnsembleError, match="has no trial that finished with a checkpoint"):
        pick_members(sweep)


def test_members_of_other_data_or_splits_are_refused(tmp_path):
    sweep = _sweep(tmp_path, [("t1", "completed", 0.9), ("t2", "completed", 0.8)])
    members = pick_members(sweep, top=2)
    other = members[1].meta | {"split": {"seed": 1, "sha256": "s2"}}
    with pytest.raises(EnsembleError, match="trial t2 has another train/validation/holdout split than trial t1"):
        check_compatible([members[0], type(members[1])(**{**members[1].__dict__, "meta": other})])
    moved = members[1].meta | {"data_fingerprint": "f2"}
    with pytest.raises(EnsembleError, match="trial t2 was trained on other data than trial t1"):
        check_compatible([members[0], type(members[1])(**{**members[1].__dict__, "meta": moved})])
    with pytest.raises(EnsembleError, match="trial t1 is not a k-fold bag"):
        oof_predictions(members)


def test_filled_margins_give_the_mean_of_all_members_its_own_spread():
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 2, 60)
    margins = signal[:, None] + rng.normal(0, 1.5, (60, 4))  # four members, disagreeing
    scored = np.ones_like(margins, dtype=bool)
    scored[30:, 2:] = False  # two stopped bags scored the first 30 images only
    spread = mean_spread(margins, scored)
    shared = expit(margins[:30]).mean(axis=1), expit(margins[:30, :2]).mean(axis=1)
    assert spread == pytest.approx(np.std(logit(shared[0])) / np.std(logit(shared[1])))
    assert spread < 1, "the mean of four disagreeing members is narrower than the mean of two"
    filled = fill_unscored(np.where(scored, margins, np.nan), scored)
    np.testing.assert_array_equal(filled[scored], margins[scored])
    made = logit(np.r_[shared[0], expit(margins[30:, :2]).mean(axis=1)])
    centre = made.mean()
    np.testing.assert_allclose(logit(expit(filled[30:]).mean(axis=1)), centre + spread * (made[30:] - centre))
