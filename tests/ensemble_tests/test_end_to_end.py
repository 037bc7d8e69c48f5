"""A tiny real sweep, then `ensemble` and `evaluate` as a user runs them."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tests_support import lungsweep, make_dataset, sweep_yaml

from ensemble import METRIC_NAMES, EnsembleError, EnsembleModel, pick_members
from search import launch, load_sweep_config


@pytest.fixture(scope="module")
def sweep_dir(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    data = make_dataset(root / "train", groups_per_class=20, per_group=2, seed=3)
    cfg = load_sweep_config(sweep_yaml(
        root / "s.yaml", data, num_samples=4, max_concurrent=2, metric="val_auc", mode="max",
        asha={"max_epochs": 6, "grace_period": 6, "reduction_factor": 2},
        train={"data": str(data), "model": "test_resnet", "image_size": 32, "val_fraction": 0.2,
               "holdout_fraction": 0.3, "patience": None, "num_threads": 1, "warmup_epochs": 0.5,
               "batch_size": 8},
        space={"lr": {"loguniform": [5e-3, 2e-2]}, "seed": {"choice": [0, 1, 2, 3]}},
    ))
    launch(cfg, root / "sweep")
    return root / "sweep"


@pytest.mark.parametrize("method, calibration", [("greedy", "temperature"), ("stack", "auto")])
def test_ensemble_then_evaluate_on_a_separate_folder(sweep_dir, tmp_path, method, calibration):
    ens = tmp_path / "ens"
    done = lungsweep("ensemble", str(sweep_dir), "--out", str(ens), "--method", method, "--members", "3",
                     "--calibration", calibration, "--folds", "3", "--bootstrap", "200")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((ens / "metrics.json").read_text())
    for key in METRIC_NAMES:
        assert set(metrics[key]) == {"value", "ci_low", "ci_high"}
        assert set(metrics["uncalibrated"][key]) == {"value", "ci_low", "ci_high"}
    assert len(metrics["members"]) == 3 and "cross-fitted" in metrics["data"]
    assert metrics["auc"]["value"] > 0.8
    for name in ("ensemble.json", "report.html", "holdout_predictions.csv"):
        assert (ens / name).is_file()
    assert len(list((ens / "members").glob("*/model.safetensors"))) == 3

    model = EnsembleModel.load(ens)
    assert model.positive == "CT_COVID" and 0 < model.threshold < 1

    new = make_dataset(tmp_path / "new", groups_per_class=6, per_group=2, seed=11)
    done = lungsweep("evaluate", str(ens), "--data", str(new), "--out", str(tmp_path / "m.json"), "--bootstrap", "200")
    assert done.returncode == 0, done.stderr[-3000:]
    scored = json.loads((tmp_path / "m.json").read_text())
    assert scored["n"] == 24 and scored["auc"]["value"] > 0.8
    assert "auc" in done.stdout and "95% interval" in done.stdout


def test_evaluate_a_single_checkpoint_and_refuse_unknown_class_folders(sweep_dir, tmp_path):
    best = pd.read_parquet(sweep_dir / "results.parquet").checkpoint[0]
    new = make_dataset(tmp_path / "new", groups_per_class=4, per_group=2, seed=5)
    done = lungsweep("evaluate", best, "--data", str(new), "--bootstrap", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    wrong = make_dataset(tmp_path / "wrong", groups_per_class=3, per_group=1, classes=("COVID", "NonCOVID"))
    done = lungsweep("evaluate", best, "--data", str(wrong))
    assert done.returncode == 2
    assert "class folder(s) ['COVID', 'NonCOVID'] that the model does not know" in done.stderr


def test_members_from_different_splits_are_refused(sweep_dir, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    second = pd.read_parquet(copy / "results.parquet").iloc[1]
    meta_path = copy / f"trial_{second.trial_id}" / Path(second.checkpoint).name / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta["split"]["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(EnsembleError, match=f"trial {second.trial_id} has another train/validation/holdout split"):
        pick_members(copy, top=2)


def test_export_then_predict_and_evaluate_as_the_readme_shows(sweep_dir, tmp_path):
    ens, model = tmp_path / "ens", tmp_path / "model"
    done = lungsweep("ensemble", str(sweep_dir), "--out", str(ens), "--members", "2", "--folds", "3", "--bootstrap", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    done = lungsweep("export", str(ens), "--out", str(model))
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"parity on \d+ holdout images: max \|dp\| \S+", done.stdout), done.stdout

    new = make_dataset(tmp_path / "new", groups_per_class=4, per_group=2, seed=13)
    files = sorted(str(p) for p in new.rglob("*.*"))[:3]
    done = lungsweep("predict", str(model), *files)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "path,probability,label,error" and [line.split(",")[0] for line in lines[1:]] == files
    assert "predicted 3 image(s)" in done.stderr

    scored = {}
    for name, folder in (("ens", ens), ("model", model)):
        done = lungsweep("evaluate", str(folder), "--data", str(new), "--out", str(tmp_path / f"{name}.json"),
                         "--bootstrap", "100")
        assert done.returncode == 0, done.stderr[-3000:]
        scored[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert set(scored["model"]) == set(scored["ens"])
    assert scored["model"]["auc"]["value"] == pytest.approx(scored["ens"]["auc"]["value"], abs=1e-4)

    done = lungsweep("export", str(sweep_dir), "--trial", "best", "--out", str(tmp_path / "best"), "--bootstrap", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    best = json.loads((tmp_path / "best" / "manifest.json").read_text())
    assert best["kind"] == "single" and best["ensemble"]["members"] == [pick_members(sweep_dir, top=1)[0].trial_id]
