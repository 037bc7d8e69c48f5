"""Train / validation / holdout by stratified group split: no patient in two splits.

With `cv_folds` K > 1 the development pool (everything but the holdout) is cut into K
stratified group folds instead of one validation split; fold k's model trains on the
other K - 1 folds and predicts fold k (its out-of-fold part, kept in `val`).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from .discover import Dataset
from ..errors import SplitError

__all__ = ["Split", "split_dataset", "SPLITS"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "holdout")


@dataclass(frozen=True)
class Split:
    """Index arrays into the dataset, one per split (holdout may be empty).

    folds: with cross-validation, the K folds of the development pool (train + val of
    every fold); `val` is then the out-of-fold part of `fold`, or empty for the whole pool.
    """

    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray
    folds: tuple[np.ndarray, ...] = ()
    fold: int | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def ids(self, dataset: Dataset) -> dict[str, list[str]]:
        return {name: [dataset.ids[i] for i in self[name]] for name in SPLITS}

    def for_fold(self, k: int) -> "Split":
        """Fold k of a cross-validated split: train on the other folds, predict (val) fold k."""
        if not self.folds:
            raise SplitError("this split has no cross-validation folds (cv_folds is 1)")
        if not 0 <= k < len(self.folds):
            raise SplitError(f"fold {k} does not exist; the split has folds 0..{len(self.folds) - 1}")
        train = np.sort(np.concatenate([f for j, f in enumerate(self.folds) if j != k]))
        return Split(train=train, val=self.folds[k], holdout=self.holdout, folds=self.folds, fold=k)

    def partition(self, dataset: Dataset) -> dict[str, list[str]]:
        """What every fold model of one sweep must share: the holdout and the fold of each id."""
        if not self.folds:
            return self.ids(dataset)
        return {"holdout": [dataset.ids[i] for i in self.holdout],
                **{f"fold_{k}": [dataset.ids[i] for i in f] for k, f in enumerate(self.folds)}}


def split_dataset(
    dataset: Dataset,
    *,
    val_fraction: float,
    holdout_fraction: float,
    seed: int,
    usable: np.ndarray | None = None,
    cv_folds: int = 1,
    fold: int | None = None,
    describe: bool = True,
) -> Split:
    """Deterministic for a seed. Holdout is cut first, then validation (or K folds) from the rest.

    StratifiedGroupKFold keeps each group whole and class shares close to the
    whole set's; a fraction f is taken as one fold of round(1/f) folds. The holdout
    does not depend on cv_folds, so single-split and k-fold runs share it. `describe`
    logs each part's size, groups and classes (off for a split made only to be inspected).
    """
    idx = np.arange(len(dataset)) if usable is None else np.flatnonzero(usable)
    labels = dataset.labels[idx]
    groups = np.asarray(dataset.groups)[idx]
    rest = np.arange(len(idx))
    holdout = np.array([], dtype=np.int64)
    if holdout_fraction > 0:
        rest, holdout = _one_fold(labels, groups, rest, holdout_fraction, seed, "holdout", dataset)
    if cv_folds > 1:
        folds = _k_folds(labels, groups, rest, cv_folds, seed + 1, dataset)
        split = Split(train=idx[rest], val=np.array([], dtype=np.int64), holdout=idx[holdout],
                      folds=tuple(np.sort(idx[f]) for f in folds))
        _check_disjoint(split, dataset)
        if describe:
            _log_parts({"holdout": split.holdout, **{f"fold {k}": f for k, f in enumerate(split.folds)}}, dataset)
        return split.for_fold(fold) if fold is not None else split
    # rescale so val is val_fraction of the whole set, not of what holdout left
    val_share = val_fraction / (1.0 - holdout_fraction)
    train, val = _one_fold(labels, groups, rest, val_share, seed + 1, "val", dataset)
    split = Split(train=idx[train], val=idx[val], holdout=idx[holdout])
    _check_disjoint(split, dataset)
    if describe:
        _log_parts({name: split[name] for name in SPLITS}, dataset)
    return split


def _log_parts(parts: dict[str, np.ndarray], dataset: Dataset) -> None:
    for name, part in parts.items():
        counts = Counter(dataset.classes[label] for label in dataset.labels[part])
        n_groups = len({dataset.groups[i] for i in part})
        log.info(
            "split %-7s %4d images, %4d groups, %s",
            name, len(part), n_groups, ", ".join(f"{c}: {counts.get(c, 0)}" for c in dataset.classes),
        )


def _one_fold(
    labels: np.ndarray,
    groups: np.ndarray,
    pool: np.ndarray,
    fraction: float,
    seed: int,
    name: str,
    dataset: Dataset,
) -> tuple[np.ndarray, np.ndarray]:
    n_splits = max(2, round(1.0 / fraction))
    pool_labels, pool_groups = labels[pool], groups[pool]
    _need_groups(labels, pool_labels, pool_groups, n_splits, lambda c, n: (
        f"cannot stratify the {name} split: class {c!r} has {n} group(s), fewer than the {n_splits} folds a "
        f"{name} fraction of {fraction:.2f} needs; add data, lower {name}_fraction, or check group_regex"), dataset)
    missing = set(np.unique(labels)) - set(np.unique(pool_labels))
    if missing:
        raise SplitError(f"cannot stratify the {name} split: a class has no images left to split")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, cut = next(cv.split(np.zeros(len(pool)), pool_labels, pool_groups))
    if len(np.unique(pool_labels[cut])) < len(np.unique(pool_labels)):
        raise SplitError(
            f"the {name} split got images of one class only; add data or lower {name}_fraction"
        )
    return pool[keep], pool[cut]


def _need_groups(labels, pool_labels, pool_groups, needed: int, message, dataset: Dataset) -> None:
    """Every class needs `needed` groups in the pool; `message(class_name, n_groups)` says otherwise."""
    for class_index in np.unique(labels):
        n_groups = len(set(pool_groups[pool_labels == class_index]))
        if n_groups < needed:
            raise SplitError(message(dataset.classes[class_index], n_groups))


def _k_folds(
    labels: np.ndarray, groups: np.ndarray, pool: np.ndarray, k: int, seed: int, dataset: Dataset
) -> list[np.ndarray]:
    """K stratified group folds of `pool`, each holding both classes."""
    pool_labels, pool_groups = labels[pool], groups[pool]
    _need_groups(labels, pool_labels, pool_groups, k, lambda c, n: (
        f"cannot make {k} cross-validation folds: class {c!r} has only {n} group(s) outside the holdout, and "
        f"each fold needs one; use cv_folds <= {n}, add data, or check group_regex"), dataset)
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [pool[cut] for _, cut in cv.split(np.zeros(len(pool)), pool_labels, pool_groups)]
    for j, f in enumerate(folds):
        if len(np.unique(labels[f])) < 2:
            raise SplitError(f"cross-validation fold {j} of {k} got images of one class only; use fewer cv_folds")
    return folds


def _check_disjoint(split: Split, dataset: Dataset) -> None:
    seen: dict[str, str] = {}
    parts = {"holdout": split.holdout, **{f"fold {k}": f for k, f in enumerate(split.folds)}} if split.folds else {
        name: split[name] for name in SPLITS}
    for name, part in parts.items():
        for i in part:
            group = dataset.groups[i]
            if seen.setdefault(group, name) != name:
                raise SplitError(f"group {group!r} fell into both {seen[group]} and {name}")
