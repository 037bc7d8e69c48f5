"""`lungsweep launch`: a Ray Tune sweep with Optuna TPE and ASHA, resumable after any crash."""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from trainers import ConfigError, LungsweepError, prepare_data
from trainers.audit.report import AUDIT_FILE, AUDIT_HTML, audit_config, format_audit, write_audit

from .config import SweepConfig
from .progress import SweepProgress
from .recovery import FailOrphanedProposals, RecoverCheckpoints
from .record import new_sweep_id, read_record, read_sweep_id, study_name, sweep_record, trial_dirname, write_sweep
from .results import results_table, save_results, format_table
from . import snapshot
from .space import suggest
from . import storage
from .storage import StorageError, not_shared
from .tracking import tracking_callbacks
from .trainable import train_trial

__all__ = ["launch", "StorageError", "ClusterError"]

log = logging.getLogger(__name__)


class ClusterError(LungsweepError):
    """The Ray cluster named by --address cannot be reached."""


def _check_reachable(address: str | None) -> None:
    """HOST:PORT and ray://HOST:PORT must accept a connection; Ray itself would retry for a minute or more."""
    if address is None or address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r} is not auto, HOST:PORT or ray://HOST:10001")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ClusterError(_unreachable(address, e)) from e


def _unreachable(address: str | None, e: Exception) -> str:
    return (f"cannot reach a Ray cluster at --address {address!r} ({e}); start it first (ray start --head, "
            "or ray up cluster.yaml), check the host and port, or leave --address out to run on this machine")


def launch(
    cfg: SweepConfig,
    out: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
) -> Any:
    """Run (or continue) the sweep in `out`; returns the results table (pandas)."""
    storage_path, name, run_dir = _storage(cfg, out)
    _study_storage(cfg.study_storage)  # a bad URL is named before any Ray process starts
    # Tune warns on every forced state snapshot; with a few checkpoints per trial that is noise
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's newer console output prints its own experiment box (and a TensorBoard path under
    # /tmp/ray) whatever verbose says; the older one honours verbose=0, leaving SweepProgress's line
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started_here = not ray.is_initialized()
    if started_here:
        # A local Ray starts with the CPUs and GPUs it finds, listening on loopback only;
        # "auto", HOST:PORT or ray://HOST:10001 joins a running cluster.
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _node_ip_address=_driver_ip(address))
        except ConnectionError as e:
            raise ClusterError(_unreachable(address, e)) from e
    try:
        _prepare_every_node(cfg, None if storage.is_uri(storage_path) else run_dir)
        if not storage.is_uri(storage_path):
            _audit_once(cfg, run_dir)
        trainable = _trainable(cfg, run_dir)
        experiment = str(storage.join(storage_path, name))  # a folder, or a cloud URI
        snapshot.install()  # Tune's snapshot upload, made atomic: a crash mid-upload must not tear it
        snapshot.expect_resumed(set())  # an earlier launch in this process may have left its expectation
        if tune.Tuner.can_restore(experiment):
            _check_same_sweep(cfg, run_dir)
            snapshot.expect_resumed(snapshot.check_before_resume(experiment))  # a torn snapshot is named here
            print(f"resuming the sweep in {experiment}: finished trials are kept", flush=True)
            tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True)
        else:
            if resume:
                log.warning("nothing to resume in %s: starting a new sweep", run_dir)
            tuner = _new_tuner(cfg, trainable, storage_path, name, run_dir)
        results = tuner.fit()
        _fail_if_every_trial_errored(results, run_dir)
        table = results_table(experiment, cfg)  # ResultGrid.experiment_path drops a URI's scheme and query
        save_results(table, run_dir, cfg)  # a folder, or beside Tune's state at the cloud URI
        print(format_table(table, cfg.reported_metric), flush=True)
        return table
    finally:
        if started_here:
            ray.shutdown()


def _fail_if_every_trial_errored(results: Any, run_dir: str | Path) -> None:
    errors = [r.error for r in results]
    if errors and all(e is not None for e in errors):
        raise LungsweepError(
            f"every trial of the sweep failed; the first: {errors[0]}. Each trial's log is in {run_dir}/trial_*/"
        )


def _driver_ip(address: str | None) -> str | None:
    """This machine's address as Ray should see it: loopback for a local Ray or a loopback cluster.

    Ray otherwise resolves 127.0.0.1 to the machine's network address; a cluster
    started on 127.0.0.N (tests, one-machine setups) must be joined from that address.
    """
    if address is None:
        return "127.0.0.1"
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


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
    searcher = OptunaSearch(
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
            reuse_actors=True,  # a new worker per trial re-imports torch and timm: seconds per trial
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
                       RecoverCheckpoints(), *_orphan_check(cfg, study_name(name, sweep_id)),
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


def _check_same_sweep(cfg: SweepConfig, run_dir: str | Path) -> None:
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


def _audit_once(cfg: SweepConfig, run_dir: Path) -> None:
    """The data audit (groups, duplicates, shortcut), once per sweep: RUN_DIR/audit.json and audit.html."""
    if (run_dir / AUDIT_FILE).is_file():
        return
    report = audit_config(cfg.base_train_config())
    write_audit(report, run_dir / AUDIT_FILE, run_dir / AUDIT_HTML)
    print(format_audit(report), flush=True)


# --- data and storage, checked on every node before any trial starts ---------------


def _prepare_every_node(cfg: SweepConfig, run_dir: Path | None) -> None:
    """Decode the images once per node and size, and check that every node sees the data and RUN_DIR."""
    marker = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        marker = run_dir / f".storage-check-{uuid.uuid4().hex}"
        marker.write_text("lungsweep")
    base = cfg.base_train_config()
    configs = [dataclasses.replace(base, image_size=size).to_dict() for size in cfg.image_sizes()]
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    try:
        tasks = [
            _prepare_on_node.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False), num_cpus=0
            ).remote(configs, str(marker) if marker else None)
            for n in nodes
        ]
        for node, problem in zip(nodes, ray.get(tasks)):
            if problem is None:
                continue
            where = f"node {node.get('NodeManagerAddress')} ({node['NodeID'][:8]})"
            if problem.startswith("storage"):
                raise not_shared(run_dir, where)
            raise LungsweepError(f"on {where}: {problem}")
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


@ray.remote(max_retries=0)
def _prepare_on_node(configs: list[dict[str, Any]], marker: str | None) -> str | None:
    from trainers import TrainConfig

    if marker is not None and not os.path.exists(marker):
        return "storage"
    try:
        for values in configs:
            prepare_data(TrainConfig.from_dict(values))
    except LungsweepError as e:
        return str(e)
    return None
