"""The ensemble folder (ENS_DIR) on disk: its file names, how to tell one, how to write it and how to read it.

    ENS_DIR/ensemble.json             the fitted ensemble: members, combiner, calibrator and threshold as plain
                                      numbers, classes, preprocessing and provenance (loading needs ENSEMBLE_KEYS)
    ENS_DIR/metrics.json              every reported metric with its 95% group-bootstrap interval
    ENS_DIR/holdout_predictions.csv   the scored images: id, group, label, probability, threshold, final_probability
    ENS_DIR/report.html               the self-contained report (ensemble.report)
    ENS_DIR/members/<trial>/          each member: a checkpoint folder as it is, or a bag without its training runs

`lungsweep ensemble` writes it whole or not at all (`write_ensemble`); loading, export and `lungsweep run`
read it through the readers here, and `read_ensemble` is the one door for reading the whole folder.
This module knows nothing of fitting or of the report: it is handed plain records and a writer.
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from trainers.atomic import atomic_dir
from trainers.bag import copy_bag, is_bag
from trainers.records import read_record_file

from ..errors import EnsembleError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ENSEMBLE_JSON", "ENSEMBLE_KEYS", "MEMBERS_DIR", "METRICS_JSON", "PREDICTIONS_CSV", "REPORT_HTML",
    "EnsembleFolder", "is_ensemble_folder", "member_dir", "metrics_path", "read_ensemble", "read_ensemble_json",
    "read_holdout_predictions", "read_metrics", "report_path", "write_ensemble",
]

log = logging.getLogger(__name__)

ENSEMBLE_JSON = "ensemble.json"
METRICS_JSON = "metrics.json"
PREDICTIONS_CSV = "holdout_predictions.csv"
REPORT_HTML = "report.html"
MEMBERS_DIR = "members"
ENSEMBLE_KEYS = ("members", "pipeline", "tta", "classes", "positive")  # what loading an ENS_DIR reads
REMEDY = "run `lungsweep ensemble` again to rewrite it"


def is_ensemble_folder(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_JSON).is_file()


def member_dir(folder: str | Path, trial_id: str) -> Path:
    """The member folder of trial `trial_id`: a checkpoint folder, or a bag's bag.json and fold models."""
    return Path(folder) / MEMBERS_DIR / trial_id


def metrics_path(folder: str | Path) -> Path:
    return Path(folder) / METRICS_JSON


def report_path(folder: str | Path) -> Path:
    return Path(folder) / REPORT_HTML


def write_ensemble(
    out: str | Path, *, members: Mapping[str, tuple[Path, dict[str, Any]]], manifest: dict[str, Any],
    metrics: dict[str, Any], predictions: pd.DataFrame, write_report: Callable[[Path], Any],
) -> None:
    """ENS_DIR, written whole or not at all: members ({trial_id: (its checkpoint or bag folder, its record as it
    ships)}), ensemble.json, metrics.json, the scored predictions, and the report, which `write_report` writes at
    the path it is given."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        for trial_id, (folder, record) in members.items():
            _copy_member(Path(folder), member_dir(tmp, trial_id), record)
        (tmp / ENSEMBLE_JSON).write_text(json.dumps(manifest, indent=1, default=_plain))
        metrics_path(tmp).write_text(json.dumps(metrics, indent=1, default=_plain))
        predictions.to_csv(tmp / PREDICTIONS_CSV, index=False)
        write_report(report_path(tmp))
    log.info("wrote %s", out)


def _copy_member(folder: Path, dest: Path, record: dict[str, Any]) -> None:
    """A checkpoint folder as it is; a bag without its training runs, as it ships (`record`: its bag.json and the
    fold models it lists)."""
    if is_bag(folder):
        copy_bag(folder, dest, record)
    else:
        shutil.copytree(folder, dest)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


@dataclass(frozen=True)
class EnsembleFolder:
    """An ENS_DIR as read once: what loading, export and `lungsweep run` take from it."""

    path: Path
    manifest: dict[str, Any]  # ensemble.json, with ENSEMBLE_KEYS
    members: dict[str, Path]  # trial_id -> its member folder, in ensemble.json's order
    shipped: list[Path]  # the files an export copies as they are: metrics.json and report.html, where present
    metrics: dict[str, Any]  # metrics.json (a few kB, read with the rest); {} where the folder has none
    holdout_ids: list[str]  # the images its metrics were scored on (holdout_predictions.csv), sorted; [] without it


def read_ensemble(folder: str | Path) -> EnsembleFolder:
    """The one door to a whole ENS_DIR: ensemble.json (checked), the members' folders, the files an export ships
    and the images its metrics were scored on."""
    folder = Path(folder)
    manifest = read_ensemble_json(folder)
    scored = folder / PREDICTIONS_CSV
    # the csv module, not pandas: an id stays a string where it looks like a number
    rows = list(csv.DictReader(scored.read_text().splitlines())) if scored.is_file() else []
    if rows and "id" not in rows[0]:
        raise EnsembleError(f"{scored} has no 'id' column; {REMEDY}")
    return EnsembleFolder(
        path=folder, manifest=manifest,
        members={t: member_dir(folder, t) for t in manifest["members"]},
        shipped=[p for p in (metrics_path(folder), report_path(folder)) if p.is_file()],
        metrics=read_metrics(folder) if metrics_path(folder).is_file() else {},
        holdout_ids=sorted(r["id"] for r in rows),
    )


def read_ensemble_json(folder: str | Path) -> dict[str, Any]:
    """ENS_DIR/ensemble.json, with the keys loading reads, or a named EnsembleError."""
    path = Path(folder) / ENSEMBLE_JSON
    return read_record_file(path, required=ENSEMBLE_KEYS, error=EnsembleError, missing=f"{path} is missing",
                            remedy=REMEDY)


def read_metrics(folder: str | Path) -> dict[str, Any]:
    """ENS_DIR/metrics.json: every reported metric, the statement of which data produced them, the audit."""
    path = metrics_path(folder)
    return read_record_file(path, error=EnsembleError, missing=f"{path} is missing", remedy=REMEDY)


def read_holdout_predictions(folder: str | Path) -> pd.DataFrame:
    """ENS_DIR/holdout_predictions.csv: one row per scored image (id, group, label, probability, ...)."""
    import pandas as pd

    path = Path(folder) / PREDICTIONS_CSV
    if not path.is_file():
        raise EnsembleError(f"{path} is missing; {REMEDY}")
    return pd.read_csv(path)
