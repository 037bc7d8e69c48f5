"""Cross-fitting: refuse holdouts too small, and never score a patient with a model that saw it."""
from __future__ import annotations

import numpy as np
import pytest

from ensemble import EnsembleError, check_crossfit, crossfit_predict, crossfit_splits


class _Memoriser:
    """Predicts 1 for a group it was fitted on, 0 otherwise: any leak shows as a 1."""

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> _Memoriser:
        self.seen_ = set(groups.tolist())
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.array([float(g in self.seen_) for g in X[:, 0]])


def test_crossfit_predict_never_scores_a_seen_group(members) -> None:
    _, y, groups = members
    X = groups[:, None].astype(float)
    oof = crossfit_predict(_Memoriser, X, y, groups, n_splits=5)
    assert oof.shape == y.shape
    np.testing.assert_array_equal(oof, 0.0)


def test_splits_cover_every_sample_once_and_keep_groups_whole(members) -> None:
    _, y, groups = members
    scored = np.concatenate([s for _, s in crossfit_splits(y, groups, n_splits=4, seed=1)])
    np.testing.assert_array_equal(np.sort(scored), np.arange(len(y)))
    for fit_idx, score_idx in crossfit_splits(y, groups, n_splits=4, seed=1):
        assert not set(groups[fit_idx]) & set(groups[score_idx])
        assert set(y[fit_idx]) == {0, 1}


def _holdout(n_pos_groups: int, n_neg_groups: int, per_group: int = 4) -> tuple[np.ndarray, np.ndarray]:
    y = np.r_[np.ones(n_pos_groups * per_group, dtype=int), np.zeros(n_neg_groups * per_group, dtype=int)]
    groups = np.arange(len(y)) // per_group
    return y, groups


@pytest.mark.parametrize(
    ("n_pos", "n_neg", "n_splits", "names", "match"),
    [
        (3, 10, 5, ("normal", "COVID"),
         r"^Requesting 5-fold cross-fitting but the holdout has only 3 groups of class 1 \(COVID\); each fold needs "
         r"at least one group of each class\. Use n_splits <= 3 or a larger holdout\.$"),
        (10, 4, 5, None, r"only 4 groups of class 0; .* Use n_splits <= 4"),
        (10, 1, 2, None, r"only 1 group of class 0; .* Use a larger holdout\."),
        (10, 0, 2, None, r"only 0 groups of class 0"),
        (10, 10, 1, None, "n_splits must be an integer >= 2, got 1"),
        (10, 10, 2.0, None, "n_splits must be an integer >= 2, got 2.0"),
    ],
)
def test_check_crossfit_refuses_small_holdouts(n_pos, n_neg, n_splits, names, match) -> None:
    y, groups = _holdout(n_pos, n_neg)
    with pytest.raises(EnsembleError, match=match):
        check_crossfit(y, groups, n_splits, class_names=names)


def test_check_crossfit_on_the_development_pool_does_not_ask_for_a_larger_holdout() -> None:
    y, groups = _holdout(3, 10)
    pool = "the development pool's out-of-fold predictions"
    with pytest.raises(EnsembleError, match=r"Use n_splits <= 3 or more patients of this class in the data\.$"):
        check_crossfit(y, groups, 5, data_name=pool)


def test_check_crossfit_counts_groups_not_samples() -> None:
    y, groups = _holdout(3, 10, per_group=50)  # 150 positive images, but from 3 patients
    with pytest.raises(EnsembleError, match="only 3 groups of class 1"):
        crossfit_predict(_Memoriser, groups[:, None], y, groups, n_splits=5)
    check_crossfit(y, groups, 3)


class _MemorisingPipeline(_Memoriser):
    """The memoriser with the pipeline surface build.cross_fit reads (uncalibrated_proba, threshold_)."""

    threshold_ = 0.5

    def uncalibrated_proba(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X)


def test_the_reported_cross_fit_never_scores_a_group_its_pipeline_saw(members) -> None:
    """build.cross_fit makes the ensemble's reported numbers: a leak would show as a 1."""
    from ensemble import StoredPredictions, cross_fit

    _, y, groups = members
    X = np.column_stack([groups, groups]).astype(float)  # the memoriser reads the group from column 0
    preds = StoredPredictions(ids=[str(i) for i in range(len(y))], y=y, groups=groups, margins=X)
    out = cross_fit(_MemorisingPipeline, preds, n_splits=5, seed=0)
    np.testing.assert_array_equal(out["calibrated"], 0.0)
    np.testing.assert_array_equal(out["uncalibrated"], 0.0)
    assert np.isfinite(out["member_thresholds"]).all()
