"""Combiners: scikit-learn style estimators from the member matrix X to one margin per sample.

X holds member LOGIT MARGINS, shape (n_samples, n_members). Every combiner:

    fit(X, y=None, groups=None) -> self
    predict_margin(X) -> 1-D margin (calibration downstream works on margins)
    predict_proba(X)  -> 1-D P(positive) = expit(predict_margin(X))
    used_members()    -> indices of the members whose weight is not zero
    to_torch(keep)    -> torch module: member margins (B, len(keep)) float64 -> margin (B,)
    to_dict() / from_dict(d)

The members were trained elsewhere; X is their prediction on the holdout, so
a combiner fitted on X is already fitted on predictions the members made out
of sample (scikit-learn's cv="prefit" situation).
"""
from __future__ import annotations

from numbers import Real
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import expit, log_expit, logsumexp
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from torch import nn

from .._checks import Interval, check_groups, check_labels, check_member_matrix, plain, validate_params
from .crossfit import crossfit_splits
from ..errors import EnsembleError

__all__ = [
    "COMBINERS",
    "GreedyEnsemble",
    "MeanEnsemble",
    "StackingEnsemble",
    "combiner_from_dict",
    "make_combiner",
    "pooled_margin",
]


def pooled_margin(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """logit(sum_j w_j expit(X[:, j])) for weights summing to 1, computed in log space.

    logit(q) = log q - log(1 - q), and 1 - expit(x) = expit(-x), so no
    probability is ever rounded to 0 or 1 (members with |margin| > 37 would be).
    """
    w = np.asarray(weights, dtype=np.float64)
    return logsumexp(log_expit(X), b=w, axis=1) - logsumexp(log_expit(-X), b=w, axis=1)


class _PooledMarginModule(nn.Module):
    """pooled_margin in torch: logsigmoid and logsumexp only, float64 throughout."""

    def __init__(self, weights: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("log_w", torch.log(torch.as_tensor(weights, dtype=torch.float64)))

    def forward(self, margins: torch.Tensor) -> torch.Tensor:
        log_pos = torch.logsumexp(nn.functional.logsigmoid(margins) + self.log_w, dim=1)
        return log_pos - torch.logsumexp(nn.functional.logsigmoid(-margins) + self.log_w, dim=1)


class _LinearMarginModule(nn.Module):
    """margins @ coef + intercept, float64."""

    def __init__(self, coef: np.ndarray, intercept: float) -> None:
        super().__init__()
        self.register_buffer("coef", torch.as_tensor(coef, dtype=torch.float64))
        self.intercept = float(intercept)

    def forward(self, margins: torch.Tensor) -> torch.Tensor:
        return margins @ self.coef + self.intercept


class _Combiner(BaseEstimator):
    name: ClassVar[str]
    _state_keys: ClassVar[tuple[str, ...]] = ()
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    def predict_margin(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return expit(self.predict_margin(X))

    def member_weights(self) -> np.ndarray:
        """Each member's weight in the combined margin, (n_members,); zero means the member changes nothing."""
        raise NotImplementedError

    def used_members(self) -> np.ndarray:
        """Indices of the members with a non-zero weight: the only ones a deployment needs to run."""
        return np.flatnonzero(self.member_weights())

    def to_torch(self, keep: np.ndarray | list[int] | None = None) -> nn.Module:
        """A module computing predict_margin: member margins (B, len(keep)), float64 -> margin (B,), float64.

        keep: the member indices whose columns the module takes, in that order
        (default: all). It must hold every used member; leaving out a member
        with zero weight changes nothing.
        """
        if keep is None:
            keep = np.arange(self.n_members_)
        keep = np.asarray(keep, dtype=np.int64)
        if keep.ndim != 1 or len(keep) == 0 or not ((keep >= 0) & (keep < self.n_members_)).all():
            raise EnsembleError(f"keep must list member indices in [0, {self.n_members_}), got {keep.tolist()}")
        missing = np.setdiff1d(self.used_members(), keep)
        if len(missing):
            raise EnsembleError(
                f"keep={keep.tolist()} leaves out member(s) {missing.tolist()}, which the {self.name!r} combiner "
                "weighs; keep every index of used_members()"
            )
        return self._torch_module(keep)

    def _torch_module(self, keep: np.ndarray) -> nn.Module:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """{"name", "params", "state"}: learned values as ints, floats and lists."""
        state = {key: plain(getattr(self, key)) for key in self._state_keys}
        return {"name": self.name, "params": plain(self.get_params()), "state": state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Combiner:
        """A fitted combiner from to_dict()'s output."""
        try:
            est = cls(**d["params"])
            for key in cls._state_keys:
                value = d["state"][key]
                setattr(est, key, np.asarray(value) if isinstance(value, list) else value)
        except (KeyError, TypeError) as e:
            raise EnsembleError(f"cannot rebuild a {cls.name!r} combiner from {d!r}: {e}") from e
        return est


class MeanEnsemble(_Combiner):
    """The mean of member probabilities; predict_margin is its logit. Learns only the member count."""

    name = "mean"
    _state_keys = ("n_members_",)

    def __init__(self) -> None:
        pass

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, groups: np.ndarray | None = None) -> MeanEnsemble:
        self.n_members_ = int(check_member_matrix(X).shape[1])
        return self

    def predict_margin(self, X: np.ndarray) -> np.ndarray:
        X = check_member_matrix(X, n_members=self.n_members_)
        return pooled_margin(X, self.member_weights())

    def member_weights(self) -> np.ndarray:
        return np.full(self.n_members_, 1.0 / self.n_members_)

    def _torch_module(self, keep: np.ndarray) -> nn.Module:
        return _PooledMarginModule(self.member_weights()[keep])


class GreedyEnsemble(_Combiner):
    """Greedy forward selection with replacement (Caruana et al., 2004) minimising log-loss.

    Start from the single member with the lowest log-loss (the paper's
    "sorted ensemble initialisation" with one model), then `n_iter - 1` times
    add the member, already chosen or not, whose addition gives the lowest
    log-loss of the averaged probability. As in the paper the ensemble kept is
    the best prefix of that path, not necessarily the last. weights_ are the
    member counts in that prefix divided by its length. Exact ties between
    candidates (e.g. duplicated members) are broken at random with `seed`.

    Learned: weights_ (n_members,), selected_ (every pick, in order),
    scores_ (log-loss after each pick), best_iter_ (picks kept).
    """

    name = "greedy"
    _state_keys = ("n_members_", "weights_", "selected_", "scores_", "best_iter_")
    _parameter_constraints = {"n_iter": [Interval(int, 1, None)]}

    def __init__(self, *, n_iter: int = 50, seed: int = 0) -> None:
        self.n_iter = n_iter
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> GreedyEnsemble:
        validate_params(self)
        y = check_labels(y)
        X = check_member_matrix(X, len(y))
        rng = np.random.default_rng(self.seed)
        pos = y[:, None] == 1
        # log P(y | member) per sample and member; the ensemble's is log of the mean of exp.
        log_p_pos, log_p_neg = log_expit(X), log_expit(-X)
        sum_pos = np.full(len(y), -np.inf)  # log of the sum of chosen members' P(positive)
        sum_neg = np.full(len(y), -np.inf)
        selected, scores = [], []
        for k in range(self.n_iter):
            cand_pos = np.logaddexp(sum_pos[:, None], log_p_pos) - np.log(k + 1)
            cand_neg = np.logaddexp(sum_neg[:, None], log_p_neg) - np.log(k + 1)
            losses = -np.where(pos, cand_pos, cand_neg).mean(axis=0)
            tied = np.flatnonzero(losses <= losses.min())
            j = int(tied[0] if len(tied) == 1 else rng.choice(tied))
            sum_pos = np.logaddexp(sum_pos, log_p_pos[:, j])
            sum_neg = np.logaddexp(sum_neg, log_p_neg[:, j])
            selected.append(j)
            scores.append(float(losses[j]))
        self.n_members_ = int(X.shape[1])
        self.selected_ = np.asarray(selected, dtype=np.int64)
        self.scores_ = np.asarray(scores)
        self.best_iter_ = int(np.argmin(self.scores_)) + 1
        counts = np.bincount(self.selected_[: self.best_iter_], minlength=self.n_members_)
        self.weights_ = counts / counts.sum()
        return self

    def predict_margin(self, X: np.ndarray) -> np.ndarray:
        X = check_member_matrix(X, n_members=self.n_members_)
        return pooled_margin(X, self.weights_)

    def member_weights(self) -> np.ndarray:
        return np.asarray(self.weights_, dtype=np.float64)

    def _torch_module(self, keep: np.ndarray) -> nn.Module:
        # a member left out has weight 0, so pooling over the kept ones is the same sum
        return _PooledMarginModule(self.member_weights()[keep])


class StackingEnsemble(_Combiner):
    """A scikit-learn LogisticRegression meta-learner on member margins.

    fit() trains the final meta-learner on all of X: the members' holdout
    predictions are already out of sample for the members. To score or
    calibrate the stacker itself, use out_of_fold_predict_margin, which refits
    it on K-1 group folds and predicts the remaining fold (`n_splits`, `seed`).

    Learned: coef_ (n_members,), intercept_.
    """

    name = "stack"
    _state_keys = ("n_members_", "coef_", "intercept_")
    _parameter_constraints = {"C": [Interval(Real, 0, None, closed="neither")]}

    def __init__(self, *, C: float = 1.0, n_splits: int = 5, seed: int = 0) -> None:
        self.C = C
        self.n_splits = n_splits
        self.seed = seed

    def _meta(self) -> LogisticRegression:
        validate_params(self)
        return LogisticRegression(C=self.C, max_iter=1000)

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> StackingEnsemble:
        y = check_labels(y)
        X = check_member_matrix(X, len(y))
        meta = self._meta().fit(X, y)
        self.n_members_ = int(X.shape[1])
        self.coef_ = meta.coef_[0].astype(np.float64)
        self.intercept_ = float(meta.intercept_[0])
        return self

    def predict_margin(self, X: np.ndarray) -> np.ndarray:
        X = check_member_matrix(X, n_members=self.n_members_)
        # LogisticRegression.decision_function, from the stored coefficients
        return X @ self.coef_ + self.intercept_

    def member_weights(self) -> np.ndarray:
        return np.asarray(self.coef_, dtype=np.float64)

    def _torch_module(self, keep: np.ndarray) -> nn.Module:
        return _LinearMarginModule(self.member_weights()[keep], self.intercept_)

    def out_of_fold_predict_margin(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """Margins for X from clones fitted on the other StratifiedGroupKFold folds; self is left as is."""
        y = check_labels(y)
        X = check_member_matrix(X, len(y))
        groups = check_groups(groups, len(y))
        out = np.full(len(y), np.nan)
        splits = crossfit_splits(
            y, groups, n_splits=self.n_splits, seed=self.seed, data_name="the stacker's fitting data"
        )
        for fit_idx, score_idx in splits:
            out[score_idx] = clone(self).fit(X[fit_idx], y[fit_idx]).predict_margin(X[score_idx])
        return out


COMBINERS: dict[str, type[_Combiner]] = {cls.name: cls for cls in (MeanEnsemble, GreedyEnsemble, StackingEnsemble)}


def make_combiner(method: str) -> _Combiner:
    """An unfitted combiner by name: "mean", "greedy" or "stack"."""
    if method not in COMBINERS:
        raise EnsembleError(f"unknown ensemble method {method!r}; choose one of {sorted(COMBINERS)}")
    return COMBINERS[method]()


def combiner_from_dict(d: dict[str, Any]) -> _Combiner:
    """A fitted combiner from any combiner's to_dict()."""
    name = d.get("name") if isinstance(d, dict) else None
    if name not in COMBINERS:
        raise EnsembleError(f"cannot rebuild a combiner: name {name!r} is not one of {sorted(COMBINERS)}")
    return COMBINERS[name].from_dict(d)
