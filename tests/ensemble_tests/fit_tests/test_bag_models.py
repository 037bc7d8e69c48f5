"""What a bag ships: every fold model (their mean), or its first fold model alone, one network per config.

Two real 3-fold bags on generated images, in a sweep folder of their own; the ensemble is built both ways
and the first-fold one exported.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests_support import tiny_config

from ensemble import EnsembleSettings, ExportedModel, build_ensemble, export_model, holdout_predictions, pick_members
from trainers import read_bag, train_bag
from trainers.bag import with_folds


@pytest.fixture(scope="module")
def kfold_sweep(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> Path:
    sweep = tmp_path_factory.mktemp("kfold-sweep")
    rows = []
    for rank, (trial, lr) in enumerate([("a", 3e-3), ("b", 1e-2)], start=1):
        bag = sweep / f"trial_{trial}" / "bag"
        train_bag(tiny_config(synthetic_data, cv_folds=3, epochs=2, lr=lr, num_threads=1), bag)
        rows.append({"rank": rank, "trial_id": trial, "status": "completed",
                     "best_metric": read_bag(bag)["metrics"]["oof_auc"], "checkpoint": str(bag)})
    pd.DataFrame(rows).to_parquet(sweep / "results.parquet")
    return sweep


def test_with_folds_narrows_what_ships_and_keeps_the_out_of_fold_pool(kfold_sweep: Path) -> None:
    bag = read_bag(kfold_sweep / "trial_a" / "bag")
    first = with_folds(bag, [0])
    assert first["folds_done"] == [0] and first["trained_folds"] == [0, 1, 2]
    assert first["oof"] == bag["oof"] and first["metrics"] == bag["metrics"]
    assert {i: row["logit"] for i, row in first["holdout"].items()} == pytest.approx(bag["fold_holdout"]["0"])
    assert {i: row["label"] for i, row in first["holdout"].items()} == {i: r["label"] for i, r in bag["holdout"].items()}
    with pytest.raises(Exception, match=r"the bag has no fold 3; its folds done: \[0, 1, 2\]"):
        with_folds(bag, [3])


def test_the_first_fold_ensemble_ships_one_network_per_config(kfold_sweep: Path, tmp_path: Path) -> None:
    both = {}
    for which in ("all", "first"):
        out = tmp_path / which
        metrics = build_ensemble(kfold_sweep, out, EnsembleSettings(bag_models=which, n_splits=3, n_boot=50))
        both[which] = (out, metrics)
    assert both["all"][1]["networks"]["shipped"] == 6 and both["first"][1]["networks"]["shipped"] == 2
    first_dir = both["first"][0]
    manifest = json.loads((first_dir / "ensemble.json").read_text())
    assert manifest["bag_models"] == "first"
    for trial in ("a", "b"):
        shipped = first_dir / "members" / trial
        assert sorted(p.name for p in shipped.iterdir()) == ["bag.json", "fold_0"]  # fold 1 and 2 are not copied
        assert read_bag(shipped)["folds_done"] == [0]

    # the holdout each scored: the first fold model's margins, where "all" scored the bags' means
    members = pick_members(kfold_sweep, top="all")
    firsts = [m.shipping("first") for m in members]
    assert not any(m.stopped_early for m in firsts), "a finished bag that ships one fold model was not stopped early"
    assert [m.folds(trained=True) for m in firsts] == [[0, 1, 2]] * 2 and [m.folds() for m in firsts] == [[0]] * 2
    margins = holdout_predictions(firsts).margins
    np.testing.assert_allclose(margins[:, 0], [members[0].meta["fold_holdout"]["0"][i]
                                               for i in holdout_predictions(members).ids])
    # the calibrator was fitted on the same out-of-fold pool either way
    assert both["first"][1]["fitted_on"]["images"] == both["all"][1]["fitted_on"]["images"]

    exported = export_model(first_dir, tmp_path / "model", n_boot=50)
    assert exported["cost"]["networks"] == 2 and exported["parity"]["max_abs_diff"] <= 1e-4
    assert len(ExportedModel.load(tmp_path / "model").inputs) == 1
