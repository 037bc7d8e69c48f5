"""search.results on a fabricated ranked table: what `lungsweep results` prints and writes, without running Ray."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from search.config import SweepConfig, parse_sweep_config
from search.record import BEST_CONFIG, RESULTS_CSV, RESULTS_PARQUET, read_results
from search.results import COLUMNS, format_table, rank_trials, save_results
from trainers import LungsweepError, TrainConfig

NAN = float("nan")


@pytest.fixture
def cfg() -> SweepConfig:
    return parse_sweep_config({
        "metric": "val_loss",
        "mode": "min",
        "asha": {"max_epochs": 5, "grace_period": 1, "reduction_factor": 2},
        "train": {"image_size": 64, "weight_decay": 0.01, "patience": 3},
        "space": {
            "lr": {"loguniform": [1.0e-4, 1.0e-2]},
            "batch_size": {"choice": [8, 16]},
            "optimizer": {"choice": ["adamw", "sgd"]},
            "momentum": {"uniform": [0.8, 0.95], "when": {"optimizer": "sgd"}},
        },
    })


def _ranked(rows: list[dict]) -> pd.DataFrame:
    """A table as results_table leaves it: sorted by best metric (NaN last), ranked, metric in attrs."""
    return rank_trials(pd.DataFrame(rows), "val_loss", "min")


def _trial(tid: str, status: str, best: float, optimizer: str, lr: float, batch_size: int, momentum: float) -> dict:
    return {
        "trial_id": tid, "status": status, "epochs": 5 if status == "completed" else 2,
        "best_epoch": 0 if math.isnan(best) else 2, "best_metric": best,
        "checkpoint": None if math.isnan(best) else f"/runs/sweep/trial_{tid}/checkpoint_000001",
        "wall_seconds": 31.5, "node_id": "node0",
        "config/batch_size": batch_size, "config/lr": lr, "config/momentum": momentum, "config/optimizer": optimizer,
    }


@pytest.fixture
def table() -> pd.DataFrame:
    return _ranked([
        _trial("a1", "completed", 0.41, "sgd", 3.0e-3, 16, 0.9),
        _trial("b2", "error", NAN, "sgd", 1.0e-3, 8, 0.85),
        _trial("c3", "completed", 0.2345678, "adamw", 4.5e-4, 8, NAN),  # the winner: momentum not sampled
        _trial("d4", "stopped", 0.63, "adamw", 8.0e-3, 16, NAN),
    ])


def test_both_tables_are_written_and_read_back_ranked(tmp_path: Path, cfg: SweepConfig, table: pd.DataFrame):
    save_results(table, tmp_path, cfg)
    assert list(read_results(tmp_path)["trial_id"]) == ["c3", "a1", "d4", "b2"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / RESULTS_PARQUET), table)
    csv = pd.read_csv(tmp_path / RESULTS_CSV)
    assert list(csv.columns) == list(table.columns)
    assert list(csv["trial_id"]) == list(table["trial_id"]) and csv["best_metric"].isna().sum() == 1


def test_best_config_is_the_sweep_base_plus_the_winners_values(tmp_path: Path, cfg: SweepConfig, table: pd.DataFrame):
    save_results(table, tmp_path, cfg)
    text = (tmp_path / BEST_CONFIG).read_text()
    assert text.startswith("# best trial c3: val_loss 0.2346 at epoch 2\n")
    best = yaml.safe_load(text)
    # what every trial started from: the sweep's train values, its metric as monitor, asha.max_epochs as epochs
    assert best["monitor"] == "val_loss" and best["epochs"] == 5
    assert best["image_size"] == 64 and best["weight_decay"] == 0.01 and best["patience"] == 3
    # the winner's sampled values, as plain YAML numbers and strings
    assert best["lr"] == pytest.approx(4.5e-4) and best["batch_size"] == 8 and best["optimizer"] == "adamw"
    # momentum was not sampled for adamw (NaN in the table): the base value stands, not NaN
    assert best["momentum"] == cfg.base_train_config().momentum
    assert "progress" not in best
    assert all(v is not None for v in best.values())  # unset settings keep the trainer's own default
    assert TrainConfig.from_dict(best, source=BEST_CONFIG).lr == best["lr"]  # a valid `lungsweep train --config`


def test_an_empty_table_writes_no_best_config(tmp_path: Path, cfg: SweepConfig):
    save_results(pd.DataFrame([], columns=COLUMNS), tmp_path, cfg)
    assert (tmp_path / RESULTS_CSV).is_file() and (tmp_path / RESULTS_PARQUET).is_file()
    assert not (tmp_path / BEST_CONFIG).exists()


def test_a_table_of_failed_trials_writes_no_best_config(tmp_path: Path, cfg: SweepConfig):
    table = _ranked([_trial("b2", "error", NAN, "sgd", 1.0e-3, 8, 0.85)])
    save_results(table, tmp_path, cfg)
    assert len(read_results(tmp_path)) == 1
    assert not (tmp_path / BEST_CONFIG).exists()


def test_format_table_shows_the_ranking_with_short_config_names(table: pd.DataFrame):
    text = format_table(table, "val_loss")
    header, *rows = text.splitlines()
    assert header.split() == ["rank", "trial_id", "status", "epochs", "best_epoch", "best_val_loss", "wall_seconds",
                              "batch_size", "lr", "momentum", "optimizer"]
    assert [row.split()[1] for row in rows] == ["c3", "a1", "d4", "b2"]
    assert "0.2346" in rows[0] and "0.00045" in rows[0]  # 4 significant digits
    assert "checkpoint" not in text and "node0" not in text


def test_format_table_keeps_the_top_rows_or_says_there_are_none(table: pd.DataFrame):
    assert len(format_table(table, "val_loss", top=2).splitlines()) == 3
    assert len(format_table(table, "val_loss", top=None).splitlines()) == 5
    assert format_table(pd.DataFrame([], columns=COLUMNS), "val_loss") == "no trials yet"


def test_a_k_fold_sweep_ranks_whole_bags_first_then_by_folds_scored(tmp_path: Path):
    """A one-fold bag is scored on a fifth of the pool: its AUC may top the whole bags', not its rank."""
    cfg = parse_sweep_config({
        "metric": "val_auc", "mode": "max", "cv_folds": 5, "asha": {"max_epochs": 2, "grace_period": 1},
        "train": {"image_size": 64}, "space": {"lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    })
    def bag(tid: str, folds: int, auc: float) -> dict:
        return {"trial_id": tid, "status": "completed" if folds == 5 else "stopped", "epochs": folds,
                "best_epoch": folds, "best_metric": auc, "checkpoint": f"/runs/sweep/trial_{tid}/checkpoint_000000",
                "wall_seconds": 60.0 * folds, "node_id": "node0", "config/lr": 1.0e-3 * folds + auc / 100}
    table = rank_trials(pd.DataFrame([bag("one", 1, 0.87), bag("whole_b", 5, 0.80), bag("three", 3, 0.83),
                                      bag("whole_a", 5, 0.81), bag("lost", 1, NAN)]),
                        cfg.reported_metric, "max", by_folds=True)
    assert list(table.trial_id) == ["whole_a", "whole_b", "three", "one", "lost"]
    assert list(table["rank"]) == [1, 2, 3, 4, 5] and table.attrs == {"metric": "oof_auc", "mode": "max"}
    save_results(table, tmp_path, cfg)
    assert (tmp_path / BEST_CONFIG).read_text().startswith("# best trial whole_a: oof_auc 0.8100 at fold 5\n")


@pytest.mark.parametrize("statuses, asked, budget_spent, complete, line", [
    (["completed", "stopped"], 2, False, True, "sweep complete: 2 of 2 trials gave a model"),
    (["completed"], 3, True, True, "sweep complete: 1 of 3 trials gave a model; the time budget ran out before "
                                   "the other 2 were drawn"),
    (["completed"], 2, False, False, "sweep incomplete: 1 of 2 trials (1 never ran); run the same command again"),
    (["completed", "error", "running"], 4, False, False,
     "sweep incomplete: 1 of 4 trials (1 unfinished, 1 failed after every retry, 1 never ran)"),
    (["error"], 1, True, False, "sweep incomplete: 0 of 1 trials (1 failed after every retry); run"),
    # the time budget stopped the last trial before its first fold: no checkpoint, no model, nothing lost
    (["completed", "stopped", "stopped:none"], 40, True, True,
     "sweep complete: 2 of 40 trials gave a model; the time budget stopped 1 before its first model and ran out "
     "before the other 37 were drawn"),
])
def test_the_sweep_count_tells_a_budget_that_ran_out_from_trials_that_were_lost(statuses, asked, budget_spent,
                                                                                 complete, line):
    from search.record import count_trials

    table = pd.DataFrame({"status": [s.removesuffix(":none") for s in statuses],
                          "checkpoint": [None if s.endswith(":none") else "/sweep/trial/checkpoint_000000"
                                         for s in statuses]})
    count = count_trials(table, asked, budget_spent=budget_spent)
    assert count.complete is complete
    assert count.line().startswith(line)
    assert count.to_dict()["statement"] == count.line() and count.to_dict()["complete"] is complete


def test_the_sweep_count_round_trips_and_a_damaged_one_is_named(tmp_path):
    from search.record import SWEEP_COUNT, count_trials, read_sweep_count, write_sweep_count

    assert read_sweep_count(tmp_path) is None  # a sweep from before launch counted its trials
    count = count_trials(pd.DataFrame({"status": ["completed", "error"]}), 2, budget_spent=False)
    write_sweep_count(tmp_path, count)
    assert read_sweep_count(tmp_path) == count
    (tmp_path / SWEEP_COUNT).write_text('{"asked": 2')
    with pytest.raises(LungsweepError, match=rf"{SWEEP_COUNT} is damaged.*lungsweep results"):
        read_sweep_count(tmp_path)
