"""The ensemble folder (ENS_DIR) on disk: its file names, how to tell one, how to write it and how to read it.

    ENS_DIR/ensemble.json             the fitted ensemble: members, combiner, calibrator and threshold as plain
                                      numbers, classes, preprocessing and provenance (loading needs ENSEMBLE_KEYS)
    ENS_DIR/metrics.json              every reported metric with its 95% group-bootstrap interval
    ENS_DIR/holdout_predictions.csv   the scored images: id, group, label, probability, threshold, final_probability
    ENS_DIR/report.html               the self-contained report (ensemble.report)
    ENS_DIR/members/<trial>/          each member: a checkpoint folder as it is, or a bag without its training runs

`lungsweep ensemble` writes it whole or not at all (`write_ensemble`); loading, export and `lungsweep run`
read it through the readers here.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.atomic import atomic_dir
from trainers.bag import copy_bag
from trainers.records import read_record_file

from .errors import EnsembleError

if TYPE_CHECKING:
    import pandas as pd

    from .build import FittedEnsemble
    from .members import Member

__all__ = [
    "ENSEMBLE_JSON", "ENSEMBLE_KEYS", "MEMBERS_DIR", "METRICS_JSON", "PREDICTIONS_CSV", "REPORT_HTML",
    "is_ensemble_folder", "member_dir", "metrics_path", "read_ensemble_json", "read_holdout_predictions",
    "read_metrics", "report_path", "write_ensemble",
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


def write_ensemble(fitted: FittedEnsemble, out: str | Path) -> None:
    """ENS_DIR, written whole or not at all: members, ensemble.json, metrics.json, predictions, report."""
    from .report import write_report  # the report's figures (matplotlib, Optuna) load only to write one

    out = Path(out)
    with atomic_dir(out) as tmp:
        for m in fitted.members:
            _copy_member(m, member_dir(tmp, m.trial_id))
        (tmp / ENSEMBLE_JSON).write_text(json.dumps(fitted.manifest, indent=1, default=_plain))
        metrics_path(tmp).write_text(json.dumps(fitted.metrics, indent=1, default=_plain))
        fitted.predictions.to_csv(tmp / PREDICTIONS_CSV, index=False)
        write_report(report_path(tmp), fitted.report)
    log.info("wrote %s", out)


def _copy_member(member: Member, dest: Path) -> None:
    """A checkpoint folder as it is; a bag without its training runs (bag.json and the fold models)."""
    if member.is_bag:
        copy_bag(member.checkpoint, dest)
    else:
        shutil.copytree(member.checkpoint, dest)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


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
