"""A budget on the networks an ensemble ships: members by rank while they fit, and each budget's holdout AUC."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ensemble import EnsembleError, EnsembleSettings
from ensemble.fit.budget import networks, networks_curve, within_budget
from ensemble.fit.members import Member, StoredPredictions


def bag(trial_id: str, folds: int, rank: int) -> Member:
    return Member(trial_id, Path(trial_id), {"oof": {}, "folds_done": list(range(folds)), "cv_folds": 5}, rank, 0.9)


def test_members_are_kept_by_rank_while_their_networks_fit():
    members = [bag("a", 5, 1), bag("b", 5, 2), bag("c", 1, 3), bag("d", 3, 4)]
    assert [networks(m) for m in members] == [5, 5, 1, 3]
    assert within_budget(members, None) == members
    # b does not fit beside a; c, a bag ASHA stopped after one fold, does; then d does not
    assert [m.trial_id for m in within_budget(members, 7)] == ["a", "c"]
    assert [m.trial_id for m in within_budget(members, 14)] == ["a", "b", "c", "d"]
    one_model = Member("m", Path("m"), {"predictions": {}}, 1, 0.9)  # a single-split trial: one network
    assert networks(one_model) == 1
    with pytest.raises(EnsembleError, match=r"--max-networks 2 holds no member: the smallest, c, runs 3 networks"):
        within_budget([bag("a", 5, 1), bag("c", 3, 2)], 2)


def test_each_budget_is_scored_by_the_mean_margin_of_the_top_members_on_the_holdout():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    margins = rng.normal(size=(40, 3)) + y[:, None] * np.array([1.5, 0.2, 0.8])
    holdout = StoredPredictions(ids=[str(i) for i in range(40)], y=y, groups=np.arange(40), margins=margins)
    curve = networks_curve([bag("a", 5, 1), bag("b", 2, 2), bag("c", 5, 3)], holdout)
    assert [p["networks"] for p in curve] == [5, 7, 12] and [p["members"] for p in curve] == [1, 2, 3]
    for k, point in enumerate(curve, start=1):
        assert point["holdout_auc"] == pytest.approx(roc_auc_score(y, margins[:, :k].mean(axis=1)), abs=1e-4)


@pytest.mark.parametrize("value", [0, -3, True])
def test_a_budget_below_one_network_is_refused_by_name(value):
    with pytest.raises(EnsembleError, match=r"--max-networks must be a whole number of at least 1"):
        EnsembleSettings(max_networks=value)
