"""Stored predictions to a fitted ensemble: pick members, fit combiner, calibrator and threshold, score it honestly.

Data discipline, by the kind of sweep:

- k-fold sweep (members are bags, `cv_folds` > 1): the combiner, calibrator and
  threshold are fitted on the bags' OUT-OF-FOLD predictions over the development pool
  (every image scored by a fold model that never saw its patient). The holdout was
  used by no training, selection or fitting step, so the headline numbers are the
  deployed ensemble on the holdout. A cross-fitted figure on the development pool is
  reported beside it (optimistic: the members were chosen by their out-of-fold metric).
- single-split sweep: members trained on `train` and were stopped or ranked on `val`;
  everything is fitted on `holdout` predictions, and every reported number is
  cross-fitted over holdout groups (a pipeline fitted on K-1 folds of patients scores
  the remaining fold).

`fit_ensemble` does the fitting and scoring and returns a FittedEnsemble, and knows no report
and no folder: ensemble.build hands it to the report (ensemble.report.sections) and to
ENS_DIR's writer (ensemble.folders.ensemble_dir).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy.special import expit

from search.record import SweepFolder, read_sweep_count
from trainers.checkpoint import package_versions
from trainers.inference import resolve_device

from ..errors import EnsembleError
from .bag_spread import as_shipped, spread_on_holdout
from .budget import networks, networks_curve, within_budget
from .crossfit import check_crossfit, crossfit_splits
from .data_audit import audit_block
from .members import (Member, StoredPredictions, holdout_predictions, mean_spread, oof_predictions,
                      select_members)
from .metrics import bootstrap_metrics
from .pipeline import EnsemblePipeline
from .settings import EnsembleSettings
from .threshold import choose_threshold, sensitivity_bound
from .tta import tta_predictions

__all__ = ["FittedEnsemble", "cross_fit", "fit_ensemble"]

log = logging.getLogger(__name__)


@dataclass
class FittedEnsemble:
    """The fitted ensemble and how it scored: what ENS_DIR holds and what its report draws."""

    members: list[Member]
    pipeline: EnsemblePipeline
    manifest: dict[str, Any]  # ensemble.json
    metrics: dict[str, Any]  # metrics.json
    predictions: pd.DataFrame  # holdout_predictions.csv: the scored images
    settings: EnsembleSettings
    candidates: SweepFolder  # the sweep as picking members read it
    scored_on: StoredPredictions  # the images the reported numbers are on
    calibrated: np.ndarray  # P(positive) of each scored image, as reported (cross-fitted where it was)
    uncalibrated: np.ndarray  # the same before calibration
    thresholds: np.ndarray  # the threshold each scored image was decided by


def fit_ensemble(run_dir: str | Path, settings: EnsembleSettings) -> FittedEnsemble:
    members, candidates = select_members(run_dir, top=settings.members, trials=list(settings.trials) or None)
    run_dir = candidates.run_dir  # a sweep at a URI is read from a local mirror
    members = [m.shipping(settings.bag_models) for m in members]
    pool = _weighable(members, settings.method)  # in rank order
    members = within_budget(pool, settings.max_networks)
    log.info("members: %s", ", ".join(f"{m.trial_id} (rank {m.rank}, {m.metric:.4f})" for m in members))
    bags = members[0].is_bag
    fit_on = oof_predictions(members) if bags else holdout_predictions(members)
    holdout = holdout_predictions(members) if bags and members[0].meta["holdout"] else None
    if settings.tta:
        device = resolve_device(settings.device)
        fit_on = tta_predictions(members, fit_on, "oof" if bags else "holdout", device)
        holdout = tta_predictions(members, holdout, "holdout", device) if holdout is not None else None
    spread = None
    if bags:  # fit for the bag's mean margin, which is what ships (ensemble.fit.bag_spread)
        fit_on, spread = as_shipped(fit_on, members, settings.fold_noise_share)
    classes = members[0].meta["classes"]
    positive = members[0].meta["positive"]
    negative = next(c for c in classes if c != positive)
    data_name = "the development pool's out-of-fold predictions" if bags else "the holdout"
    check_crossfit(fit_on.y, fit_on.groups, settings.n_splits, class_names=(negative, positive), data_name=data_name)

    def make_pipeline() -> EnsemblePipeline:
        return EnsemblePipeline(method=settings.method, calibration=settings.calibration,
                                target_sensitivity=settings.target_sensitivity,
                                threshold_rule=settings.threshold_rule, n_splits=settings.n_splits, seed=settings.seed)

    crossfit = cross_fit(make_pipeline, fit_on, n_splits=settings.n_splits, seed=settings.seed,
                         target_sensitivity=settings.target_sensitivity, rule=settings.threshold_rule)
    final = make_pipeline().fit(fit_on.margins, fit_on.y, fit_on.groups)
    scorer = _Scorer(settings)
    crossfitted = scorer.crossfitted(fit_on, crossfit, final, members)
    if holdout is not None:  # k-fold: the untouched holdout is the judge
        scored_on = holdout
        p_cal, p_unc = final.predict_proba(holdout.margins), final.uncalibrated_proba(holdout.margins)
        thresholds = np.full(len(holdout.y), final.threshold_)
        metrics = scorer.on_holdout(holdout, fit_on, final, members)
        metrics["development_crossfit"] = {k: v for k, v in crossfitted.items() if k != "members"}
        metrics["data"] = _statement_kfold(fit_on, holdout, settings)
    else:
        scored_on = fit_on
        p_cal, p_unc, thresholds = crossfit["calibrated"], crossfit["uncalibrated"], crossfit["threshold"]
        metrics = crossfitted
        metrics["data"] = _statement_crossfit(fit_on, settings, bags)
    chosen_on = final.threshold_proba(fit_on.margins, fit_on.y, fit_on.groups)
    metrics["operating_point"] = sensitivity_bound(fit_on.y, chosen_on, final.threshold_,
                                                   target_sensitivity=settings.target_sensitivity,
                                                   rule=settings.threshold_rule)
    metrics["fitted_on"] = {
        "combiner, calibrator, threshold": data_name,
        "images": len(fit_on.y), "groups": int(len(set(fit_on.groups))),
        "scored_on": "holdout (untouched)" if holdout is not None else f"{data_name}, cross-fitted",
    }
    metrics["data_audit"] = audit_block(run_dir, members[0].config)
    if spread is not None:
        metrics["bag_spread"] = {**spread, "on_holdout": spread_on_holdout(members, settings.fold_noise_share)}
    metrics["networks"] = {
        "shipped": sum(networks(m) for m in members), "budget": settings.max_networks,
        # the mean of the top k members on the holdout, for every k (no TTA): what each budget would have scored
        "curve": networks_curve(pool, holdout_predictions(pool)) if holdout is not None else None,
    }
    provenance = _provenance(candidates, members, fit_on, holdout)
    metrics["sweep"] = provenance["sweep_count"]
    manifest = {
        "kind": "ensemble",
        "method": settings.method,
        "calibration": final.calibration_,
        "tta": settings.tta,
        "target_sensitivity": settings.target_sensitivity,
        "classes": classes,
        "positive": positive,
        "members": [m.trial_id for m in members],
        "member_kind": "bag" if bags else "checkpoint",
        "preprocessing": {m.trial_id: m.meta["preprocessing"] for m in members},
        "pipeline": final.to_dict(),
        "threshold": final.threshold_,
        "fitted_for_bag_means": spread,
        "bag_models": settings.bag_models if bags else None,
        "stopped_bags": _stopped_record(members, fit_on),
        "provenance": provenance,
    }
    predictions = pd.DataFrame({
        "id": scored_on.ids, "group": scored_on.groups, "label": scored_on.y,
        "probability": p_cal, "threshold": thresholds,
        "final_probability": final.predict_proba(scored_on.margins),
    })
    return FittedEnsemble(members=members, pipeline=final, manifest=manifest, metrics=metrics,
                          predictions=predictions, settings=settings, candidates=candidates, scored_on=scored_on,
                          calibrated=p_cal, uncalibrated=p_unc, thresholds=thresholds)


def cross_fit(
    make_pipeline: Callable[[], EnsemblePipeline], preds: StoredPredictions, *, n_splits: int, seed: int,
    target_sensitivity: float | None = None, rule: str = "youden",
) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities over `preds`' groups and the thresholds each fold's pipeline chose.

    The reported numbers of a single-split ensemble come from here: every sample is
    scored by a pipeline fitted without its group.
    """
    n, k = preds.margins.shape
    out = {name: np.full(n, np.nan) for name in ("calibrated", "uncalibrated", "threshold", "threshold_uncalibrated")}
    out["member_thresholds"] = np.full((n, k), np.nan)
    X, y = preds.margins, preds.y
    for fit, score in crossfit_splits(y, preds.groups, n_splits=n_splits, seed=seed):
        pipe = make_pipeline().fit(X[fit], y[fit], preds.groups[fit])
        out["calibrated"][score] = pipe.predict_proba(X[score])
        out["uncalibrated"][score] = pipe.uncalibrated_proba(X[score])
        out["threshold"][score] = pipe.threshold_
        out["threshold_uncalibrated"][score] = choose_threshold(
            y[fit], pipe.uncalibrated_proba(X[fit]), target_sensitivity=target_sensitivity, rule=rule)
        for j in range(k):
            own = fit[preds.member_rows(j)[fit]]  # a stopped bag's threshold: from the images it scored
            out["member_thresholds"][score, j] = choose_threshold(
                y[own], expit(X[own, j]), target_sensitivity=target_sensitivity, rule=rule)
    return out


def _stopped_record(members: list[Member], fit_on: StoredPredictions) -> dict[str, Any] | None:
    """ensemble.json: the bags stopped before their last fold, and how their out-of-fold gaps were filled."""
    if fit_on.scored is None:
        return None
    spread = mean_spread(fit_on.margins, fit_on.scored)
    stopped = [m.trial_id for j, m in enumerate(members) if not fit_on.member_rows(j).all()]
    return {"trials": stopped, "mean_spread": round(spread, 4),
            "statement": f"{len(stopped)} bag(s) stopped before their last fold scored part of the pool out of fold; "
                         "elsewhere their margins are filled so that the members' mean is that of the members that "
                         f"scored the image, scaled around the pool's centre by {spread:.3f}, the ratio of the spread "
                         "of every member's mean to the finished bags' mean on the images every member scored"}


def _weighable(members: list[Member], method: str) -> list[Member]:
    """The members `method` can fit on. A bag stopped before its last fold scored only its folds' part of the
    pool out of fold, too little to weigh it by, so greedy and stacking leave it out; the mean takes it."""
    stopped = [m for m in members if m.stopped_early]
    if not stopped or method == "mean":
        return members
    kept = [m for m in members if m not in stopped]
    if not kept:
        raise EnsembleError(f"every member is a bag stopped before its last fold, which {method!r} cannot weigh: "
                            "use --method mean, or resume the sweep so that bags finish")
    log.warning("%s weighs bags on the whole pool's out-of-fold margins: leaving out %d bag(s) stopped before their "
                "last fold (%s); --method mean averages them too", method, len(stopped),
                ", ".join(m.trial_id for m in stopped))
    return kept


class _Scorer:
    """metrics.json blocks: every metric with its bootstrap interval (ensemble.fit.metrics.bootstrap_metrics)."""

    def __init__(self, settings: EnsembleSettings) -> None:
        self.settings = settings

    def _threshold(self, y: np.ndarray, p: np.ndarray) -> float:
        return choose_threshold(y, p, target_sensitivity=self.settings.target_sensitivity,
                                rule=self.settings.threshold_rule)

    def scored(self, preds: StoredPredictions, p: np.ndarray, thresholds: Any, deployed: float) -> dict[str, Any]:
        m = bootstrap_metrics(preds.y, p, preds.groups, thresholds, n_boot=self.settings.n_boot, seed=self.settings.seed)
        m["threshold"] = deployed  # the deployed one; cross-fitted numbers used each fold's own
        return m

    def crossfitted(self, preds: StoredPredictions, oof: dict[str, np.ndarray], final: EnsemblePipeline,
                    members: list[Member]) -> dict[str, Any]:
        return {
            **self.scored(preds, oof["calibrated"], oof["threshold"], final.threshold_),
            "uncalibrated": self.scored(preds, oof["uncalibrated"], oof["threshold_uncalibrated"],
                                        self._threshold(preds.y, final.uncalibrated_proba(preds.margins))),
            "members": {m.trial_id: self._member(preds, oof, k) for k, m in enumerate(members)},
        }

    def _member(self, preds: StoredPredictions, oof: dict[str, np.ndarray], k: int) -> dict[str, Any]:
        """Member k alone, on the images it scored out of fold (all of them, but for a stopped bag)."""
        rows = preds.member_rows(k)
        own = StoredPredictions(ids=[i for i, r in zip(preds.ids, rows) if r], y=preds.y[rows],
                                groups=preds.groups[rows], margins=preds.margins[rows])
        p = expit(own.margins[:, k])
        return self.scored(own, p, oof["member_thresholds"][rows, k], self._threshold(own.y, p))

    def on_holdout(self, holdout: StoredPredictions, fit_on: StoredPredictions, final: EnsemblePipeline,
                   members: list[Member]) -> dict[str, Any]:
        """The deployed pipeline (fitted on out-of-fold predictions) on the untouched holdout."""
        t_unc = self._threshold(fit_on.y, final.uncalibrated_proba(fit_on.margins))
        out = {
            **self.scored(holdout, final.predict_proba(holdout.margins), final.threshold_, final.threshold_),
            "uncalibrated": self.scored(holdout, final.uncalibrated_proba(holdout.margins), t_unc, t_unc),
            "members": {},
        }
        for k, m in enumerate(members):  # each bag alone: its own probability, threshold from its out-of-fold part
            rows = fit_on.member_rows(k)
            t = self._threshold(fit_on.y[rows], expit(fit_on.margins[rows, k]))
            out["members"][m.trial_id] = self.scored(holdout, expit(holdout.margins[:, k]), t, t)
        return out


def _statement_kfold(fit_on: StoredPredictions, holdout: StoredPredictions, settings: EnsembleSettings) -> str:
    return (
        f"Headline numbers: the deployed ensemble on the holdout split ({len(holdout.y)} images, "
        f"{len(set(holdout.groups))} patients or figures), which no fold model trained on and no selection or "
        f"fitting step used. The combiner, calibrator and threshold were fitted on the members' out-of-fold "
        f"predictions over the development pool ({len(fit_on.y)} images, {len(set(fit_on.groups))} groups): each "
        "image scored by the fold model that never saw its patient. Each member (a bag of fold models, margins "
        "averaged) is shown alone with its own probability and a threshold chosen on its out-of-fold part. "
        f"'development_crossfit' in metrics.json is the same pipeline cross-fitted ({settings.n_splits} folds of "
        "groups) on the out-of-fold predictions: optimistic, because the members were chosen by their out-of-fold "
        "metric."
    )


def _statement_crossfit(preds: StoredPredictions, settings: EnsembleSettings, bags: bool) -> str:
    where = (f"the members' out-of-fold predictions over the development pool ({len(preds.y)} images, "
             f"{len(set(preds.groups))} groups); there is no holdout (holdout_fraction 0), so these numbers are "
             "optimistic: the members were also chosen by their out-of-fold metric") if bags else (
             f"the holdout split ({len(preds.y)} images, {len(set(preds.groups))} patients or figures), which no "
             "member trained or early-stopped on")
    return (
        f"Every number is cross-fitted on {where}: {settings.n_splits} folds of groups, each scored by a pipeline "
        "(combiner, calibrator, threshold) fitted on the other folds, then pooled. Members' own numbers use their "
        "raw probabilities with a threshold chosen the same way. The deployed ensemble is fitted on all of it."
    )


def _provenance(sweep: SweepFolder, members: list[Member], fit_on: StoredPredictions,
                holdout: StoredPredictions | None) -> dict[str, Any]:
    scored = holdout if holdout is not None else fit_on
    count = read_sweep_count(sweep.run_dir)  # None: a sweep from before launch counted its trials
    return {
        "sweep": sweep.location,
        # the trials asked for against those that gave a model: a short sweep says so in every artifact
        "sweep_count": count.to_dict() if count is not None else None,
        "members": [{"trial_id": m.trial_id, "rank": m.rank, "sweep_metric": m.metric,
                     "checkpoint": str(m.checkpoint), "config": m.config,
                     **({"folds": len(m.meta["folds_done"])} if m.is_bag else {})} for m in members],
        "data_fingerprint": members[0].meta["data_fingerprint"],
        "split": members[0].meta["split"],
        "fitted_on": {"images": len(fit_on.y), "groups": int(len(set(fit_on.groups))),
                      "positives": int(fit_on.y.sum())},
        "holdout": {"images": len(scored.y), "groups": int(len(set(scored.groups))),
                    "positives": int(scored.y.sum())},
        "versions": package_versions(),
    }
