"""`lungsweep run`: the whole job in one resumable command.

    OUT/sweep/            `lungsweep launch` (k-fold bags; an interrupted sweep resumes)
    OUT/ensemble/         `lungsweep ensemble`: fitted on the bags' out-of-fold predictions,
                          scored on the untouched holdout; report.html
    OUT/model/            `lungsweep export`: one verified ONNX graph + manifest.json
    OUT/predictions.csv   `lungsweep predict` on a few holdout images, to show the last step

Run it again after an interruption: the sweep continues from its finished folds, and
a stage whose output is already there is not redone (delete it to redo it), unless the
sweep has given more models since it was written. A sweep that ends short of the trials
it was asked for (trials that failed after every retry) still yields its ensemble, says
"sweep incomplete: N of M trials" in its last line, the report, metrics.json and the
manifest, and the job exits 1: running it again retries the rest.

Before any Ray process starts, the job checks what the sweep needs: group k-fold bags
(cv_folds >= 2), and data that discovers and splits into that many folds.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

# each face loads a name where it is first used: the config and the data are checked before torch or Ray loads
import ensemble
import search
from trainers.errors import ConfigError

__all__ = ["MainJob", "JobOutcome", "run_main_job"]

log = logging.getLogger("lungsweep")

PREDICT_EXAMPLES = 8
# OUT's layout: the stages' folders and the example predictions
SWEEP, ENSEMBLE, MODEL, PREDICTIONS_CSV = "sweep", "ensemble", "model", "predictions.csv"
_ENSEMBLE = ensemble.EnsembleSettings()  # the ensemble's defaults, said once there


@dataclass(frozen=True)
class MainJob:
    out: Path
    data: str | None = None  # a folder with one sub-folder per class, or
    manifest: str | None = None  # a CSV with path,label[,group]: exactly one of the two
    config: str | None = None  # a sweep.yaml, or a bundled sweep's name; None: the bundled default
    members: int | str = _ENSEMBLE.members  # a count, or "all"
    method: str = _ENSEMBLE.method
    calibration: str = _ENSEMBLE.calibration
    max_networks: int | None = None  # None: the sweep.yaml's max_networks, else no budget
    bag_models: str = _ENSEMBLE.bag_models
    threshold_rule: str = _ENSEMBLE.threshold_rule
    address: str | None = None


@dataclass(frozen=True)
class JobOutcome:
    summary: str  # for the terminal; its last line is the sweep's count of trials
    complete: bool  # every trial asked for gave a model (or the time budget drew no more)


def run_main_job(job: MainJob) -> JobOutcome:
    """Run or resume every stage; returns the summary for the terminal and whether the sweep was whole."""
    # every input is named before Ray starts; the config and the data before torch is even imported
    started = time.monotonic()
    cfg = _with_dataset(search.load_sweep_config(job.config), data=job.data, manifest=job.manifest)
    _check_k_fold(cfg, job.config)
    search.check_data(cfg)  # a missing folder, one class or too few groups: named here, not after Ray has started

    ensemble.check_member_count(job.members)  # a bad --members must not wait for the whole sweep to be named
    # the settings checked now too: a bad --max-networks is named before the sweep, not after it
    settings = ensemble.EnsembleSettings(method=job.method, calibration=job.calibration, members=job.members,
                                         max_networks=job.max_networks or cfg.max_networks,
                                         bag_models=job.bag_models, threshold_rule=job.threshold_rule)

    sweep, ens, model, predictions = (job.out / name for name in (SWEEP, ENSEMBLE, MODEL, PREDICTIONS_CSV))
    log.info("[1/4] sweep: %d trials x %d folds -> %s", cfg.num_samples, cfg.cv_folds, sweep)
    count = search.launch(cfg, sweep, address=job.address).attrs["count"]

    def models_when_written(provenance: dict) -> int | None:  # None: written before the job counted trials
        return (provenance.get("sweep_count") or {}).get("usable")

    stale = ensemble.is_ensemble_folder(ens) and models_when_written(
        ensemble.read_ensemble_json(ens)["provenance"]) not in (None, count.usable)
    if ensemble.is_ensemble_folder(ens) and not stale:
        log.info("[2/4] ensemble: already in %s (delete it to refit)", ens)
    else:
        if stale:
            log.info("[2/4] ensemble: the sweep has given %d model(s) since %s was fitted: fitting it again",
                     count.usable, ens)
        # a sweep of 2 trials: ask for 2, not warn about 5
        members = job.members if job.members == ensemble.ALL else min(job.members, cfg.num_samples)
        log.info("[2/4] ensemble: %s of %s trials -> %s", job.method,
                 "all the" if members == ensemble.ALL else f"the top {members}", ens)
        ensemble.build_ensemble(sweep, ens, dataclasses.replace(settings, members=members))
    if ensemble.is_model_folder(model) and models_when_written(
            ensemble.read_manifest(model)["provenance"]) in (None, count.usable):
        log.info("[3/4] export: already in %s (delete it to export again)", model)
    else:
        log.info("[3/4] export -> %s", model)
        ensemble.export_model(ens, model)

    log.info("[4/4] predict on %d holdout images -> %s", PREDICT_EXAMPLES, predictions)
    scored = ensemble.read_holdout_predictions(ens)
    base = cfg.base_train_config()
    root = Path(base.data) if base.data else Path(base.manifest).parent  # sample ids are relative to it
    # a slice of a DICOM series or volume is named FILE#k: predict reads the file with the model's slice policy
    examples = list(dict.fromkeys(str(root / str(i).split("#", 1)[0]) for i in scored["id"]))[:PREDICT_EXAMPLES]
    summary = ensemble.predict(ensemble.load_predictor(model), [Path(p) for p in examples],
                               out=predictions, progress=False)

    metrics = ensemble.read_metrics(ens)
    minutes = (time.monotonic() - started) / 60
    return JobOutcome("\n".join([
        ensemble.format_metrics(metrics),
        f"scored on: {metrics['fitted_on']['scored_on']}",
        f"predicted {summary.predicted} example image(s) -> {predictions}",
        f"model:  {model}  (lungsweep predict {model} --data FOLDER)",
        _cost(ensemble.read_manifest(model)),
        f"report: {ensemble.report_path(ens)}",
        f"done in {minutes:.1f} min",
        count.line(),  # last: a short sweep is the one thing a user must not miss
    ]), count.complete)


def _cost(manifest: dict) -> str:
    cost = manifest.get("cost") or {}  # a model exported before the manifest stated it has none
    if not cost:
        return "cost:   not stated (exported before lungsweep measured it)"
    return f"cost:   {cost['networks']} network(s) an image, {cost['ms_per_image']:.1f} ms an image here"


def _with_dataset(cfg: search.SweepConfig, *, data: str | None, manifest: str | None) -> search.SweepConfig:
    """The sweep on the job's dataset: --data or --manifest replaces whichever train: names."""
    if (data is None) == (manifest is None):
        raise ConfigError("give the dataset once: either --data DIR (one sub-folder per class) or --manifest CSV "
                          "(path,label[,group])")
    train = {k: v for k, v in cfg.train.items() if k not in ("data", "manifest")}
    # as the sweep config resolves its own paths: trials run in their own folders, on any node
    key, path = ("data", data) if data is not None else ("manifest", manifest)
    return dataclasses.replace(cfg, train={**train, key: str(Path(str(path)).expanduser().resolve())})


def _check_k_fold(cfg: search.SweepConfig, config: str | None) -> None:
    """The ensemble is fitted on the bags' out-of-fold predictions: a single-split sweep has none."""
    if not cfg.cross_validated:
        raise ConfigError(
            f"{config or 'the bundled default sweep'}: cv_folds is {cfg.cv_folds}, but the main job fits its "
            "ensemble on the out-of-fold predictions of group k-fold bags, so it needs cv_folds >= 2 (e.g. "
            "cv_folds: 3); or run a single-split sweep with `lungsweep launch` and combine it with "
            "`lungsweep ensemble`"
        )
