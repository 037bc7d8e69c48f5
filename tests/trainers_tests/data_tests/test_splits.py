from __future__ import annotations

import numpy as np
import pytest

from trainers import SplitError, discover, split_dataset
from trainers.data.splits import SPLITS


def test_no_group_in_two_splits_and_classes_in_each(synthetic_data):
    ds = discover(data=synthetic_data)
    split = split_dataset(ds, val_fraction=0.2, holdout_fraction=0.2, seed=3)
    groups = {name: {ds.groups[i] for i in split[name]} for name in SPLITS}
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["holdout"]
    assert not groups["val"] & groups["holdout"]
    assert sum(len(split[n]) for n in SPLITS) == len(ds)
    for name in SPLITS:
        assert set(ds.binary_labels[split[name]]) == {0, 1}, name


def test_split_is_deterministic_per_seed(synthetic_data):
    ds = discover(data=synthetic_data)
    a = split_dataset(ds, val_fraction=0.2, holdout_fraction=0.2, seed=1)
    b = split_dataset(ds, val_fraction=0.2, holdout_fraction=0.2, seed=1)
    c = split_dataset(ds, val_fraction=0.2, holdout_fraction=0.2, seed=2)
    assert all(np.array_equal(a[n], b[n]) for n in SPLITS)
    assert not all(np.array_equal(a[n], c[n]) for n in SPLITS)


def test_split_that_cannot_stratify_names_the_class_and_counts(synthetic_data):
    ds = discover(data=synthetic_data, group_regex=r"^(ct_covid\d+|ct_noncovid)")  # 1 NonCOVID group
    with pytest.raises(SplitError, match=r"class 'CT_NonCOVID' has 1 group\(s\), fewer than the 5 folds"):
        split_dataset(ds, val_fraction=0.2, holdout_fraction=0.2, seed=0)


def test_holdout_may_be_empty(synthetic_data):
    ds = discover(data=synthetic_data)
    split = split_dataset(ds, val_fraction=0.25, holdout_fraction=0.0, seed=0)
    assert len(split.holdout) == 0 and len(split.train) + len(split.val) == len(ds)
