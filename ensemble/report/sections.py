"""The report of a fitted ensemble: which sections it has, in which order, and the data each draws from.

    data = report_data(fitted)                     # ensemble.fit.fitting.FittedEnsemble -> ReportData
    write_report(path, data)                       # ensemble.report.page

The page (ensemble.report.page) draws the headline, members and figures itself; the sections
after them are picked here: the networks shipped against holdout AUC (ensemble.report.networks_section),
the data audit (ensemble.report.audit_section), then where the models look
(ensemble.report.explain_section, Grad-CAM through ensemble.explaining).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

from ..fit.fitting import FittedEnsemble
from ..fit.members import Member
from ..fit.pipeline import EnsemblePipeline
from .audit_section import audit_section
from .explain_section import explain_section
from .networks_section import networks_section
from .page import ReportData, ReportSection

__all__ = ["report_data", "report_sections"]

# metrics.json blocks that are not the ensemble's headline numbers
_NOT_HEADLINE = ("uncalibrated", "members", "data", "development_crossfit", "fitted_on", "data_audit", "bag_spread",
                 "sweep", "networks")


def report_sections(fitted: FittedEnsemble) -> tuple[ReportSection, ...]:
    """The sections after the page's own, in order: networks shipped, the data audit, then where the models look."""
    return (
        *([networks_section(fitted.metrics["networks"])] if fitted.metrics.get("networks") else []),
        audit_section(fitted.metrics["data_audit"]),
        explain_section(fitted.members, fitted.scored_on, fitted.calibrated, fitted.thresholds, fitted.pipeline,
                        fitted.settings),
    )


def report_data(fitted: FittedEnsemble) -> ReportData:
    """Everything report.html shows of a fitted ensemble."""
    settings, final, metrics, members = fitted.settings, fitted.pipeline, fitted.metrics, fitted.members
    scored_on, p_cal, thresholds = fitted.scored_on, fitted.calibrated, fitted.thresholds
    positive = fitted.manifest["positive"]
    negative = next(c for c in fitted.manifest["classes"] if c != positive)
    return ReportData(
        title=f"lungsweep ensemble: {settings.method}, {final.calibration_} calibration",
        method=settings.method,
        calibration=final.calibration_,
        member_ids=[m.trial_id for m in members],
        member_configs=[_shown_config(m) for m in members],
        member_weights=_weights(final),
        y=scored_on.y,
        member_probs=expit(scored_on.margins),
        ensemble_uncalibrated=fitted.uncalibrated,
        ensemble_calibrated=p_cal,
        decisions=(p_cal >= thresholds).astype(np.int64),
        threshold=float(final.threshold_),
        metrics={"ensemble": {k: v for k, v in metrics.items() if k not in _NOT_HEADLINE},
                 "ensemble_uncalibrated": metrics["uncalibrated"], "members": metrics["members"],
                 **({"development_crossfit": metrics["development_crossfit"]}
                    if "development_crossfit" in metrics else {})},
        class_names=(negative, positive),
        provenance={**fitted.manifest["provenance"], "numbers": metrics["data"]},
        sweep=fitted.candidates,
        sections=report_sections(fitted),
    )


def _shown_config(m: Member) -> dict[str, Any]:
    keys = ("model", "pretrained", "image_size", "optimizer", "lr", "batch_size", "weight_decay", "drop_rate",
            "aug_strength", "freeze_epochs", "cv_folds")
    return {k: m.config.get(k) for k in keys if k in m.config}


def _weights(pipe: EnsemblePipeline) -> list[float] | None:
    weights = getattr(pipe.combiner_, "weights_", None)
    return None if weights is None else [float(w) for w in weights]
