"""The sweep folder (RUN_DIR) on disk: its file names, how to tell one, and how to read it.

Ray-free: `lungsweep results` needs Tune's state, but the ensemble step, the report and
export only read what is here, so they import this module and never Ray.

    RUN_DIR/lungsweep_sweep.json   the sweep config as run (SweepConfig, JSON) and its sweep_id
    RUN_DIR/results.parquet        one row per trial, ranked (and results.csv)
    RUN_DIR/best_config.yaml       a `lungsweep train --config` file for the winner
    RUN_DIR/sweep_count.json       the trials asked for against those that gave a model (SweepCount)
    RUN_DIR/trial_<id>/            one Tune trial: progress.csv, checkpoint_NNNNNN/, logs

RUN_DIR is a local folder or a URI (s3://, gs://, file://, with `storage:` in sweep.yaml):
the record and the results tables are read and written through pyarrow.fs (search.storage).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.data import default_cache_dir
from trainers.errors import ConfigError, LungsweepError
from trainers.records import read_record_file

from . import storage
from .config import SweepConfig, parse_sweep_config, ranking_metric
from .space import ParamSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BEST_CONFIG", "PROGRESS_CSV", "RESULTS_CSV", "RESULTS_PARQUET", "SWEEP_FILE", "SWEEP_ID", "USABLE_STATUSES",
    "is_sweep", "new_sweep_id", "read_record", "read_results", "read_sweep", "read_sweep_id", "study_name",
    "sweep_record", "trial_dir", "trial_dirname", "trial_id_of", "trial_status", "write_sweep", "local_sweep",
    "trial_checkpoint",
    "sweep_location", "check_same_sweep", "sweep_config", "SweepFolder", "read_sweep_folder",
    "SWEEP_COUNT", "SweepCount", "count_trials", "write_sweep_count", "read_sweep_count",
]

SWEEP_FILE = "lungsweep_sweep.json"
SWEEP_ID = "sweep_id"  # SWEEP_FILE's key for the id of the sweep (not a SweepConfig field)
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
BEST_CONFIG = "best_config.yaml"
SWEEP_COUNT = "sweep_count.json"
PROGRESS_CSV = "progress.csv"  # Tune's log of a trial's reported metrics, in its trial folder
MIRROR_ORIGIN = ".lungsweep_origin"  # in a local mirror of a sweep at a URI: that URI
CHECKPOINT_PREFIX = "checkpoint_"  # Tune's name for a trial's checkpoint folders
# A finished trial's statuses; ASHA-stopped ("stopped") trials still have a best checkpoint.
USABLE_STATUSES = ("completed", "early-stopped", "stopped")


def trial_dirname(trial_id: str) -> str:
    """The folder Tune writes a trial into (launch names it; readers find it)."""
    return f"trial_{trial_id}"


def trial_id_of(folder: str | Path) -> str:
    """The trial id in a trial's folder name (trial_dirname's inverse)."""
    return Path(folder).name.removeprefix("trial_")


def trial_dir(run_dir: str | Path, trial_id: str) -> Path:
    return Path(run_dir) / trial_dirname(trial_id)


def is_sweep(path: str | Path) -> bool:
    """Whether `path`, a folder or a URI (s3://, gs://, file://), holds a sweep.

    A URI is read only as a launch's RUN_DIR: one that holds no sweep, or that this machine
    cannot read, gets a named error rather than False (every reader would give that error).
    """
    try:
        found = storage.exists(storage.join(path, SWEEP_FILE)) or storage.exists(storage.join(path, RESULTS_PARQUET))
    except (OSError, ValueError) as e:  # pyarrow: unknown scheme, no credentials, unreachable bucket
        if not storage.is_uri(path):
            raise
        raise LungsweepError(f"cannot read the sweep at {path} ({e}); check the URI and this machine's "
                             "credentials for it") from e
    if not found and storage.is_uri(path):
        raise LungsweepError(f"{path} holds no sweep ({SWEEP_FILE} or {RESULTS_PARQUET}); give the URI of a "
                             "launch's RUN_DIR (storage: URI in sweep.yaml, then the --out folder's name)")
    return found


def local_sweep(location: str | Path) -> Path:
    """A local folder to read the sweep at `location` from: the folder itself, or for a URI
    (s3://, gs://, file://) a mirror under the lungsweep cache.

    The mirror holds every file of the sweep but its checkpoint folders, which
    `trial_checkpoint` fetches on demand: an ensemble needs a few trials' models, not all.
    It is refreshed on every call, so a sweep still running is read as it is now.
    """
    if not storage.is_uri(location):
        return Path(location)
    uri = str(location)
    is_sweep(uri)  # a URI without a sweep gets its named error before anything is mirrored
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    mirror = default_cache_dir() / "sweeps" / key / storage.basename(uri)
    storage.mirror_files(uri, mirror, skip=lambda relative: CHECKPOINT_PREFIX in relative.rsplit("/", 1)[0])
    storage.write_text(mirror / MIRROR_ORIGIN, uri)
    return mirror


def trial_checkpoint(run_dir: str | Path, trial_id: str, recorded: str) -> Path | None:
    """The trial's checkpoint folder that the results table records (`recorded`, where the trial wrote it).

    Looked for inside this sweep folder (also when the sweep was moved or copied); in a mirror
    (`local_sweep`), fetched once from the sweep's URI, since the recorded path is then the bucket's;
    else at the recorded path. None when none of them holds it.
    """
    name = Path(recorded).name
    local = trial_dir(run_dir, trial_id) / name
    if local.is_dir():
        return local
    origin = Path(run_dir) / MIRROR_ORIGIN
    if origin.is_file():
        uri = origin.read_text().strip()
        if storage.fetch_folder(storage.join(uri, trial_dirname(trial_id), name), local):
            return local
    return Path(recorded) if Path(recorded).is_dir() else None


def sweep_location(run_dir: str | Path) -> str:
    """Where the sweep read from `run_dir` lives: its URI for a mirror, else the absolute folder."""
    origin = Path(run_dir) / MIRROR_ORIGIN
    return origin.read_text().strip() if origin.is_file() else str(Path(run_dir).resolve())


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
    """The sweep id recorded at the first launch; None for a folder without a record, or a record without an id."""
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


def check_same_sweep(cfg: SweepConfig, run_dir: str | Path) -> None:
    """Before a resume: refuse a config that would make the sweep in `run_dir` another search; note a new budget."""
    try:
        before = read_record(run_dir)
    except LungsweepError:
        return  # a sweep whose record was never written: Tune's own state decides
    now = sweep_record(cfg)
    for key in ("train", "space", "metric", "mode", "asha"):
        if before.get(key) != now.get(key):
            raise LungsweepError(
                f"{run_dir} holds a sweep with another {key!r}; resume it with the same config, "
                "or launch into a new --out folder"
            )
    # TPE's samples follow the seed and its random start: a change would make one sweep two searches
    for key in ("seed", "startup_trials"):
        if key in before and before[key] != now[key]:
            raise ConfigError(
                f"{run_dir} was launched with {key} {before[key]!r}, this launch asks for {now[key]!r}; "
                f"resume with {key}: {before[key]!r}, or launch into a new --out folder"
            )
    # Tune restores its own trial budget: a new count cannot be applied, but it harms nothing
    if "num_samples" in before and before["num_samples"] != now["num_samples"]:
        print(f"note: {run_dir} was launched with num_samples {before['num_samples']}; the resumed sweep keeps "
              f"that budget (Tune restores it), not {now['num_samples']}. For more trials, launch a new --out "
              "folder (with first_trials: to start from the best configs)", flush=True)


def read_sweep(run_dir: str | Path) -> SweepConfig:
    """The SweepConfig a sweep ran with, rebuilt and validated from SWEEP_FILE."""
    return sweep_config(read_record(run_dir), run_dir)


def sweep_config(record: dict[str, Any], run_dir: str | Path) -> SweepConfig:
    """The SweepConfig of a sweep record already read from `run_dir` (read_record), validated."""
    raw = {k: v for k, v in record.items() if k not in ("space", SWEEP_ID)}
    space: dict[str, Any] = {}
    for spec in map(ParamSpec.from_record, record.get("space") or []):  # a hand-edited entry gets a named error
        entry: dict[str, Any] = {spec.kind: list(spec.values)}
        if spec.when:
            entry["when"] = {key: list(values) for key, values in spec.when}
        space[spec.name] = entry
    raw["space"] = space
    return parse_sweep_config(raw, source=str(storage.join(run_dir, SWEEP_FILE)))


@dataclasses.dataclass(frozen=True)
class SweepFolder:
    """What a reader of a finished sweep needs, read once: the ranked results and, where readable, the record.

    The ensemble step picks its members from it, and its report draws the sweep's history,
    importances and member ranks from the same read.
    """

    run_dir: Path  # a local folder: the sweep's own, or the mirror of a sweep at a URI (local_sweep)
    location: str  # where the sweep lives: the URI a mirror was made of, else the absolute folder (sweep_location)
    table: "pd.DataFrame"  # results.parquet, ranked
    record: dict[str, Any] | None  # SWEEP_FILE as written; None: see record_error
    record_error: str | None  # why there is no record: the missing or damaged file, and the command that writes it

    @functools.cached_property
    def config(self) -> SweepConfig | None:
        """The record rebuilt and validated, on first use; None when it is missing or does not validate."""
        if self.record is None:
            return None
        try:
            return sweep_config(self.record, self.run_dir)
        except LungsweepError:
            return None  # a hand-made or edited record: readers treat the sweep as single-split

    @property
    def cross_validated(self) -> bool:
        """A k-fold sweep, whose trials are bags (a record that does not validate reads as single-split)."""
        return self.config is not None and self.config.cross_validated

    @property
    def metric(self) -> str:
        """The column trials were ranked by, as the record says: val_auc, or oof_auc in a k-fold sweep."""
        assert self.record is not None, self.record_error
        return ranking_metric(self.record["metric"], self.record.get("cv_folds", 1))


def read_sweep_folder(location: str | Path) -> SweepFolder:
    """The sweep at `location` (a folder, or a URI read from a local mirror: local_sweep): where it lives,
    the results table (a named error without it) and the record, each read once."""
    run_dir = local_sweep(location)
    where, table = sweep_location(run_dir), read_results(run_dir)
    try:
        record = read_record(run_dir)
    except LungsweepError as e:
        return SweepFolder(run_dir, where, table, None, f"{e}.")
    return SweepFolder(run_dir, where, table, record, None)


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


@dataclasses.dataclass(frozen=True)
class SweepCount:
    """The trials a sweep was asked for against those that gave a model: a short sweep says so.

    A trial gives a model when it finished, or ASHA or the time budget stopped it with its
    checkpoint (USABLE_STATUSES). Trials the time budget left undrawn, or stopped before their
    first checkpoint, are expected, not missing.
    """

    asked: int  # num_samples
    trials: int  # trials Tune ran (rows of the results table)
    usable: int  # of them, those with a model
    errored: int  # failed after every retry
    budget_spent: bool  # time_budget_s ran out before every trial was drawn
    cut: int = 0  # stopped (by the time budget) before their first checkpoint: no model, nothing lost

    @property
    def undrawn(self) -> int:
        return max(self.asked - self.trials, 0)

    @property
    def complete(self) -> bool:
        return self.usable + self.cut == self.trials and (self.undrawn == 0 or self.budget_spent)

    def line(self) -> str:
        """One line for the terminal, the report and the manifest."""
        if self.complete:
            budget = []
            if self.cut:
                budget.append(f"stopped {self.cut} before its first model" if self.cut == 1
                              else f"stopped {self.cut} before their first model")
            if self.undrawn:
                budget.append(f"ran out before the other {self.undrawn} were drawn")
            said = f"; the time budget {' and '.join(budget)}" if budget else ""
            return f"sweep complete: {self.usable} of {self.asked} trials gave a model{said}"
        why = []
        if self.trials - self.usable - self.cut - self.errored:
            why.append(f"{self.trials - self.usable - self.cut - self.errored} unfinished")
        if self.errored:
            why.append(f"{self.errored} failed after every retry")
        if self.undrawn and not self.budget_spent:
            why.append(f"{self.undrawn} never ran")
        return (f"sweep incomplete: {self.usable} of {self.asked} trials ({', '.join(why)}); run the same command "
                "again to run the rest")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "complete": self.complete, "statement": self.line()}


def count_trials(table: "pd.DataFrame", asked: int, *, budget_spent: bool) -> SweepCount:
    """Counted from the results table; a usable status without a checkpoint is a trial stopped before its first."""
    statuses = list(table["status"]) if len(table) else []
    saved = list(table["checkpoint"].notna()) if "checkpoint" in table and len(table) else [True] * len(statuses)
    usable = sum(s in USABLE_STATUSES and k for s, k in zip(statuses, saved))
    cut = sum(s == "stopped" and not k for s, k in zip(statuses, saved))
    return SweepCount(asked=asked, trials=len(statuses), usable=usable, errored=statuses.count("error"),
                      budget_spent=budget_spent, cut=cut)


def write_sweep_count(run_dir: str | Path, count: SweepCount) -> None:
    storage.write_text(storage.join(run_dir, SWEEP_COUNT), json.dumps(dataclasses.asdict(count), indent=1) + "\n")


def read_sweep_count(run_dir: str | Path) -> SweepCount | None:
    """The count `lungsweep launch` wrote with the results table; None for a sweep from before it did."""
    data = storage.read_bytes(storage.join(run_dir, SWEEP_COUNT))
    if data is None:
        return None
    try:
        return SweepCount(**json.loads(data))
    except (ValueError, TypeError) as e:
        raise LungsweepError(f"{storage.join(run_dir, SWEEP_COUNT)} is damaged ({e}); run `lungsweep results "
                             f"{run_dir}` to write it again") from e
