"""Real sweeps: local Ray, Optuna TPE, ASHA, tiny models on generated images."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tests_support import sweep_yaml

from lungsweep.cli import main

from search import launch, load_results, load_sweep_config
from trainers import load_model, predict_margins, prepare_data, TrainConfig
from trainers.inference import Preprocessing

pytestmark = pytest.mark.slow  # starts Ray Tune sweeps: not in the fast tier

def test_local_sweep_with_asha_ranks_trials_and_the_best_checkpoint_predicts(
    local_ray, tmp_path, synthetic_data, monkeypatch
):
    cfg = load_sweep_config(sweep_yaml(tmp_path / "s.yaml", synthetic_data, num_samples=8))
    table = launch(cfg, tmp_path / "sweep")
    assert len(table) == 8
    assert set(table.status) <= {"completed", "stopped"}
    stopped = table[table.status == "stopped"]
    assert len(stopped) >= 1 and (stopped.epochs < 4).all(), "ASHA stopped some trials early"
    # TPE learns a stopped trial as pruned at the epoch it reached, not as a finished one
    study = saved_study(tmp_path / "sweep")
    state_by_lr = {t.params["lr"]: t.state.name for t in study.get_trials(deepcopy=False)}
    expected = {lr: "PRUNED" if status == "stopped" else "COMPLETE"
                for lr, status in zip(table["config/lr"], table.status)}
    assert state_by_lr == expected
    pruned = [t for t in study.get_trials(deepcopy=False) if t.state.name == "PRUNED"]
    for t in pruned:  # valued at the last epoch it reached, which TPE sets below the finished trials
        epochs = sorted(t.intermediate_values)
        assert 1 <= len(epochs) < 4 and t.value == t.intermediate_values[epochs[-1]], (t.number, t.intermediate_values)
    assert table.best_metric.is_monotonic_increasing  # ranked, val_loss: lower is better
    for name in ("results.csv", "results.parquet", "best_config.yaml"):
        assert (tmp_path / "sweep" / name).is_file()
    assert pd.read_parquet(tmp_path / "sweep" / "results.parquet").trial_id.tolist() == table.trial_id.tolist()
    assert load_results(tmp_path / "sweep").trial_id.tolist() == table.trial_id.tolist()
    monkeypatch.chdir(tmp_path)  # `lungsweep results sweep` from the folder above it
    assert load_results("sweep").trial_id.tolist() == table.trial_id.tolist()

    # launch and `lungsweep results` write one best config: the base every trial started from
    best_config = tmp_path / "sweep" / "best_config.yaml"
    written = yaml.safe_load(best_config.read_text())
    assert written["monitor"] == "val_loss" and written["epochs"] == 4
    best_config.unlink()
    assert main(["results", "sweep"]) == 0
    assert yaml.safe_load(best_config.read_text()) == written

    model, meta = load_model(table.checkpoint[0])
    assert meta["epoch"] == table.best_epoch[0]
    data = prepare_data(TrainConfig.from_dict({**meta["config"], "progress": False}))
    ids = list(meta["predictions"]["val"])
    images = np.asarray(data.images.array[[data.dataset.ids.index(i) for i in ids]])
    margins = predict_margins(model, images, Preprocessing.from_dict(meta["preprocessing"]), device=torch.device("cpu"))
    np.testing.assert_allclose(margins, [meta["predictions"]["val"][i]["logit"] for i in ids], atol=1e-4)


def test_a_crashing_trial_is_retried_from_its_checkpoint_and_finishes(local_ray, tmp_path, synthetic_data):
    cfg = load_sweep_config(sweep_yaml(
        tmp_path / "s.yaml", synthetic_data, num_samples=2, fail_first_attempt_at_epoch=2,
        asha={"max_epochs": 3, "grace_period": 3, "reduction_factor": 2},
    ))
    table = launch(cfg, tmp_path / "sweep")
    assert table.status.tolist() == ["completed", "completed"]
    assert (table.epochs == 3).all()
    from ray.tune import ExperimentAnalysis

    failures = [t.run_metadata.num_failures for t in ExperimentAnalysis(str(tmp_path / "sweep")).trials]
    assert failures == [1, 1]
    history = pd.read_csv(next((tmp_path / "sweep").glob("trial_*/progress.csv")))
    assert history.training_iteration.tolist() == [1, 2, 3], "resumed after epoch 1, not restarted"


def test_a_snapshot_tune_cannot_restore_is_refused_not_started_over(local_ray, tmp_path, synthetic_data):
    """Tune catches a failed restore and starts the sweep afresh; lungsweep refuses."""
    from search.snapshot import SnapshotError

    cfg = load_sweep_config(sweep_yaml(tmp_path / "s.yaml", synthetic_data, num_samples=2, max_concurrent=1,
                                       asha={"max_epochs": 2, "grace_period": 2, "reduction_factor": 2}))
    out = tmp_path / "sweep"
    assert len(launch(cfg, out)) == 2
    (searcher,) = out.glob("searcher-state-*.pkl")
    whole, states = searcher.read_bytes(), sorted(out.glob("experiment_state-*.json"))

    searcher.write_bytes(whole[: len(whole) // 2])  # a driver killed mid-upload, before the upload was atomic
    with pytest.raises(SnapshotError, match=rf"{searcher.name} was cut off"):
        launch(cfg, out)
    searcher.write_bytes(pickle.dumps(42))  # whole, but not what Tune's searcher saved: its restore fails
    with pytest.raises(SnapshotError, match=r"could not restore 2 of the 2 saved trials.*nothing was run"):
        launch(cfg, out)
    assert sorted(out.glob("experiment_state-*.json")) == states, "the refused resume wrote a snapshot"
    searcher.write_bytes(whole)
    assert load_results(out).trial_id.tolist() == launch(cfg, out).trial_id.tolist()


def saved_study(run_dir):
    """The Optuna study as the sweep's searcher saved it with Tune's snapshot."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = ConcurrencyLimiter(OptunaSearch(), max_concurrent=1)
    searcher.restore_from_dir(str(run_dir))
    return searcher.searcher._ot_study
