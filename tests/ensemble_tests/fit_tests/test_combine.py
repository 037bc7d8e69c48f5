"""Combiners: greedy selection prefers the better members; stacking does at least as well out of fold."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import expit, logit
from sklearn.base import clone
from sklearn.metrics import log_loss, roc_auc_score

from ensemble import (
    CALIBRATORS, COMBINERS, EnsembleError, EnsemblePipeline, GreedyEnsemble, MeanEnsemble, StackingEnsemble,
    make_combiner,
)
from ensemble.fit.combine import combiner_from_dict, pooled_margin

ESTIMATORS = [*(cls for cls in COMBINERS.values()), *(cls for cls in CALIBRATORS.values()), EnsemblePipeline]


def test_mean_is_the_mean_probability(members) -> None:
    X, y, _ = members
    ens = MeanEnsemble().fit(X, y)
    assert ens.n_members_ == 5
    np.testing.assert_allclose(ens.predict_proba(X), expit(X).mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(ens.predict_margin(X), logit(expit(X).mean(axis=1)), rtol=1e-9, atol=1e-9)


def test_pooled_margin_survives_extreme_margins() -> None:
    X = np.array([[100.0, 100.0], [-100.0, -100.0], [800.0, -800.0]])
    m = pooled_margin(X, np.array([0.5, 0.5]))
    np.testing.assert_allclose(m, [100.0, -100.0, 0.0], atol=1e-9)


def test_greedy_prefers_the_informative_members(members) -> None:
    X, y, _ = members
    ens = GreedyEnsemble(n_iter=30).fit(X, y)
    assert ens.selected_[0] in (0, 1)  # initialised with the best single member
    assert ens.weights_[:2].sum() >= 0.8
    assert ens.weights_.sum() == pytest.approx(1.0)
    assert len(ens.selected_) == len(ens.scores_) == 30
    assert ens.scores_[ens.best_iter_ - 1] == ens.scores_.min()
    # the kept ensemble is at least as good as the best member
    best_member = min(log_loss(y, expit(X[:, j])) for j in range(X.shape[1]))
    assert log_loss(y, ens.predict_proba(X)) <= best_member + 1e-12
    assert log_loss(y, ens.predict_proba(X)) == pytest.approx(ens.scores_.min())


def test_greedy_splits_ties_between_duplicated_members(members) -> None:
    X, y, _ = members
    X = np.c_[X[:, :1], X[:, :1]]  # the same member twice
    picks = {tuple(GreedyEnsemble(n_iter=10, seed=s).fit(X, y).selected_) for s in range(4)}
    assert len(picks) > 1


def test_stacking_does_at_least_as_well_as_the_best_member_out_of_fold(make_members) -> None:
    # members that each see the truth through their own noise: a combination beats any one
    X, y, groups = make_members(n_groups=80, signal=(1.0, 1.0, 0.8, 0.0, 0.0), noise=1.5, seed=5)
    ens = StackingEnsemble()
    oof = ens.out_of_fold_predict_margin(X, y, groups)
    assert not hasattr(ens, "coef_")  # out-of-fold prediction leaves the estimator unfitted
    assert np.isfinite(oof).all()
    best_auc = max(roc_auc_score(y, X[:, j]) for j in range(X.shape[1]))
    best_nll = min(log_loss(y, expit(X[:, j])) for j in range(X.shape[1]))
    assert roc_auc_score(y, oof) >= best_auc
    assert log_loss(y, expit(oof)) <= best_nll
    ens.fit(X, y)
    np.testing.assert_allclose(ens.predict_margin(X), X @ ens.coef_ + ens.intercept_)
    assert ens.coef_[:3].min() > ens.coef_[3:].max()


@pytest.mark.parametrize("method", sorted(COMBINERS))
def test_combiner_round_trips_through_json(method: str, members) -> None:
    X, y, groups = members
    ens = make_combiner(method).fit(X, y, groups)
    back = combiner_from_dict(json.loads(json.dumps(ens.to_dict())))
    assert type(back) is type(ens) and back.get_params() == ens.get_params()
    np.testing.assert_array_equal(back.predict_margin(X), ens.predict_margin(X))


def _saturated(X: np.ndarray, seed: int = 1) -> np.ndarray:
    """X's rows, random rows, and rows with margins far past where expit rounds to 0 or 1 (|m| > 40)."""
    rng = np.random.default_rng(seed)
    n = X.shape[1]
    extreme = np.array([[45.0] * n, [-45.0] * n, [800.0, -800.0] * (n // 2) + [60.0] * (n % 2)])
    return np.r_[X, rng.normal(0.0, 10.0, (200, n)), extreme, rng.choice([-90.0, -41.0, 41.0, 90.0], (20, n))]


@pytest.mark.parametrize("method", sorted(COMBINERS))
def test_to_torch_computes_what_predict_margin_computes(method: str, members) -> None:
    X, y, groups = members
    ens = make_combiner(method).fit(X, y, groups)
    grid = _saturated(X)
    expected = ens.predict_margin(grid)
    with torch.no_grad():
        got = ens.to_torch()(torch.from_numpy(grid))
        used = ens.used_members()
        only_used = ens.to_torch(keep=used)(torch.from_numpy(grid[:, used]))
    assert got.dtype == torch.float64 and got.shape == (len(grid),)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(only_used.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_greedy_uses_only_members_it_picked(members) -> None:
    X, y, _ = members
    ens = GreedyEnsemble(n_iter=30).fit(X, y)
    np.testing.assert_array_equal(ens.used_members(), np.flatnonzero(ens.weights_))
    assert len(ens.used_members()) < X.shape[1]  # the noise members get weight 0
    np.testing.assert_array_equal(MeanEnsemble().fit(X).used_members(), np.arange(5))
    unused = np.setdiff1d(np.arange(5), ens.used_members())
    with pytest.raises(EnsembleError, match=r"leaves out member\(s\) \[\d+\], which the 'greedy' combiner weighs"):
        ens.to_torch(keep=np.r_[ens.used_members()[1:], unused])
    with pytest.raises(EnsembleError, match=r"keep must list member indices in \[0, 5\), got \[7\]"):
        ens.to_torch(keep=[7])


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_sklearn_clone_and_keyword_only_init(cls, members) -> None:
    est = cls()
    copy = clone(est)
    assert type(copy) is cls and copy.get_params() == est.get_params()
    X, y, groups = members
    fitted = est.fit(X if cls in COMBINERS.values() or cls is EnsemblePipeline else X[:, 0], y, groups)
    assert fitted is est
    learned = [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]
    assert learned and not any(k.endswith("_") for k in vars(clone(est)))
    if est.get_params():
        with pytest.raises(TypeError):
            cls(*est.get_params().values())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda X, y: make_combiner("median"),
         r"unknown ensemble method 'median'; choose one of \['greedy', 'mean', 'stack'\]"),
        (lambda X, y: GreedyEnsemble(n_iter=0).fit(X, y), "n_iter must be a positive integer, got 0"),
        (lambda X, y: StackingEnsemble(C=-1.0).fit(X, y), "C must be a number > 0, got -1.0"),
        (lambda X, y: MeanEnsemble().fit(X).predict_margin(X[:, :3]), "fitted on 5 members, got predictions of 3"),
        (lambda X, y: MeanEnsemble().fit(X[:, 0]), r"must be 2-D \(n_samples, n_members\).*X\[:, None\]"),
        (lambda X, y: GreedyEnsemble().fit(X, y[:-1]), r"180 rows of member predictions for 179 labels"),
        (lambda X, y: StackingEnsemble(n_splits=40).out_of_fold_predict_margin(X, y, np.arange(len(y)) // 3),
         "Requesting 40-fold cross-fitting but the stacker's fitting data has only 30 groups of class 1"),
        (lambda X, y: combiner_from_dict({"name": "vote"}), "name 'vote' is not one of"),
    ],
)
def test_combiner_errors(call, match: str, members) -> None:
    X, y, _ = members
    with pytest.raises(EnsembleError, match=match):
        call(X, y)
