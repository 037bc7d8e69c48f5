"""`lungsweep launch`: a Ray Tune sweep with Optuna TPE and ASHA, resumable after any crash."""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from trainers import ConfigError, LungsweepError
from trainers.audit import AUDIT_FILE, audit_into, format_audit
from trainers.data import find_data

from . import budget, cluster, memory_kills
from .config import SweepConfig
from .progress import SweepProgress
from .recovery import FailOrphanedProposals, RecoverCheckpoints
from .record import (check_same_sweep, new_sweep_id, read_sweep_id, study_name, trial_dirname, trial_id_of,
                     write_sweep)
from .searcher import OptunaSearchWithPruning
from .results import results_table, save_results, format_table
from . import snapshot
from .space import suggest
from . import storage
from .storage import StorageError
from .tracking import tracking_callbacks
from .trainable import train_trial

__all__ = ["launch", "StorageError"]

log = logging.getLogger(__name__)


def launch(
    cfg: SweepConfig,
    out: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
) -> Any:
    """Run (or continue) the sweep in `out`; returns the results table (pandas), its SweepCount in attrs["count"].

    A sweep that Tune stopped with an error still writes its results table and count from what is
    on disk, and returns them when some trial gave a model; it raises only when none did.
    """
    storage_path, name, run_dir = _storage(cfg, out)
    _study_storage(cfg.study_storage)  # a bad URL is named before any Ray process starts
    # Tune warns on every forced state snapshot; with a few checkpoints per trial that is noise
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's newer console output prints its own experiment box (and a TensorBoard path under
    # /tmp/ray) whatever verbose says; the older one honours verbose=0, leaving SweepProgress's line
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with cluster.connected(address):  # a local Ray, or the cluster at --address; shut down after if started here
        cluster.prepare_every_node(cfg, None if storage.is_uri(storage_path) else run_dir)
        if not storage.is_uri(storage_path):
            _audit_once(cfg, run_dir)
        trainable = _trainable(cfg, run_dir)
        experiment = str(storage.join(storage_path, name))  # a folder, or a cloud URI
        snapshot.install()  # Tune's snapshot upload, made atomic: a crash mid-upload must not tear it
        memory_kills.install()  # a worker Ray's memory monitor kills is one trial's failure, not the sweep's
        snapshot.expect_resumed(set())  # an earlier launch in this process may have left its expectation
        # tuner.pkl alone is no run state (a kill in the first seconds): Tune would "restore" it as a 1-sample sweep
        started = tune.Tuner.can_restore(experiment)
        if started and snapshot.settle_before_resume(experiment):
            check_same_sweep(cfg, run_dir)
            snapshot.expect_resumed(snapshot.check_before_resume(experiment))  # a torn snapshot is named here
            print(f"resuming the sweep in {experiment}: finished trials are kept", flush=True)
            tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True)
            _run_with_current_settings(tuner, cfg)
        else:
            if started:
                print(f"the sweep in {experiment} was stopped before Tune saved its first state: starting it "
                      "again from its first trial (nothing had finished)", flush=True)
                snapshot.discard_unsaved(experiment)
            elif resume:
                log.warning("nothing to resume in %s: starting a new sweep", run_dir)
            tuner = _new_tuner(cfg, trainable, storage_path, name, run_dir)
        budget.forget()
        try:
            results, stopped_by = tuner.fit(), None
        except Exception as e:  # Tune ends the whole sweep on what it cannot pin on one trial
            _raise_our_own(e)  # a refused resume (search.snapshot) is named as it is, and nothing is written
            results, stopped_by = None, e
            log.error("the sweep stopped with an error: %s", _cause(e))
        if results is not None:
            _fail_if_every_trial_errored(results, run_dir)
        # what is on disk, after an error too: a folder, or beside Tune's state at the cloud URI
        table = results_table(experiment, cfg)  # ResultGrid.experiment_path drops a URI's scheme and query
        if results is not None:
            table = _with_final_errors(table, results)
        count = save_results(table, run_dir, cfg, budget_spent=budget.budget_spent(cfg.time_budget_s))
        print(format_table(table, cfg.reported_metric), flush=True)
        print(count.line(), flush=True)
        if stopped_by is not None and not count.usable:
            raise LungsweepError(f"the sweep stopped with an error before any trial gave a model: "
                                 f"{_cause(stopped_by)}. Run the same command again to resume it; each "
                                 f"trial's log is in {run_dir}/trial_*/") from stopped_by
        table.attrs["count"] = count  # a short sweep still yields what finished: its count says what is missing
        return table


def _fail_if_every_trial_errored(results: Any, run_dir: str | Path) -> None:
    errors = [r.error for r in results]
    if errors and all(e is not None for e in errors):
        raise LungsweepError(
            f"every trial of the sweep failed; the first: {errors[0]}. Each trial's log is in {run_dir}/trial_*/"
        )


def _with_final_errors(table: Any, results: Any) -> Any:
    """Mark the trials that fit() ended in error: Tune's last snapshot can still list such a trial as RUNNING
    (a trial that exhausted max_failures is not re-cached for the snapshot), so a rerun resumes it."""
    errored = {trial_id_of(r.path) for r in results if r.error is not None and r.path}
    if errored and len(table):
        table = table.copy()
        table.loc[table["trial_id"].isin(errored), "status"] = "error"
    return table


def _raise_our_own(error: BaseException) -> None:
    """Re-raise the LungsweepError that ended fit(), however Tune wrapped it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, LungsweepError):
            raise error
        seen.add(id(error))
        error = error.__cause__ or error.__context__


def _cause(error: BaseException) -> str:
    """The innermost cause's last line: Tune wraps what ended the run, and Ray's messages end with it."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__


def _run_with_current_settings(tuner: tune.Tuner, cfg: SweepConfig) -> None:
    """A restored Tuner runs with the TuneConfig pickled when the sweep began; reuse_actors is this launch's.

    Ray has no public way to change it on restore: this sets the restored Tuner's own field, and warns if
    that moved. The other saved settings (num_samples, the searcher, the scheduler) define the sweep.
    """
    tune_config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)
    if tune_config is None or not hasattr(tune_config, "reuse_actors"):
        log.warning("cannot apply reuse_actors=%s to the restored sweep on this Ray: it keeps its first setting",
                    cfg.reuse_actors)
        return
    tune_config.reuse_actors = cfg.reuse_actors


def _storage(cfg: SweepConfig, out: str | Path) -> tuple[str, str, Any]:
    out = Path(out)
    if cfg.storage is None:
        location = str(out.resolve().parent)
    elif storage.is_uri(cfg.storage):
        location = cfg.storage
    else:
        location = str(Path(cfg.storage).resolve())
    # RUN_DIR: a local folder, or the experiment's URI (its record and results go there through pyarrow.fs)
    return location, out.name, storage.join(location, out.name)


def _trainable(cfg: SweepConfig, run_dir: str | Path) -> Any:
    base = cfg.base_train_config().to_dict()
    fn = tune.with_parameters(train_trial, base=base, run_dir=str(run_dir),
                              fail_at_epoch=cfg.fail_first_attempt_at_epoch)
    resources = {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}
    return tune.with_resources(fn, resources)


def _new_tuner(cfg: SweepConfig, trainable: Any, storage_path: str, name: str, run_dir: str | Path) -> tune.Tuner:
    # a record without Tune state (a crash before Tune's first snapshot) keeps its id, so its study too
    sweep_id = read_sweep_id(run_dir) or new_sweep_id()
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.startup_trials)
    searcher = OptunaSearchWithPruning(  # a trial ASHA or the budget cut short is told to Optuna as pruned
        cv_folds=cfg.cv_folds,
        space=functools.partial(_define_by_run, specs=cfg.space, fixed=cfg.base_train_config().to_dict()),
        metric=cfg.searcher_metric,
        mode=cfg.mode,
        sampler=sampler,
        study_name=study_name(name, sweep_id),  # never an older sweep's study that had the same folder name
        storage=_study_storage(cfg.study_storage),
        points_to_evaluate=[dict(t) for t in cfg.first_trials] or None,
    )
    # One report per epoch (single split) or per fold (k-fold): ASHA's rungs are in that unit.
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        metric=cfg.searcher_metric,
        mode=cfg.mode,
        max_t=cfg.max_t,
        grace_period=cfg.asha.grace_period,
        reduction_factor=cfg.asha.reduction_factor,
    )
    if not storage.is_uri(storage_path):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_sweep(run_dir, cfg, sweep_id)
    return tune.Tuner(
        trainable,
        # metric and mode live on the searcher and the scheduler: Tune's concurrency
        # limiter does not pass TuneConfig's on to a wrapped searcher
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=cfg.num_samples,
            max_concurrent_trials=cfg.max_concurrent,
            time_budget_s=cfg.time_budget_s,
            trial_dirname_creator=lambda trial: trial_dirname(trial.trial_id),
            reuse_actors=cfg.reuse_actors,  # False: a trial's memory goes back with its worker (search.config)
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            checkpoint_config=_checkpoint_config(cfg),
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            callbacks=[SweepProgress(metric=cfg.reported_metric, mode=cfg.mode, num_samples=cfg.num_samples,
                                     max_t=cfg.max_t, unit="fold" if cfg.cross_validated else "epoch"),
                       *tracking_callbacks(cfg, run_dir, experiment=name),
                       # a crash can outrun Tune's snapshot: see search/recovery.py
                       RecoverCheckpoints(), *_orphan_check(cfg, study_name(name, sweep_id)), budget.BudgetClock(),
                       snapshot.RefuseRestart()],  # Tune starts over when its restore fails: see search/snapshot.py
            verbose=0,
            log_to_file=True,
        ),
    )


def _checkpoint_config(cfg: SweepConfig) -> tune.CheckpointConfig:
    if cfg.cross_validated:
        # each report's checkpoint is the bag so far: the one with the most folds is the trial's
        return tune.CheckpointConfig(num_to_keep=cfg.keep_checkpoints, checkpoint_score_attribute="folds_done",
                                     checkpoint_score_order="max")
    return tune.CheckpointConfig(num_to_keep=cfg.keep_checkpoints, checkpoint_score_attribute=cfg.metric,
                                 checkpoint_score_order=cfg.mode)


def _define_by_run(trial: optuna.Trial, *, specs: tuple, fixed: dict[str, Any]) -> None:
    suggest(trial, specs, fixed)  # OptunaSearch records every suggest_* call as the trial's config


def _orphan_check(cfg: SweepConfig, name: str) -> list[FailOrphanedProposals]:
    return [] if cfg.study_storage is None else [FailOrphanedProposals(_study_url(cfg.study_storage), name)]


def _study_url(study_storage: str) -> str:
    return study_storage if "://" in study_storage else f"sqlite:///{Path(study_storage).resolve()}"


def _study_storage(study_storage: str | None) -> optuna.storages.BaseStorage | None:
    if study_storage is None:
        return None
    url = _study_url(study_storage)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as e:  # SQLAlchemy raises its own types: a bad URL, a missing driver, a refused connection
        raise ConfigError(
            f"study_storage {study_storage!r} cannot be opened ({type(e).__name__}: {e}); give a sqlite file "
            "path, or a URL such as sqlite:////abs/study.db or postgresql://user@host/db whose server is up "
            "and whose driver is installed"
        ) from e


def _audit_once(cfg: SweepConfig, run_dir: Path) -> None:
    """The data audit (groups, duplicates, shortcut), once per sweep: RUN_DIR/audit.json and audit.html.

    Every node has just decoded and hashed the data: finding it here reads the hashes from the cache.
    """
    if (run_dir / AUDIT_FILE).is_file():
        return
    base = cfg.base_train_config()
    report = audit_into(run_dir, base, find_data(base), html=True)
    if report is not None:
        print(format_audit(report), flush=True)
