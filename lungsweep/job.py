"""`lungsweep run`: the whole job in one resumable command.

    OUT/sweep/            `lungsweep launch` (k-fold bags; an interrupted sweep resumes)
    OUT/ensemble/         `lungsweep ensemble`: fitted on the bags' out-of-fold predictions,
                          scored on the untouched holdout; report.html
    OUT/model/            `lungsweep export`: one verified ONNX graph + manifest.json
    OUT/predictions.csv   `lungsweep predict` on a few holdout images, to show the last step

Run it again after an interruption: the sweep continues from its finished folds, and
a stage whose output is already there is not redone (delete it to redo it).

Before any Ray process starts, the job checks what the sweep needs: group k-fold bags
(cv_folds >= 2), and data that discovers and splits into that many folds.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ensemble import EnsembleSettings
from trainers.errors import ConfigError

if TYPE_CHECKING:
    from search import SweepConfig

__all__ = ["MainJob", "run_main_job"]

log = logging.getLogger("lungsweep")

PREDICT_EXAMPLES = 8
_ENSEMBLE = EnsembleSettings()  # the ensemble's defaults, said once there


@dataclass(frozen=True)
class MainJob:
    out: Path
    data: str | None = None  # a folder with one sub-folder per class, or
    manifest: str | None = None  # a CSV with path,label[,group]: exactly one of the two
    config: str | None = None  # a sweep.yaml, or a bundled sweep's name; None: the bundled default
    members: int | str = _ENSEMBLE.members  # a count, or "all"
    method: str = _ENSEMBLE.method
    calibration: str = _ENSEMBLE.calibration
    address: str | None = None


def run_main_job(job: MainJob) -> str:
    """Run or resume every stage; returns a summary for the terminal."""
    from search import check_data, load_sweep_config

    # every input is named before Ray starts; the config and the data before torch is even imported
    started = time.monotonic()
    cfg = _with_dataset(load_sweep_config(job.config), data=job.data, manifest=job.manifest)
    _check_k_fold(cfg, job.config)
    check_data(cfg)  # a missing folder, one class or too few groups: named here, not after Ray has started

    from ensemble import (
        ALL, build_ensemble, check_member_count, export_model, format_metrics, is_ensemble_folder, is_model_folder,
        load_predictor, predict, read_holdout_predictions, read_metrics, report_path,
    )

    check_member_count(job.members)  # a bad --members must not wait for the whole sweep to be named

    from search import launch

    sweep, ens, model = job.out / "sweep", job.out / "ensemble", job.out / "model"
    log.info("[1/4] sweep: %d trials x %d folds -> %s", cfg.num_samples, cfg.cv_folds, sweep)
    launch(cfg, sweep, address=job.address)

    if is_ensemble_folder(ens):
        log.info("[2/4] ensemble: already in %s (delete it to refit)", ens)
    else:
        # a sweep of 2 trials: ask for 2, not warn about 5
        members = job.members if job.members == ALL else min(job.members, cfg.num_samples)
        log.info("[2/4] ensemble: %s of %s trials -> %s", job.method,
                 "all the" if members == ALL else f"the top {members}", ens)
        build_ensemble(sweep, ens, EnsembleSettings(method=job.method, calibration=job.calibration,
                                                    members=members))
    if is_model_folder(model):
        log.info("[3/4] export: already in %s (delete it to export again)", model)
    else:
        log.info("[3/4] export -> %s", model)
        export_model(ens, model)

    log.info("[4/4] predict on %d holdout images -> %s", PREDICT_EXAMPLES, job.out / "predictions.csv")
    scored = read_holdout_predictions(ens)
    base = cfg.base_train_config()
    root = Path(base.data) if base.data else Path(base.manifest).parent  # sample ids are relative to it
    # a slice of a DICOM series or volume is named FILE#k: predict reads the file with the model's slice policy
    examples = list(dict.fromkeys(str(root / str(i).split("#", 1)[0]) for i in scored["id"]))[:PREDICT_EXAMPLES]
    summary = predict(load_predictor(model), [Path(p) for p in examples], out=job.out / "predictions.csv",
                      progress=False)

    metrics = read_metrics(ens)
    minutes = (time.monotonic() - started) / 60
    return "\n".join([
        format_metrics(metrics),
        f"scored on: {metrics['fitted_on']['scored_on']}",
        f"predicted {summary.predicted} example image(s) -> {job.out / 'predictions.csv'}",
        f"model:  {model}  (lungsweep predict {model} --data FOLDER)",
        f"report: {report_path(ens)}",
        f"done in {minutes:.1f} min",
    ])


def _with_dataset(cfg: SweepConfig, *, data: str | None, manifest: str | None) -> SweepConfig:
    """The sweep on the job's dataset: --data or --manifest replaces whichever train: names."""
    if (data is None) == (manifest is None):
        raise ConfigError("give the dataset once: either --data DIR (one sub-folder per class) or --manifest CSV "
                          "(path,label[,group])")
    train = {k: v for k, v in cfg.train.items() if k not in ("data", "manifest")}
    # as the sweep config resolves its own paths: trials run in their own folders, on any node
    key, path = ("data", data) if data is not None else ("manifest", manifest)
    return dataclasses.replace(cfg, train={**train, key: str(Path(str(path)).expanduser().resolve())})


def _check_k_fold(cfg: SweepConfig, config: str | None) -> None:
    """The ensemble is fitted on the bags' out-of-fold predictions: a single-split sweep has none."""
    if not cfg.cross_validated:
        raise ConfigError(
            f"{config or 'the bundled default sweep'}: cv_folds is {cfg.cv_folds}, but the main job fits its "
            "ensemble on the out-of-fold predictions of group k-fold bags, so it needs cv_folds >= 2 (e.g. "
            "cv_folds: 3); or run a single-split sweep with `lungsweep launch` and combine it with "
            "`lungsweep ensemble`"
        )
