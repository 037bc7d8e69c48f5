"""What a sweep checks before Ray starts: its data, found and split as every trial will split it.

A missing folder, a single class, no images or fewer patient groups per class than
`cv_folds` is named in one line here, not after Ray has started and a trial has failed.
The file hashes computed here are cached, so the sweep's own preparation reuses them.
"""
from __future__ import annotations

from trainers.data import find_data, merge_duplicate_groups, split_dataset

from .config import SweepConfig

__all__ = ["check_data"]


def check_data(cfg: SweepConfig) -> None:
    """Discover the sweep's data and split it as every trial will; raises the data's own error."""
    base = cfg.base_train_config()  # progress off, as in every trial
    found = find_data(base)
    dataset = merge_duplicate_groups(found.dataset, found.duplicates, base)
    split_dataset(dataset, val_fraction=base.val_fraction, holdout_fraction=base.holdout_fraction,
                  seed=base.split_seed, usable=found.hashed.keep, cv_folds=base.cv_folds,
                  describe=False)  # each trial describes its own split
