"""`lungsweep results`: one row per trial, ranked, saved as CSV and Parquet, plus the best config."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from ray.tune import ExperimentAnalysis

from . import storage
from .config import SweepConfig
from .record import (BEST_CONFIG, RESULTS_CSV, RESULTS_PARQUET, SweepCount, count_trials, read_sweep,
                     read_sweep_count, trial_status, write_sweep_count)

__all__ = ["results_table", "rank_trials", "load_results", "save_results", "format_table"]

COLUMNS = ["trial_id", "status", "epochs", "best_epoch", "best_metric", "checkpoint", "wall_seconds", "node_id"]


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """The results table of the sweep in `run_dir`, read from Tune's state on disk."""
    return results_table(run_dir, read_sweep(run_dir))


def results_table(run_dir: str | Path | Any, cfg: SweepConfig) -> pd.DataFrame:
    """One row per trial: id, status, config, epochs, best metric and epoch, checkpoint, wall time.

    status: completed (ran max_epochs, or every fold), early-stopped (trainer patience),
    stopped (by ASHA, or cut by the time budget), error, or running/pending for an
    interrupted sweep. Rows are ranked by the best metric (`rank_trials`). Single split: the best
    epoch's metric and checkpoint. k-fold: the pooled out-of-fold metric after the
    last fold done (`epochs` then counts folds) and the bag checkpoint; whole bags rank first.
    """
    metric, mode, max_t = cfg.reported_metric, cfg.mode, cfg.max_t
    path = str(getattr(run_dir, "experiment_path", run_dir))
    if "://" not in path:
        path = str(Path(path).resolve())  # Tune's storage layer reads a relative path as a bad URI
    analysis = ExperimentAnalysis(path, default_metric=metric, default_mode=mode)
    frames = analysis.trial_dataframes
    rows = []
    for trial in analysis.trials:
        history = frames.get(trial.trial_id)
        last = trial.last_result or {}
        row: dict[str, Any] = {"trial_id": trial.trial_id, "status": trial_status(trial.status, last, max_t)}
        row["epochs"] = int(last.get("training_iteration", 0) or 0)
        if cfg.cross_validated:  # a pooled estimate grows with each fold: the last is the trial's
            best_epoch, best_value = _last(history, metric)
            row["checkpoint"] = _best_checkpoint(trial, "folds_done", "max")
        else:
            best_epoch, best_value = _best(history, metric, mode)
            row["checkpoint"] = _best_checkpoint(trial, metric, mode)
        row["best_epoch"], row["best_metric"] = best_epoch, best_value
        row["wall_seconds"] = float(last.get("time_total_s", float("nan")) or float("nan"))
        row["node_id"] = last.get("node_id")
        row.update({f"config/{k}": v for k, v in sorted(trial.config.items())})
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else COLUMNS)
    return rank_trials(table, metric, mode, by_folds=cfg.cross_validated) if rows else table


def rank_trials(table: pd.DataFrame, metric: str, mode: str, *, by_folds: bool = False) -> pd.DataFrame:
    """`table` sorted best first (NaN last) with a `rank` column, and the metric in its attrs.

    In a k-fold sweep (`by_folds`) the bags that scored more of the pool rank first, whole bags
    above the ones ASHA stopped: a bag stopped after one fold is scored on a k-th of the pool,
    a noisier number that often tops the whole bags' (on one outer split three one-fold bags
    did), and best_config.yaml names the rank-1 trial.
    """
    keys, ascending = ["best_metric"], [mode == "min"]
    if by_folds:  # `epochs` counts folds
        keys, ascending = ["epochs", *keys], [False, *ascending]
    table = table.sort_values(keys, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    table.attrs.update(metric=metric, mode=mode)
    return table


def save_results(table: pd.DataFrame, run_dir: str | Path, cfg: SweepConfig, *,
                 budget_spent: bool | None = None) -> SweepCount:
    """results.csv, results.parquet, best_config.yaml (the sweep's fixed settings plus the winner's), and
    the count of trials asked for against those that gave a model (`budget_spent` None: as last written).

    The fixed settings are `cfg.base_train_config()`, the very config every trial started from,
    so the best config trains what the sweep trained (its monitor and epochs included).
    """
    if budget_spent is None:
        earlier = read_sweep_count(run_dir)
        budget_spent = bool(earlier and earlier.budget_spent)
    count = count_trials(table, cfg.num_samples, budget_spent=budget_spent)
    write_sweep_count(run_dir, count)
    base = cfg.base_train_config().to_dict()
    storage.write_bytes(storage.join(run_dir, RESULTS_CSV), table.to_csv(index=False).encode())
    storage.write_with(storage.join(run_dir, RESULTS_PARQUET), lambda f: table.to_parquet(f, index=False))
    finished = table[table["best_metric"].notna()] if len(table) else table
    if len(finished):
        best = finished.iloc[0]
        sampled = {k.split("/", 1)[1]: _plain(v) for k, v in best.items() if k.startswith("config/") and _present(v)}
        config = {**{k: v for k, v in base.items() if v is not None and k != "progress"}, **sampled}
        unit = "fold" if cfg.cross_validated else "epoch"
        header = (f"# best trial {best['trial_id']}: {cfg.reported_metric} {best['best_metric']:.4f} at {unit} "
                  f"{best['best_epoch']}\n")
        storage.write_text(storage.join(run_dir, BEST_CONFIG), header + yaml.safe_dump(config, sort_keys=False))
    return count


def format_table(table: pd.DataFrame, metric: str, top: int | None = 20) -> str:
    if table.empty:
        return "no trials yet"
    shown = table.head(top) if top else table
    config_cols = [c for c in shown.columns if c.startswith("config/")]
    view = shown[["rank", "trial_id", "status", "epochs", "best_epoch", "best_metric", "wall_seconds", *config_cols]]
    view = view.rename(columns={"best_metric": f"best_{metric}", **{c: c.split("/", 1)[1] for c in config_cols}})
    return view.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _best(history: pd.DataFrame | None, metric: str, mode: str) -> tuple[int, float]:
    if history is None or metric not in history or history[metric].dropna().empty:
        return 0, float("nan")
    column = history[metric]
    i = column.idxmax() if mode == "max" else column.idxmin()
    return int(history.loc[i, "training_iteration"]), float(column[i])


def _last(history: pd.DataFrame | None, metric: str) -> tuple[int, float]:
    if history is None or metric not in history or history[metric].dropna().empty:
        return 0, float("nan")
    last = history[history[metric].notna()].iloc[-1]
    return int(last["training_iteration"]), float(last[metric])


def _best_checkpoint(trial: Any, metric: str, mode: str) -> str | None:
    results = trial.run_metadata.checkpoint_manager.best_checkpoint_results
    scored = [r for r in results if isinstance(r.metrics.get(metric), (int, float)) and not math.isnan(r.metrics[metric])
              and _exists(r.checkpoint)]
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda r: r.metrics[metric]).checkpoint.path


def _exists(checkpoint: Any) -> bool:
    """A sweep killed between a checkpoint's deletion and Tune's next snapshot still lists it."""
    import pyarrow.fs

    return checkpoint.filesystem.get_file_info(checkpoint.path).type == pyarrow.fs.FileType.Directory


def _present(v: Any) -> bool:
    return not (isinstance(v, float) and math.isnan(v))


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
