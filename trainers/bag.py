"""A bag: one config trained K times by group k-fold, and its out-of-fold predictions.

Picking among many configs by one small validation split selects noise. A bag scores
every image of the development pool (everything but the holdout) with the fold model
that never saw its patient; those out-of-fold predictions rank configs, and fit the
ensemble, on ~5x more images than one validation split. The bag's prediction on a new
image is the mean margin of its K fold models.

A bag folder holds
    bag.json     config, classes, preprocessing, split partition, folds done, pooled
                 out-of-fold metrics, out-of-fold predictions (one per development image,
                 with its fold) and holdout predictions (mean margin over the folds done)
    fold_<k>/    fold k's model: a checkpoint folder (model.safetensors + checkpoint.json),
                 its last epoch (a fold never chooses an epoch on its out-of-fold part)
    runs/fold_<k>/  the fold's training run (history, resumable state); not needed to predict
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .atomic import atomic_dir, atomic_write_text, recover_dir
from .checkpoint import META, package_versions, read_meta
from .config import TrainConfig
from .errors import CheckpointError, ConfigError
from .inference import sigmoid
from .loop import train
from .memory import release_memory
from .metrics import binary_metrics
from .data.prepare import PreparedData, prepare_data
from .records import read_record_file
from .run_folder import BEST, LAST, check_resumable

__all__ = [
    "BAG_JSON", "BagResult", "FoldReport", "copy_bag", "existing_bag", "fold_checkpoints", "fold_dirname", "is_bag",
    "oof_metrics", "read_bag", "train_bag", "with_folds",
]

log = logging.getLogger(__name__)

BAG_JSON = "bag.json"
BAG_FORMAT = "lungsweep-bag/1"
REQUIRED = ("format", "cv_folds", "folds_done", "config", "classes", "positive", "preprocessing",
            "data_fingerprint", "split", "oof", "holdout", "metrics")


def fold_dirname(k: int) -> str:
    return f"fold_{k}"


def is_bag(path: str | Path) -> bool:
    return (Path(path) / BAG_JSON).is_file()


@dataclass(frozen=True)
class FoldReport:
    fold: int  # the fold just finished (0-based)
    folds_done: int
    cv_folds: int
    metrics: dict[str, float]  # pooled out-of-fold metrics over the folds done (oof_auc, ...)
    bag_dir: Path  # the bag as it stands: bag.json and the finished folds


@dataclass(frozen=True)
class BagResult:
    bag_dir: Path
    folds_done: int
    metrics: dict[str, float]


def oof_metrics(oof: dict[str, dict[str, Any]]) -> dict[str, float]:
    """oof_auc, oof_loss, oof_accuracy, ... of the pooled out-of-fold predictions."""
    if not oof:
        return {}
    y = np.array([row["label"] for row in oof.values()])
    p = sigmoid(np.array([row["logit"] for row in oof.values()]))
    values = binary_metrics(y, p)
    return {"oof_loss" if k == "nll" else f"oof_{k}": v for k, v in values.items()}


def read_bag(path: str | Path) -> dict[str, Any]:
    path = Path(path) / BAG_JSON
    bag = read_record_file(path, required=REQUIRED, error=CheckpointError,
                           missing=f"{path.parent} is not a bag folder: {BAG_JSON} is missing",
                           remedy="retrain or restore it")
    if bag["format"] != BAG_FORMAT:
        raise CheckpointError(f"{path} has format {bag['format']!r}; this lungsweep reads {BAG_FORMAT!r}")
    return bag


def train_bag(
    cfg: TrainConfig,
    bag_dir: str | Path,
    *,
    work_dir: str | Path | None = None,
    on_fold: Callable[[FoldReport], bool | None] | None = None,
    resume: bool = False,
    data: PreparedData | None = None,
) -> BagResult:
    """Train fold 0..K-1 of `cfg` (cv_folds = K > 1) into `bag_dir`, skipping folds already there.

    After each fold, bag.json is rewritten (atomically) with the pooled out-of-fold
    metrics so far, then `on_fold` is called; returning True stops after that fold.
    resume: continue the bag in `bag_dir` (finished folds are kept; an interrupted
    fold continues from its last epoch when its training run is in `work_dir`).
    The data audit is the calling command's job (trainers.audit.audit_into).
    """
    if cfg.cv_folds < 2:
        raise ConfigError(f"a bag needs cv_folds >= 2, got {cfg.cv_folds}")
    cfg = cfg.replace(fold=None)
    bag_dir = Path(bag_dir)
    work_dir = Path(work_dir) if work_dir is not None else bag_dir / "runs"
    bag = existing_bag(bag_dir, resume=resume)
    data = data or prepare_data(cfg)
    if bag is None:
        bag = _new_bag(cfg, data)
    else:
        check_resumable(bag, cfg, data.fingerprint, bag_dir)
    stopped = False
    for k in range(cfg.cv_folds):
        if k in bag["folds_done"]:
            continue
        run = work_dir / fold_dirname(k)
        log.info("fold %d/%d of %s", k + 1, cfg.cv_folds, bag_dir)
        train(cfg.replace(fold=k), run, data=data.for_fold(k), resume=resume or (run / LAST).exists())
        best = recover_dir(run / BEST)
        meta = read_meta(best)
        bag["preprocessing"] = bag["preprocessing"] or meta["preprocessing"]
        bag["pretrained"] = meta.get("pretrained")
        with atomic_dir(bag_dir / fold_dirname(k)) as tmp:
            shutil.copytree(best, tmp, dirs_exist_ok=True)
        for sample_id, row in meta["predictions"]["val"].items():
            bag["oof"][sample_id] = {**row, "fold": k}
        bag["fold_holdout"][str(k)] = {i: row["logit"] for i, row in meta["predictions"]["holdout"].items()}
        bag["folds_done"] = sorted({*bag["folds_done"], k})
        _pool_holdout(bag, meta["predictions"]["holdout"])
        bag["metrics"] = {**oof_metrics(bag["oof"]), "folds_done": len(bag["folds_done"])}
        atomic_write_text(bag_dir / BAG_JSON, json.dumps(bag, indent=1))
        log.info("fold %d/%d done: pooled out-of-fold auc %.4f over %d images", k + 1, cfg.cv_folds,
                 bag["metrics"].get("oof_auc", float("nan")), len(bag["oof"]))
        release_memory()  # the fold's model and optimizer: the next fold starts from what the data holds
        report = FoldReport(fold=k, folds_done=len(bag["folds_done"]), cv_folds=cfg.cv_folds,
                            metrics=bag["metrics"], bag_dir=bag_dir)
        if on_fold is not None and on_fold(report):
            stopped = True
            break
    if not stopped:
        log.info("bag done: %d folds, out-of-fold auc %.4f -> %s", cfg.cv_folds,
                 bag["metrics"].get("oof_auc", float("nan")), bag_dir)
    return BagResult(bag_dir=bag_dir, folds_done=len(bag["folds_done"]), metrics=bag["metrics"])


def _new_bag(cfg: TrainConfig, data: PreparedData) -> dict[str, Any]:
    ds = data.dataset
    return {
        "format": BAG_FORMAT,
        "cv_folds": cfg.cv_folds,
        "folds_done": [],
        "config": cfg.to_dict(),
        "model": cfg.model,
        "classes": list(ds.classes),
        "positive": ds.positive,
        "preprocessing": None,  # the first fold's (every fold shares it)
        "data_fingerprint": data.fingerprint,
        "split": {k: v for k, v in data.split_summary(cfg).items() if k not in ("sha256", "fold", "counts")},
        "versions": package_versions(),
        "oof": {},
        "holdout": {},
        "fold_holdout": {},
        "metrics": {},
    }


def _pool_holdout(bag: dict[str, Any], latest: dict[str, dict[str, Any]]) -> None:
    """The bag's holdout prediction: the mean margin of the folds done."""
    folds = bag["fold_holdout"]
    bag["holdout"] = {
        sample_id: {"label": row["label"], "group": row["group"],
                    "logit": round(float(np.mean([folds[k][sample_id] for k in folds])), 6)}
        for sample_id, row in latest.items()
    }


def existing_bag(bag_dir: str | Path, *, resume: bool) -> dict[str, Any] | None:
    """bag.json of the bag in `bag_dir` when resuming, None for a new bag; a bag is never trained over without --resume."""
    if not is_bag(bag_dir):
        return None
    if not resume:
        raise CheckpointError(f"{bag_dir} already holds a bag; pass --resume to continue it, or choose another --out")
    return read_bag(bag_dir)


def fold_checkpoints(bag_dir: str | Path, bag: dict[str, Any] | None = None) -> list[Path]:
    """The checkpoint folders of the folds done, in fold order (`bag`: its bag.json, where already read)."""
    bag_dir = Path(bag_dir)
    bag = bag or read_bag(bag_dir)
    folders = [bag_dir / fold_dirname(k) for k in bag["folds_done"]]
    for folder in folders:
        if not (folder / META).is_file():
            raise CheckpointError(f"{folder} is missing or damaged: the bag lists its fold as done")
    return folders


def copy_bag(bag_dir: str | Path, dest: str | Path, bag: dict[str, Any] | None = None) -> None:
    """What predicting needs of a bag, without its training runs: bag.json and the fold models done.

    bag: the record to write as bag.json (e.g. `with_folds`'), whose fold models are copied; None: the bag as it is.
    """
    bag_dir, dest = Path(bag_dir), Path(dest)
    dest.mkdir(parents=True)
    if bag is None:
        shutil.copy2(bag_dir / BAG_JSON, dest / BAG_JSON)
    else:
        atomic_write_text(dest / BAG_JSON, json.dumps(bag, indent=1))
    for folder in fold_checkpoints(bag_dir, bag):
        shutil.copytree(folder, dest / folder.name)


def with_folds(bag: dict[str, Any], folds: list[int]) -> dict[str, Any]:
    """The bag as it ships only these fold models: its folds and holdout (their mean margin) narrowed to them.

    The out-of-fold predictions and their metrics, which ranked the bag and fit the ensemble, stay whole:
    each is one fold model's margin on a patient it never saw, which is what one shipped fold model gives.
    """
    missing = sorted(set(folds) - set(bag["folds_done"]))
    if missing:
        raise CheckpointError(f"the bag has no fold {missing[0]}; its folds done: {bag['folds_done']}")
    kept = {**bag, "folds_done": sorted(folds), "trained_folds": bag.get("trained_folds", bag["folds_done"]),
            "fold_holdout": {str(k): bag["fold_holdout"][str(k)] for k in folds}}
    _pool_holdout(kept, bag["holdout"])
    return kept
