"""`lungsweep ensemble`: fit the ensemble, then assemble its report, then write ENS_DIR, in that order.

    metrics = build_ensemble("runs/sweep", "runs/ens", EnsembleSettings(method="greedy"))

Each step has its own room: ensemble.fit fits and scores (knowing no report and no folder),
ensemble.report picks and draws the report's sections, ensemble.folders.ensemble_dir owns ENS_DIR.
This module is the one place that runs them one after the other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import EnsembleError
from .fit.fitting import fit_ensemble
from .fit.settings import EnsembleSettings
from .folders.ensemble_dir import is_ensemble_folder, write_ensemble
from .report.page import write_report
from .report.sections import report_data

__all__ = ["build_ensemble"]


def build_ensemble(run_dir: str | Path, out: str | Path, settings: EnsembleSettings) -> dict[str, Any]:
    """Fit an ensemble of the sweep in `run_dir` and write it, with its report, to ENS_DIR `out`; its metrics."""
    out = Path(out)
    if out.exists() and not is_ensemble_folder(out) and (not out.is_dir() or any(out.iterdir())):
        raise EnsembleError(f"--out {out} exists and is not an ensemble folder; give a new folder (it would be replaced)")
    fitted = fit_ensemble(run_dir, settings)
    report = report_data(fitted)
    write_ensemble(
        out, members={m.trial_id: (m.checkpoint, m.meta) for m in fitted.members}, manifest=fitted.manifest,
        metrics=fitted.metrics, predictions=fitted.predictions, write_report=lambda path: write_report(path, report),
    )
    return fitted.metrics
