"""A resumed trial restarts from the newest checkpoint that exists, not a deleted one.

Tune deletes a trial's surplus checkpoints (`keep_checkpoints`) the moment a new one
is registered, but writes its experiment snapshot later (every few seconds, or every
num_to_keep checkpoints). A driver killed in between leaves a snapshot whose "latest
checkpoint" is gone, and the restored trial fails twice with "Could not recover from
checkpoint as it does not exist on storage anymore".

`RecoverCheckpoints` runs before the first trial of a resumed sweep starts: for each
unfinished trial with a recorded checkpoint that is missing (the latest, which Tune
would restore from, or an older one, which Tune would fail to delete) it rebuilds the trial's checkpoint
list from its result.json (every reported result names its checkpoint folder, and a
result is only reported once its checkpoint was copied whole) and the folders that
still exist, so the trial continues from the newest complete one (or starts over if none
is left). The snapshot's own checkpoints are never changed when they exist.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import pyarrow.fs
from ray.tune import Callback

__all__ = ["RecoverCheckpoints", "FailOrphanedProposals", "reported_checkpoints"]

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"  # Tune's per-trial log of every reported result, one JSON object a line
CHECKPOINT_KEY = "checkpoint_dir_name"  # the checkpoint folder a result was reported with


def reported_checkpoints(fs: pyarrow.fs.FileSystem, trial_path: str) -> list[tuple[str, dict[str, Any]]]:
    """(checkpoint folder name, its reported metrics) in report order, for folders that still exist.

    A torn last line (the driver killed mid-write) is skipped: its checkpoint may be whole,
    but its metrics are not known.
    """
    try:
        with fs.open_input_stream(f"{trial_path}/{RESULT_FILE}") as f:
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except (FileNotFoundError, OSError):
        return []
    found: dict[str, dict[str, Any]] = {}
    for line in lines:
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        name = result.get(CHECKPOINT_KEY) if isinstance(result, dict) else None
        if name:
            found[name] = result  # a restored trial may report the same folder again: the last wins
    names = sorted(found)  # checkpoint_NNNNNN: the name orders them
    infos = fs.get_file_info([f"{trial_path}/{n}" for n in names]) if names else []
    return [(n, found[n]) for n, info in zip(names, infos) if info.type == pyarrow.fs.FileType.Directory]


class RecoverCheckpoints(Callback):
    """Before a resumed sweep's first step: point trials whose recorded checkpoint is gone at what exists."""

    def __init__(self) -> None:
        self._checked = False

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._checked:
            return
        self._checked = True  # trials created after this never had a snapshot
        for trial in trials:
            if trial.status != "TERMINATED":
                try:
                    _recover(trial)
                except Exception as e:  # it reads Ray's private bookkeeping: a Ray upgrade must not stop a resume
                    log.warning("trial %s: could not check its checkpoints (%s: %s); Tune resumes it as recorded",
                                trial.trial_id, type(e).__name__, e)

    def get_state(self) -> dict | None:
        return None  # checked afresh in every driver process: a restore always starts unchecked


def _recover(trial: Any) -> None:
    from ray.train import Checkpoint
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult

    old = trial.run_metadata.checkpoint_manager
    tracked = [r.checkpoint for r in [*old.best_checkpoint_results, old.latest_checkpoint_result] if r is not None]
    fs = trial.storage.storage_filesystem
    infos = fs.get_file_info([c.path for c in tracked]) if tracked else []
    gone = [c.path.rsplit("/", 1)[-1] for c, info in zip(tracked, infos) if info.type != pyarrow.fs.FileType.Directory]
    if not gone:
        return
    # Tune would fail to restore from a deleted latest, and fail again deleting a deleted one later
    trial_path = trial.storage.trial_fs_path
    existing = reported_checkpoints(fs, trial_path)
    manager = _CheckpointManager(old.checkpoint_config)
    for name, metrics in existing:  # in order, so Tune keeps the best N and the latest as it would have
        manager.register_checkpoint(
            _TrainingResult(checkpoint=Checkpoint(f"{trial_path}/{name}", filesystem=fs), metrics=metrics)
        )
    trial.run_metadata.checkpoint_manager = manager
    gone_text = ", ".join(sorted(set(gone)))
    if existing:
        # the next checkpoint goes after the newest folder, never over one that exists
        trial.storage.current_checkpoint_index = int(existing[-1][0].rsplit("_", 1)[-1]) + 1
        log.warning("trial %s: its recorded checkpoint(s) %s were deleted before the crash; resuming from %s",
                    trial.trial_id, gone_text, existing[-1][0])
    else:
        log.warning("trial %s: no checkpoint of it is left (%s were deleted before the crash); it starts over",
                    trial.trial_id, gone_text)
    trial.invalidate_json_state()


class FailOrphanedProposals(Callback):
    """Before a resumed sweep's first step: end the study's proposals that no trial carries.

    With `study_storage`, every proposal is written to the database when it is asked, but
    Tune records the trial for it only at its next snapshot. A driver killed in between
    leaves a proposal RUNNING in the study forever (the resumed searcher, restored from the
    snapshot, asks afresh): optuna-dashboard would show it running and it would never be
    told. Such proposals are marked FAIL with a note. An in-memory study is saved with the
    snapshot, so it has none.
    """

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.storage_url, self.study_name = storage_url, study_name
        self._checked = False

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._checked:
            return
        self._checked = True
        # callbacks run before this step asks the searcher: every RUNNING proposal now was asked by an
        # earlier driver (also one killed before Tune's first snapshot, whose study a new sweep reuses)
        try:
            failed = _fail_orphans(self.storage_url, self.study_name, [t.config for t in trials])
        except Exception as e:  # a database hiccup must not stop a resume; the orphans only mislead a dashboard
            log.warning("could not check study %s for proposals lost in the crash (%s: %s)",
                        self.study_name, type(e).__name__, e)
            return
        if failed:
            log.warning("study %s: proposal(s) %s were asked before the crash but never became trials; "
                        "marked FAIL", self.study_name, ", ".join(map(str, failed)))

    def get_state(self) -> dict | None:
        return None  # checked afresh in every driver process


def _fail_orphans(storage_url: str, study_name: str, configs: list[dict[str, Any]]) -> list[int]:
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage_url)
    failed = []
    for proposal in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # a proposal killed before its parameters were drawn has none: it matches no trial
        carried = proposal.params and any(all(c.get(k) == v for k, v in proposal.params.items()) for c in configs)
        if not carried:
            study.tell(proposal.number, state=optuna.trial.TrialState.FAIL)
            failed.append(proposal.number)
    return failed
