"""The sweep folder (RUN_DIR) on disk: its file names, how to tell one, and how to read it.

Ray-free: `lungsweep results` needs Tune's state, but the ensemble step, the report and
export only read what is here, so they import this module and never Ray.

    RUN_DIR/lungsweep_sweep.json   the sweep config as run (SweepConfig, JSON) and its sweep_id
    RUN_DIR/results.parquet        one row per trial, ranked (and results.csv)
    RUN_DIR/best_config.yaml       a `lungsweep train --config` file for the winner
    RUN_DIR/trial_<id>/            one Tune trial: progress.csv, checkpoint_NNNNNN/, logs

RUN_DIR is a local folder or a URI (s3://, gs://, file://, with `storage:` in sweep.yaml):
the record and the results tables are read and written through pyarrow.fs (search.storage).
"""
from __future__ import annotations

import dataclasses
import io
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.errors import LungsweepError
from trainers.records import read_record_file

from . import storage
from .config import SweepConfig, parse_sweep_config

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BEST_CONFIG", "RESULTS_CSV", "RESULTS_PARQUET", "SWEEP_FILE", "SWEEP_ID", "USABLE_STATUSES",
    "is_sweep", "new_sweep_id", "read_record", "read_results", "read_sweep", "read_sweep_id", "study_name",
    "sweep_record", "trial_dir", "trial_dirname", "trial_status", "write_sweep",
]

SWEEP_FILE = "lungsweep_sweep.json"
SWEEP_ID = "sweep_id"  # SWEEP_FILE's key for the id of the sweep (not a SweepConfig field)
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
BEST_CONFIG = "best_config.yaml"
# A finished trial's statuses; ASHA-stopped ("stopped") trials still have a best checkpoint.
USABLE_STATUSES = ("completed", "early-stopped", "stopped")


def trial_dirname(trial_id: str) -> str:
    """The folder Tune writes a trial into (launch names it; readers find it)."""
    return f"trial_{trial_id}"


def trial_dir(run_dir: str | Path, trial_id: str) -> Path:
    return Path(run_dir) / trial_dirname(trial_id)


def is_sweep(path: str | Path) -> bool:
    return storage.exists(storage.join(path, SWEEP_FILE)) or storage.exists(storage.join(path, RESULTS_PARQUET))


def sweep_record(cfg: SweepConfig, sweep_id: str | None = None) -> dict[str, Any]:
    """The JSON form of a sweep config, as written to SWEEP_FILE (and compared on resume).

    sweep_id: a uuid hex chosen at the first launch and kept by every resume; it names
    the Optuna study, so two sweeps in folders of the same name never share one.
    """
    record = dataclasses.asdict(cfg)
    record["space"] = [dataclasses.asdict(s) for s in cfg.space]
    if sweep_id is not None:
        record[SWEEP_ID] = sweep_id
    return json.loads(json.dumps(record, default=str))


def write_sweep(run_dir: str | Path, cfg: SweepConfig, sweep_id: str | None = None) -> str | Path:
    """RUN_DIR/SWEEP_FILE; RUN_DIR a folder or a URI (s3://, gs://, file://)."""
    path = storage.join(run_dir, SWEEP_FILE)
    storage.write_text(path, json.dumps(sweep_record(cfg, sweep_id), indent=1))
    return path


def new_sweep_id() -> str:
    return uuid.uuid4().hex


def read_sweep_id(run_dir: str | Path) -> str | None:
    """The sweep id recorded at the first launch; None for a folder without a record (or an older one)."""
    try:
        value = read_record(run_dir).get(SWEEP_ID)
    except LungsweepError:
        return None
    return value if isinstance(value, str) and value else None


def study_name(run_name: str, sweep_id: str) -> str:
    """The Optuna study of a sweep: its folder's name and the first 8 hex digits of its id."""
    return f"lungsweep-{run_name}-{sweep_id[:8]}"


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """SWEEP_FILE as written, or a named error saying what RUN_DIR should be."""
    return read_record_file(
        storage.join(run_dir, SWEEP_FILE), required=("metric", "mode"),
        missing=f"{run_dir} holds no lungsweep sweep ({SWEEP_FILE} is missing); give the --out of a launch",
        remedy="launch the sweep again into a new --out", read_bytes=storage.read_bytes,
    )


def read_sweep(run_dir: str | Path) -> SweepConfig:
    """The SweepConfig a sweep ran with, rebuilt and validated from SWEEP_FILE."""
    record = read_record(run_dir)
    raw = {k: v for k, v in record.items() if k not in ("space", SWEEP_ID)}
    space: dict[str, Any] = {}
    for spec in record.get("space") or []:
        entry: dict[str, Any] = {spec["kind"]: list(spec["values"])}
        if spec.get("when"):
            entry["when"] = {key: list(values) for key, values in spec["when"]}
        space[spec["name"]] = entry
    raw["space"] = space
    return parse_sweep_config(raw, source=str(storage.join(run_dir, SWEEP_FILE)))


def read_results(run_dir: str | Path) -> "pd.DataFrame":
    """results.parquet, ranked; a named error when `lungsweep results` has not written it yet."""
    import pandas as pd

    path = storage.join(run_dir, RESULTS_PARQUET)
    data = storage.read_bytes(path)
    if data is None:
        raise LungsweepError(f"{path} is missing: run `lungsweep results {run_dir}` first (or give a sweep's --out)")
    return pd.read_parquet(io.BytesIO(data)).sort_values("rank").reset_index(drop=True)


def trial_status(tune_status: str, last: dict[str, Any], max_epochs: int) -> str:
    """completed (ran max_epochs), early-stopped (trainer patience), stopped (ASHA or the time budget),
    error, or Tune's own status lower-cased (running, pending) for an interrupted sweep."""
    if tune_status == "ERROR":
        return "error"
    if tune_status != "TERMINATED":
        return tune_status.lower()
    if last.get("trainer_stop") == "patience":
        return "early-stopped"
    if int(last.get("training_iteration", 0) or 0) >= max_epochs:
        return "completed"
    return "stopped"
