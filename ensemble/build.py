"""`lungsweep ensemble`: pick members, fit the ensemble on the holdout, cross-fit its metrics, write ENS_DIR.

Data discipline: members trained on `train` and were stopped or ranked on `val`.
Everything fitted here (combiner, calibrator, threshold) sees only `holdout`
predictions, and every reported number is cross-fitted over holdout groups: a
pipeline fitted on K-1 folds of patients scores the remaining fold.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

from trainers import TrainConfig, prepare_data
from trainers.atomic import atomic_dir
from trainers.checkpoint import package_versions
from trainers.loop import resolve_device

from .crossfit import check_crossfit, crossfit_splits
from .errors import EnsembleError
from .members import HoldoutPredictions, Member, holdout_predictions, pick_members
from .metrics import bootstrap_metrics
from .model import ENSEMBLE_JSON, load_member, member_margins
from .pipeline import EnsemblePipeline
from .report import ReportData, write_report
from .threshold import choose_threshold

__all__ = ["EnsembleSettings", "build_ensemble"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsembleSettings:
    method: str = "greedy"
    calibration: str = "temperature"
    members: int = 5
    trials: tuple[str, ...] = ()
    tta: bool = False
    target_sensitivity: float | None = None
    n_splits: int = 5
    n_boot: int = 1000
    seed: int = 0
    device: str = "auto"


def build_ensemble(run_dir: str | Path, out: str | Path, settings: EnsembleSettings) -> dict[str, Any]:
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and not (out / ENSEMBLE_JSON).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise EnsembleError(f"--out {out} exists and is not an ensemble folder; give a new folder (it would be replaced)")
    members = pick_members(run_dir, top=settings.members, trials=list(settings.trials) or None)
    log.info("members: %s", ", ".join(f"{m.trial_id} (rank {m.rank}, {m.metric:.4f})" for m in members))
    preds = holdout_predictions(members)
    if settings.tta:
        preds = _with_tta(members, preds, resolve_device(settings.device))
    classes = members[0].meta["classes"]
    positive = members[0].meta["positive"]
    negative = next(c for c in classes if c != positive)
    check_crossfit(preds.y, preds.groups, settings.n_splits, class_names=(negative, positive))

    def make_pipeline() -> EnsemblePipeline:
        return EnsemblePipeline(method=settings.method, calibration=settings.calibration,
                                target_sensitivity=settings.target_sensitivity,
                                n_splits=settings.n_splits, seed=settings.seed)

    oof = _cross_fit(make_pipeline, preds, settings)
    final = make_pipeline().fit(preds.margins, preds.y, preds.groups)

    def scored(p: np.ndarray, thresholds: np.ndarray, final_threshold: float) -> dict[str, Any]:
        m = bootstrap_metrics(preds.y, p, preds.groups, thresholds, n_boot=settings.n_boot, seed=settings.seed)
        m["threshold"] = final_threshold  # the deployed one; cross-fitted numbers used each fold's own
        return m

    metrics = {
        **scored(oof["calibrated"], oof["threshold"], final.threshold_),
        "uncalibrated": scored(oof["uncalibrated"], oof["threshold_uncalibrated"],
                               choose_threshold(preds.y, final.uncalibrated_proba(preds.margins),
                                                target_sensitivity=settings.target_sensitivity)),
        "members": {
            m.trial_id: scored(expit(preds.margins[:, k]), oof["member_thresholds"][:, k],
                               choose_threshold(preds.y, expit(preds.margins[:, k]),
                                                target_sensitivity=settings.target_sensitivity))
            for k, m in enumerate(members)
        },
        "data": _data_statement(preds, settings),
    }
    provenance = {
        "sweep": str(run_dir.resolve()),
        "members": [{"trial_id": m.trial_id, "rank": m.rank, "sweep_metric": m.metric,
                     "checkpoint": str(m.checkpoint), "config": m.config} for m in members],
        "data_fingerprint": members[0].meta["data_fingerprint"],
        "split": members[0].meta["split"],
        "holdout": {"images": len(preds.y), "groups": int(len(set(preds.groups))),
                    "positives": int(preds.y.sum())},
        "versions": package_versions(),
    }
    manifest = {
        "kind": "ensemble",
        "method": settings.method,
        "calibration": final.calibration_,
        "tta": settings.tta,
        "target_sensitivity": settings.target_sensitivity,
        "classes": classes,
        "positive": positive,
        "members": [m.trial_id for m in members],
        "preprocessing": {m.trial_id: m.meta["preprocessing"] for m in members},
        "pipeline": final.to_dict(),
        "threshold": final.threshold_,
        "provenance": provenance,
    }
    with atomic_dir(out) as tmp:
        for m in members:
            shutil.copytree(m.checkpoint, tmp / "members" / m.trial_id)
        (tmp / ENSEMBLE_JSON).write_text(json.dumps(manifest, indent=1, default=_plain))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_plain))
        _holdout_table(preds, oof, final).to_csv(tmp / "holdout_predictions.csv", index=False)
        write_report(tmp / "report.html", ReportData(
            title=f"lungsweep ensemble: {settings.method}, {final.calibration_} calibration",
            method=settings.method,
            calibration=final.calibration_,
            member_ids=[m.trial_id for m in members],
            member_configs=[_shown_config(m) for m in members],
            member_weights=_weights(final),
            y=preds.y,
            member_probs=expit(preds.margins),
            ensemble_uncalibrated=oof["uncalibrated"],
            ensemble_calibrated=oof["calibrated"],
            decisions=(oof["calibrated"] >= oof["threshold"]).astype(np.int64),
            threshold=float(final.threshold_),
            metrics=_report_metrics(metrics),
            class_names=(negative, positive),
            provenance={**provenance, "numbers": metrics["data"]},
            sweep_dir=run_dir,
        ))
    log.info("wrote %s", out)
    return metrics


def _cross_fit(make_pipeline, preds: HoldoutPredictions, settings: EnsembleSettings) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities and the thresholds each fold's pipeline chose."""
    n, k = preds.margins.shape
    out = {name: np.full(n, np.nan) for name in ("calibrated", "uncalibrated", "threshold", "threshold_uncalibrated")}
    out["member_thresholds"] = np.full((n, k), np.nan)
    target = settings.target_sensitivity
    for fit, score in crossfit_splits(preds.y, preds.groups, n_splits=settings.n_splits, seed=settings.seed):
        X, y = preds.margins, preds.y
        pipe = make_pipeline().fit(X[fit], y[fit], preds.groups[fit])
        out["calibrated"][score] = pipe.predict_proba(X[score])
        out["uncalibrated"][score] = pipe.uncalibrated_proba(X[score])
        out["threshold"][score] = pipe.threshold_
        out["threshold_uncalibrated"][score] = choose_threshold(
            y[fit], pipe.uncalibrated_proba(X[fit]), target_sensitivity=target)
        for j in range(k):
            out["member_thresholds"][score, j] = choose_threshold(y[fit], expit(X[fit, j]), target_sensitivity=target)
    return out


def _with_tta(members: list[Member], preds: HoldoutPredictions, device: torch.device) -> HoldoutPredictions:
    """Recompute holdout margins with flip test-time augmentation (members see each image and its mirror)."""
    columns = []
    for m in members:
        member = load_member(m.checkpoint, m.trial_id)
        member.model.to(device)
        data = prepare_data(TrainConfig.from_dict({**m.config, "progress": False}))
        position = {sample_id: i for i, sample_id in enumerate(data.dataset.ids)}
        images = np.asarray(data.images.array[[position[i] for i in preds.ids]])
        columns.append(member_margins(member, images, tta=True, device=device))
    return HoldoutPredictions(ids=preds.ids, y=preds.y, groups=preds.groups, margins=np.stack(columns, axis=1))


def _data_statement(preds: HoldoutPredictions, settings: EnsembleSettings) -> str:
    return (
        f"Every number is cross-fitted on the holdout split ({len(preds.y)} images, {len(set(preds.groups))} patients "
        f"or figures), which no member trained or early-stopped on: {settings.n_splits} folds of groups, each scored "
        "by a pipeline (combiner, calibrator, threshold) fitted on the other folds, then pooled. Members' own numbers "
        "use their raw probabilities with a threshold chosen the same way. 95% intervals: "
        f"{settings.n_boot} bootstrap resamples of groups. The deployed ensemble is fitted on the whole holdout."
    )


def _holdout_table(preds: HoldoutPredictions, oof: dict[str, np.ndarray], final: EnsemblePipeline) -> pd.DataFrame:
    return pd.DataFrame({
        "id": preds.ids, "group": preds.groups, "label": preds.y,
        "oof_probability": oof["calibrated"], "oof_threshold": oof["threshold"],
        "final_probability": final.predict_proba(preds.margins),
    })


def _shown_config(m: Member) -> dict[str, Any]:
    keys = ("model", "pretrained", "image_size", "optimizer", "lr", "batch_size", "weight_decay", "drop_rate",
            "aug_strength", "freeze_epochs")
    return {k: m.config.get(k) for k in keys if k in m.config}


def _weights(pipe: EnsemblePipeline) -> list[float] | None:
    weights = getattr(pipe.combiner_, "weights_", None)
    return None if weights is None else [float(w) for w in weights]


def _report_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    ensemble = {k: v for k, v in metrics.items() if k not in ("uncalibrated", "members", "data")}
    return {"ensemble": ensemble, "ensemble_uncalibrated": metrics["uncalibrated"], "members": metrics["members"]}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
