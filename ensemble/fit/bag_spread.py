"""Out-of-fold margins brought to the spread of the margin a bag ships: what the calibrator must fit.

A k-fold bag ships the mean of its k fold models' margins. Its out-of-fold margins, on
which the combiner, calibrator and threshold are fitted, each come from one fold model.
Averaging removes part of the fold-to-fold disagreement, so on new images the bag's mean
margin is narrower than one fold model's, and a calibrator fitted on single-fold margins
reads the mean as less sure than it is (the bag is under-confident after calibration).

The model: a fold model's margin is m = f(x) + e, where e is the fold-to-fold
disagreement, a share r (`noise_share`) of m's variance; the mean of k folds keeps e/k.
Under a Gaussian model a mean margin z says what a single margin mu + (z - mu) / c says,
with c = 1 - r (1 - 1/k), the variance ratio of the mean to one fold model's margin. So
fitting the pipeline on mu + c (m - mu) (mu: the member's mean out-of-fold margin) fits
it for the margins the bag ships, and the shipped graph stays as it is.

r is not measurable on the development pool (each image is unseen by one fold model
only). On the holdouts of bench/jobs/bench_outer.py's outer splits, where no fold model saw the
images, 12 three-fold bags showed r = 0.26 (sd 0.05). Yet the correction did not pay there
(bench/ensembling/bench_calibration.py, BENCHMARKS.md): pooled over three splits, the uncorrected quick
ensemble already had calibration slope 1.04 and an ECE at the noise floor, because a fold
model's margins are also narrower on new patients than out of fold. So the default is
r = 0 (fit the out-of-fold margins as they are); each ensemble records what its own holdout
shows (`spread_on_holdout`) beside what was assumed, so the check is repeated on every job.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .members import Member, StoredPredictions

__all__ = ["as_shipped", "spread_on_holdout", "variance_ratio"]

def variance_ratio(folds: int, noise_share: float) -> float:
    """Variance of a mean of `folds` fold models' margins over one fold model's: 1 - r (1 - 1/k).

    noise_share is checked where it enters (EnsembleSettings)."""
    return 1.0 - noise_share * (1.0 - 1.0 / folds)


def as_shipped(preds: StoredPredictions, members: list[Member], noise_share: float) -> tuple[StoredPredictions,
                                                                                                dict[str, Any]]:
    """Out-of-fold margins rescaled per member to its bag's spread, and a record of the factors used."""
    margins = preds.margins.astype(np.float64, copy=True)
    factors = {}
    for j, member in enumerate(members):
        c = variance_ratio(_folds(member), noise_share)
        centre = margins[:, j].mean()
        margins[:, j] = centre + c * (margins[:, j] - centre)
        factors[member.trial_id] = round(c, 4)
    record = {"noise_share": noise_share, "factor": factors,
              "statement": f"out-of-fold margins scaled around each member's mean by 1 - r (1 - 1/k) with r = "
                           f"{noise_share} (the share of a fold model's margin variance that averaging k folds "
                           "reduces, measured on outer-split holdouts), so that the calibrator and threshold fit the "
                           "bag's mean margin, which is what the ensemble ships"}
    return replace(preds, margins=margins), record


def spread_on_holdout(members: list[Member], noise_share: float) -> dict[str, dict[str, float]]:
    """Per bag, on the holdout (no fold model saw it): the variance ratio assumed and the one measured, and the
    noise share the measured ratio implies, (1 - ratio) / (1 - 1/k)."""
    out = {}
    for member in members:
        folds = member.meta.get("fold_holdout") or {}
        if len(folds) < 2:
            continue
        ids = sorted(next(iter(folds.values())))
        M = np.array([[folds[k][i] for i in ids] for k in sorted(folds)], dtype=np.float64)
        measured = float(M.mean(axis=0).var() / M.var(axis=1).mean())
        out[member.trial_id] = {"folds": len(folds), "assumed": round(variance_ratio(len(folds), noise_share), 4),
                                "measured": round(measured, 4),
                                "noise_share": round((1 - measured) / (1 - 1 / len(folds)), 4)}
    return out


def _folds(member: Member) -> int:
    folds = member.meta.get("fold_holdout") or {}
    return max(1, len(folds) or int(member.meta.get("split", {}).get("cv_folds", 1)))
