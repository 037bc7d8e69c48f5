"""Train / validation / holdout by stratified group split: no patient in two splits."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from .data import Dataset
from .errors import SplitError

__all__ = ["Split", "split_dataset", "SPLITS"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "holdout")


@dataclass(frozen=True)
class Split:
    """Index arrays into the dataset, one per split (holdout may be empty)."""

    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def ids(self, dataset: Dataset) -> dict[str, list[str]]:
        return {name: [dataset.ids[i] for i in self[name]] for name in SPLITS}


def split_dataset(
    dataset: Dataset,
    *,
    val_fraction: float,
    holdout_fraction: float,
    seed: int,
    usable: np.ndarray | None = None,
) -> Split:
    """Deterministic for a seed. Holdout is cut first, then validation from the rest.

    StratifiedGroupKFold keeps each group whole and class shares close to the
    whole set's; a fraction f is taken as one fold of round(1/f) folds.
    """
    idx = np.arange(len(dataset)) if usable is None else np.flatnonzero(usable)
    labels = dataset.labels[idx]
    groups = np.asarray(dataset.groups)[idx]
    rest = np.arange(len(idx))
    holdout = np.array([], dtype=np.int64)
    if holdout_fraction > 0:
        rest, holdout = _one_fold(labels, groups, rest, holdout_fraction, seed, "holdout", dataset)
    # rescale so val is val_fraction of the whole set, not of what holdout left
    val_share = val_fraction / (1.0 - holdout_fraction)
    train, val = _one_fold(labels, groups, rest, val_share, seed + 1, "val", dataset)
    split = Split(train=idx[train], val=idx[val], holdout=idx[holdout])
    _check_disjoint(split, dataset)
    for name in SPLITS:
        part = split[name]
        counts = Counter(dataset.classes[label] for label in dataset.labels[part])
        n_groups = len({dataset.groups[i] for i in part})
        log.info(
            "split %-7s %4d images, %4d groups, %s",
            name, len(part), n_groups, ", ".join(f"{c}: {counts.get(c, 0)}" for c in dataset.classes),
        )
    return split


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
    for class_index in np.unique(labels):
        n_groups = len(set(pool_groups[pool_labels == class_index]))
        if n_groups < n_splits:
            raise SplitError(
                f"cannot stratify the {name} split: class {dataset.classes[class_index]!r} has "
                f"{n_groups} group(s), fewer than the {n_splits} folds a {name} fraction of "
                f"{fraction:.2f} needs; add data, lower {name}_fraction, or check group_regex"
            )
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


def _check_disjoint(split: Split, dataset: Dataset) -> None:
    seen: dict[str, str] = {}
    for name in SPLITS:
        for i in split[name]:
            group = dataset.groups[i]
            if seen.setdefault(group, name) != name:
                raise SplitError(f"group {group!r} fell into both {seen[group]} and {name}")
