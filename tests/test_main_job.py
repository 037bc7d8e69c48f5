"""`lungsweep run` as a user runs it: a real k-fold sweep (local Ray, TPE, ASHA over folds), an ensemble
fitted on out-of-fold predictions and scored on the holdout, an export and a prediction; then the
sweep folder it wrote, read by every later command."""
from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit, logit
from tests_support import lungsweep, make_dataset, new_images, sweep_yaml

from ensemble import (
    METRIC_NAMES, EnsemblePipeline, EnsembleSettings, ExportedModel, build_ensemble, export_model, fill_unscored,
    fit_ensemble, holdout_predictions, load_predictor, mean_spread, model_margins, oof_predictions, pick_members,
    tta_predictions,
)
from search import read_sweep
from trainers import Preprocessing, TrainConfig, load_model, prepare_data, read_bag

pytestmark = pytest.mark.slow  # runs the main job (a Ray sweep, then ensemble, export, predict): not in the fast tier


@pytest.fixture(scope="module")
def job(tmp_path_factory, isolated_cache_dir):
    root = tmp_path_factory.mktemp("job")
    data = make_dataset(root / "train", groups_per_class=14, per_group=2, seed=5)
    config = sweep_yaml(
        root / "s.yaml", data, metric="val_auc", mode="max", cv_folds=3, num_samples=4, max_concurrent=2,
        asha={"max_epochs": 2, "grace_period": 1, "reduction_factor": 2},
        first_trials=[{"lr": 0.01, "batch_size": 16, "optimizer": "adamw"}], tracking="mlflow",
    )
    out = root / "out"
    env = {**__import__("os").environ, "LUNGSWEEP_CACHE": str(isolated_cache_dir)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lungsweep", "run", "--config", str(config), "--data", str(data),
                           "--out", str(out), "--members", "3"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return {"root": root, "data": data, "out": out, "config": config, "stdout": done.stdout, "stderr": done.stderr,
            "env": env, "seconds": time.monotonic() - started}


@pytest.fixture(scope="module")
def isolated_cache_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "image-cache"


def test_the_main_job_writes_every_stage_and_says_where(job):
    out = job["out"]
    for path in ("sweep/lungsweep_sweep.json", "sweep/results.parquet", "ensemble/ensemble.json",
                 "ensemble/report.html", "model/model.onnx", "model/manifest.json", "predictions.csv"):
        assert (out / path).is_file(), path
    assert f"report: {out / 'ensemble' / 'report.html'}" in job["stdout"]
    page = (out / "ensemble" / "report.html").read_text()
    assert 'id="where-models-look"' in page and 'id="fig-explain-' in page, "the report shows where the models look"
    shipped = json.loads((out / "ensemble" / "ensemble.json").read_text())
    assert shipped["bag_models"] == "first" and shipped["pipeline"]["params"]["threshold_rule"] == "smoothed_youden"
    for trial in shipped["members"]:  # one network per config: each bag's first fold model
        assert sorted(p.name for p in (out / "ensemble" / "members" / trial).iterdir()) == ["bag.json", "fold_0"]
    assert json.loads((out / "model" / "manifest.json").read_text())["cost"]["networks"] == len(shipped["members"])
    metrics = json.loads((out / "ensemble" / "metrics.json").read_text())
    n_holdout, n_crossfit = metrics["n"], metrics["development_crossfit"]["n"]
    for shown in (job["stdout"], page):  # the headline: both estimates side by side, each with its size
        assert f"holdout, {n_holdout} images" in shown and f"development cross-fit, {n_crossfit} images" in shown
        assert f"is the larger-sample estimate ({max(n_holdout, n_crossfit)} vs" in shown
    assert 'data-key="development-crossfit"' in page and 'id="which-estimate"' in page
    assert "scored on: holdout (untouched)" in job["stdout"]
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 8 and all(0.0 <= float(r["probability"]) <= 1.0 for r in rows)
    assert "[sweep" in job["stderr"], "the sweep's progress line is shown"
    shown = job["stdout"] + job["stderr"]
    assert "Configuration for experiment" not in shown and "tensorboard --logdir" not in shown, \
        "Ray's own experiment box is not printed above ours"
    assert shown.count("split holdout") <= 1, "the audit's inspection splits are not described as the run's"


def test_the_sweep_ranks_bags_by_their_pooled_out_of_fold_metric(job):
    sweep = job["out"] / "sweep"
    cfg = read_sweep(sweep)
    assert cfg.cv_folds == 3 and cfg.reported_metric == "oof_auc"
    table = pd.read_parquet(sweep / "results.parquet")
    assert set(table.status) <= {"completed", "stopped"} and (table.status == "completed").any()
    assert (table[table.status == "completed"].epochs == 3).all(), "a completed trial reported once per fold"
    assert (table[table.status == "stopped"].epochs < 3).all()
    first = table.sort_values("trial_id").iloc[0]  # the enqueued first trial ran the given config
    assert {first["config/lr"], first["config/batch_size"]} == {0.01, 16} or (table["config/lr"] == 0.01).any()
    for row in table[table.status == "completed"].itertuples():
        bag = read_bag(Path(row.checkpoint))
        assert bag["folds_done"] == [0, 1, 2]
        assert row.best_metric == pytest.approx(bag["metrics"]["oof_auc"])


def test_every_trial_is_an_mlflow_run_in_the_sweeps_database(job):
    from mlflow.tracking import MlflowClient

    sweep = job["out"] / "sweep"
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweep")
    runs = client.search_runs([experiment.experiment_id])
    table = pd.read_parquet(sweep / "results.parquet")
    assert len(runs) == len(table)
    assert all("oof_auc" in run.data.metrics for run in runs)


def test_the_ensemble_is_fitted_out_of_fold_and_scored_on_the_untouched_holdout(job, tmp_path, caplog):
    sweep = job["out"] / "sweep"
    complete = (pd.read_parquet(sweep / "results.parquet").status == "completed").sum()
    with caplog.at_level(logging.WARNING):
        members = pick_members(sweep, top=10)
    assert len(members) == complete and all(m.is_bag for m in members)
    assert "asked for 10 members, but only" in caplog.text
    metrics = build_ensemble(sweep, tmp_path / "ens", EnsembleSettings(method="stack", calibration="platt",
                                                                      n_splits=3, n_boot=100, bag_models="all"))
    fitted = metrics["fitted_on"]
    assert fitted["scored_on"] == "holdout (untouched)" and fitted["images"] > metrics["n"]
    for key in METRIC_NAMES:
        assert set(metrics[key]) == {"value", "ci_low", "ci_high"}
        assert set(metrics["development_crossfit"][key]) == {"value", "ci_low", "ci_high"}
    assert "out-of-fold predictions over the development pool" in metrics["data"]
    audit = metrics["data_audit"]  # the sweep audited its data once; the ensemble carries the headline
    assert (sweep / "audit.json").is_file() and "shortcut_auc" in audit and "Groups:" in audit["groups"]
    page = (tmp_path / "ens" / "report.html").read_text()
    assert 'id="data-audit"' in page and 'id="fig-history"' in page, "the sweep history reads oof_auc"
    member_dir = tmp_path / "ens" / "members" / members[0].trial_id
    assert sorted(p.name for p in member_dir.iterdir()) == ["bag.json", "fold_0", "fold_1", "fold_2"]


def test_the_calibrator_and_threshold_are_fitted_for_the_bags_mean_margin(job):
    settings = EnsembleSettings(method="mean", calibration="temperature", members=4, n_splits=3, n_boot=50,
                                fold_noise_share=0.26, bag_models="all")  # finished bags: three folds each, all shipped
    fitted = fit_ensemble(job["out"] / "sweep", settings)
    members, r = fitted.members, settings.fold_noise_share
    c = 1 - r * (1 - 1 / 3)  # three folds per bag
    spread = fitted.metrics["bag_spread"]
    assert spread["factor"] == {m.trial_id: round(c, 4) for m in members}
    assert fitted.manifest["fitted_for_bag_means"]["noise_share"] == r
    for m in members:  # the holdout's own fold models say how much the mean narrows: a check, not a fit
        shown = spread["on_holdout"][m.trial_id]
        assert shown["folds"] == 3 and shown["assumed"] == round(c, 4) and 0 < shown["measured"] <= 1
    oof, holdout = oof_predictions(members), holdout_predictions(members)
    centre = oof.margins.mean(axis=0)
    by_hand = EnsemblePipeline(method="mean", calibration="temperature", threshold_rule=settings.threshold_rule,
                               n_splits=3).fit(
        centre + c * (oof.margins - centre), oof.y, oof.groups)
    np.testing.assert_allclose(fitted.pipeline.predict_proba(holdout.margins), by_hand.predict_proba(holdout.margins))
    assert fitted.pipeline.threshold_ == by_hand.threshold_
    single_fold = fit_ensemble(job["out"] / "sweep", EnsembleSettings(method="mean", calibration="temperature",
                                                                      members=4, n_splits=3, n_boot=50,
                                                                      bag_models="all"))  # r = 0
    assert single_fold.manifest["fitted_for_bag_means"]["factor"] == {m.trial_id: 1.0 for m in members}
    assert not np.allclose(single_fold.pipeline.predict_proba(holdout.margins),
                           fitted.pipeline.predict_proba(holdout.margins))


def test_members_all_averages_every_bag_the_sweep_trained_with_those_asha_stopped(job, tmp_path, caplog):
    sweep = job["out"] / "sweep"
    table = pd.read_parquet(sweep / "results.parquet")
    members = pick_members(sweep, top="all")
    assert [m.trial_id for m in members] == table[table.checkpoint.notna()].trial_id.tolist()
    stopped = [m for m in members if len(m.meta["folds_done"]) < 3]
    assert stopped, "ASHA (reduction factor 2 over 4 trials) stopped a bag before its last fold"
    oof, j = oof_predictions(members), members.index(stopped[0])
    own = oof.member_rows(j)
    assert 0 < own.sum() < len(oof.y), "a stopped bag scored its folds' part of the pool out of fold"
    stored = stopped[0].meta["oof"]
    np.testing.assert_allclose(oof.margins[own, j], [stored[i]["logit"] for i in np.array(oof.ids)[own]], atol=1e-6)
    # elsewhere the members' mean is the mean of those that scored the image, at the spread of all members' mean
    made = logit([expit(row[known]).mean() for row, known in zip(oof.margins, oof.scored)])
    gaps, spread = ~oof.scored.all(axis=1), mean_spread(oof.margins, oof.scored)
    np.testing.assert_allclose(logit(expit(oof.margins[gaps]).mean(axis=1)),
                               made.mean() + spread * (made[gaps] - made.mean()), atol=1e-6)

    with caplog.at_level(logging.WARNING):  # greedy cannot weigh a bag on part of the pool: it leaves them out
        greedy = fit_ensemble(sweep, EnsembleSettings(method="greedy", members="all", n_splits=3, n_boot=20))
    assert [m.trial_id for m in greedy.members] == [m.trial_id for m in members if m not in stopped]
    assert f"leaving out {len(stopped)} bag(s) stopped before their last fold" in caplog.text
    ens = tmp_path / "ens"
    build_ensemble(sweep, ens, EnsembleSettings(method="mean", members="all", n_splits=3, n_boot=50, bag_models="all"))
    written = json.loads((ens / "ensemble.json").read_text())
    assert written["members"] == [m.trial_id for m in members]
    assert set(written["stopped_bags"]["trials"]) == {m.trial_id for m in stopped}
    assert written["stopped_bags"]["mean_spread"] == round(spread, 4)
    stopped_dir = ens / "members" / stopped[0].trial_id  # a stopped bag ships the fold models it has
    assert sorted(p.name for p in stopped_dir.iterdir()) == ["bag.json", *(f"fold_{k}" for k in
                                                                           stopped[0].meta["folds_done"])]
    manifest = export_model(ens, tmp_path / "model", n_boot=50)
    assert manifest["parity"]["max_abs_diff"] <= 1e-4, "the exported graph runs every bag's fold models"


def test_a_network_budget_keeps_members_by_rank_and_the_report_plots_auc_against_networks(job, tmp_path):
    sweep = job["out"] / "sweep"
    members = pick_members(sweep, top="all")  # in rank order
    folds = [len(m.meta["folds_done"]) for m in members]
    budget = folds[0] + min(folds[1:])  # the top bag, then whichever bags below it still fit
    expected, used = [], 0
    for m, f in zip(members, folds):
        if used + f <= budget:
            expected.append(m.trial_id)
            used += f
    assert len(expected) < len(members), "the budget leaves some bag out"
    ens = tmp_path / "ens"
    metrics = build_ensemble(sweep, ens, EnsembleSettings(method="mean", members="all", n_splits=3, n_boot=20,
                                                          max_networks=budget, bag_models="all"))
    assert json.loads((ens / "ensemble.json").read_text())["members"] == expected
    assert metrics["networks"]["shipped"] == used <= budget and metrics["networks"]["budget"] == budget
    curve = metrics["networks"]["curve"]  # every member by rank, budget or not: what each budget would score
    assert [p["networks"] for p in curve] == np.cumsum(folds).tolist()
    assert [p["trial_id"] for p in curve] == [m.trial_id for m in members]
    assert all(0.0 <= p["holdout_auc"] <= 1.0 for p in curve)
    page = (ens / "report.html").read_text()
    assert 'id="fig-networks"' in page and 'id="networks-curve"' in page and f"within a budget of {budget}" in page
    manifest = export_model(ens, tmp_path / "model", n_boot=20)
    assert manifest["cost"]["networks"] == used and manifest["parity"]["max_abs_diff"] <= 1e-4


def test_tta_rescores_a_stopped_bag_on_its_own_folds_and_fills_the_rest(job):
    """With TTA the margins are recomputed, a stopped bag's from the fold model that held each image out."""
    members = pick_members(job["out"] / "sweep", top="all")
    stopped = next(m for m in members if len(m.meta["folds_done"]) < 3)
    plain = oof_predictions(members)
    mirrored = tta_predictions(members, plain, "oof", torch.device("cpu"))
    j = members.index(stopped)
    np.testing.assert_array_equal(mirrored.scored, plain.scored)
    assert np.isfinite(mirrored.margins).all(), "every gap is filled"
    k = stopped.meta["folds_done"][0]
    rows = np.array([stopped.meta["oof"].get(i, {}).get("fold") == k for i in plain.ids])
    model, meta = load_model(stopped.model_folders()[0])
    data = prepare_data(TrainConfig.from_dict({**stopped.config, "progress": False, "fold": None}))
    position = {sample_id: i for i, sample_id in enumerate(data.dataset.ids)}
    images = np.asarray(data.images.array[[position[i] for i in np.array(plain.ids)[rows]]])
    expected = model_margins(model, Preprocessing.from_dict(meta["preprocessing"]), images, tta=True,
                             device=torch.device("cpu"))
    np.testing.assert_allclose(mirrored.margins[rows, j], expected, atol=1e-5)
    assert not np.allclose(mirrored.margins[rows, j], plain.margins[rows, j], atol=1e-4), "the mirror changed them"
    gaps = ~mirrored.scored[:, j]
    np.testing.assert_allclose(mirrored.margins[gaps], fill_unscored(mirrored.margins, mirrored.scored)[gaps])


def test_export_of_a_bag_agrees_with_it_in_process(job, tmp_path):
    sweep = job["out"] / "sweep"
    best = pick_members(sweep, top=1)[0]
    done = lungsweep("export", str(sweep), "--trial", "best", "--out", str(tmp_path / "m"), "--bootstrap", "50")
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["ensemble"]["members"] == [best.trial_id] and manifest["parity"]["max_abs_diff"] <= 1e-4
    exported, in_process = ExportedModel.load(tmp_path / "m"), load_predictor(best.checkpoint, device="cpu")
    images = new_images(tmp_path / "new", exported.image_sizes)
    np.testing.assert_allclose(exported.predict_proba(images), in_process.predict_proba(images), atol=1e-4)
    assert len(in_process.members[0].models) == 3, "the bag's three fold models"


def test_running_the_job_again_resumes_and_redoes_nothing(job):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lungsweep", "run", "--config", str(job["config"]), "--data",
                           str(job["data"]), "--out", str(job["out"])], capture_output=True, text=True,
                          env=job["env"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming the sweep" in done.stdout
    assert "ensemble: already in" in done.stderr and "export: already in" in done.stderr
    assert time.monotonic() - started < job["seconds"]


@pytest.fixture(scope="module")
def manifest_job(tmp_path_factory, isolated_cache_dir):
    """The main job on a CSV of path,label,group (the groups are patient ids the file names do not carry),
    with a sweep.yaml whose train: names a data folder that --manifest replaces; as small as a job gets."""
    root = tmp_path_factory.mktemp("manifest-job")
    images = make_dataset(root / "images", groups_per_class=10, per_group=2, seed=9)
    rows = ["path,label,group"] + [
        f"{p.relative_to(root).as_posix()},{p.parent.name},patient-{p.parent.name}-{p.stem.split('%')[0]}"
        for p in sorted(images.rglob("*.*"))
    ]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    config = sweep_yaml(
        root / "s.yaml", root / "not-the-data", metric="val_auc", mode="max", cv_folds=2, num_samples=2,
        max_concurrent=2, asha={"max_epochs": 1, "grace_period": 2, "reduction_factor": 2},
        space={"lr": {"loguniform": [1e-3, 1e-2]}},
    )
    out = root / "out"
    env = {**__import__("os").environ, "LUNGSWEEP_CACHE": str(isolated_cache_dir)}
    done = subprocess.run([sys.executable, "-m", "lungsweep", "run", "--config", str(config), "--manifest",
                           str(root / "labels.csv"), "--out", str(out), "--members", "2"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-4000:]
    return {"root": root, "out": out}


def test_the_main_job_runs_on_a_manifest(manifest_job):
    root, out = manifest_job["root"], manifest_job["out"]
    train = read_sweep(out / "sweep").train
    assert train["manifest"] == str((root / "labels.csv").resolve()) and "data" not in train, "--manifest replaces train.data"
    audit = json.loads((out / "sweep" / "audit.json").read_text())
    assert audit["groups"]["rule"]["rule"] == "manifest", "the patients are the manifest's group column"
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert rows and all(Path(r["path"]).is_file() and not r["error"] for r in rows), \
        "the example images are found relative to the manifest's folder"
    assert all(Path(r["path"]).is_relative_to(root / "images") for r in rows)
