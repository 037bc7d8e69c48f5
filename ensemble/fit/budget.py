"""A budget on the networks the exported model holds, and what each budget would have scored.

Prediction runs every fold model of every member: the mean of every bag of a 12-trial sweep
ships about 29 networks, of a 100-trial one about 500. `within_budget` keeps members in rank
order while their networks fit the budget (a member that does not fit is passed over for a
smaller one below it); the combiner, calibrator and threshold are then fitted on the kept
members' out-of-fold margins, as for any choice of members, so they fit the margin that ships.
`networks_curve` scores the mean margin of the top k members on the untouched holdout for every
k: the report's figure of holdout AUC against networks shipped.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from ..errors import EnsembleError
from .members import Member, StoredPredictions

__all__ = ["networks", "within_budget", "networks_curve"]

log = logging.getLogger(__name__)


def networks(member: Member) -> int:
    """The networks a member runs on an image: a bag's finished fold models, or one."""
    return len(member.meta["folds_done"]) if member.is_bag else 1


def within_budget(members: list[Member], max_networks: int | None) -> list[Member]:
    """Members in rank order while their networks fit `max_networks` (None: all of them)."""
    if max_networks is None:
        return members
    kept, used = [], 0
    for m in members:
        if used + networks(m) <= max_networks:
            kept.append(m)
            used += networks(m)
    if not kept:
        smallest = min(members, key=networks)
        raise EnsembleError(f"--max-networks {max_networks} holds no member: the smallest, {smallest.trial_id}, "
                            f"runs {networks(smallest)} networks (its fold models); give at least that")
    if len(kept) < len(members):
        log.info("network budget %d: %d of %d members, %d networks", max_networks, len(kept), len(members), used)
    return kept


def networks_curve(members: list[Member], holdout: StoredPredictions) -> list[dict[str, Any]]:
    """For k = 1..len(members): the top k members' networks and the holdout AUC of their mean margin."""
    curve, used = [], 0
    for k, m in enumerate(members, start=1):
        used += networks(m)
        margin = holdout.margins[:, :k].mean(axis=1)
        auc = float(roc_auc_score(holdout.y, margin)) if len(np.unique(holdout.y)) == 2 else float("nan")
        curve.append({"members": k, "networks": used, "holdout_auc": round(auc, 4), "trial_id": m.trial_id})
    return curve
