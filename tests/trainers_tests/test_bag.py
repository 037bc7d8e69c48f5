"""Group k-fold bags: folds that keep patients whole, out-of-fold predictions that are honest, resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tests_support import tiny_config

from trainers import SplitError, discover, load_model, predict_margins, prepare_data, read_bag, split_dataset, train_bag
from trainers.bag import fold_checkpoints
from trainers.inference import Preprocessing


def test_folds_cover_the_pool_once_keep_groups_whole_and_share_the_holdout(synthetic_data):
    ds = discover(data=synthetic_data)
    single = split_dataset(ds, val_fraction=0.2, holdout_fraction=0.2, seed=3)
    folds = split_dataset(ds, val_fraction=0.2, holdout_fraction=0.2, seed=3, cv_folds=4)
    np.testing.assert_array_equal(np.sort(single.holdout), np.sort(folds.holdout))  # one holdout for both modes
    pooled = np.concatenate(folds.folds)
    assert sorted(pooled.tolist() + folds.holdout.tolist()) == list(range(len(ds)))
    group_fold = {}
    for k, f in enumerate(folds.folds):
        assert set(ds.binary_labels[f]) == {0, 1}
        for i in f:
            assert group_fold.setdefault(ds.groups[i], k) == k, "a group in two folds"
    fold2 = folds.for_fold(2)
    assert not set(fold2.train) & set(fold2.val) and set(fold2.val) == set(folds.folds[2])


def test_more_folds_than_groups_of_a_class_is_a_named_error(synthetic_data):
    ds = discover(data=synthetic_data)  # 12 groups per class, ~10 outside the holdout
    with pytest.raises(SplitError, match=r"cannot make 11 cross-validation folds: class 'CT_\w+' has only \d+ "
                                         r"group\(s\) outside the holdout.*use cv_folds <= \d+"):
        split_dataset(ds, val_fraction=0.2, holdout_fraction=0.2, seed=0, cv_folds=11)


def test_bag_out_of_fold_predictions_come_from_the_model_that_never_saw_them(tmp_path, synthetic_data):
    cfg = tiny_config(synthetic_data, cv_folds=3, epochs=3, patience=1, num_threads=1)
    seen = []
    result = train_bag(cfg, tmp_path / "bag", on_fold=lambda r: seen.append((r.fold, r.folds_done, r.metrics)))
    assert [s[:2] for s in seen] == [(0, 1), (1, 2), (2, 3)] and result.folds_done == 3
    bag = read_bag(tmp_path / "bag")
    data = prepare_data(cfg)
    dev = {data.dataset.ids[i] for f in data.split.folds for i in f}
    assert set(bag["oof"]) == dev and set(bag["holdout"]) == {data.dataset.ids[i] for i in data.split.holdout}
    assert bag["metrics"]["folds_done"] == 3 and 0.0 <= bag["metrics"]["oof_auc"] <= 1.0
    position = {sample_id: i for i, sample_id in enumerate(data.dataset.ids)}
    for k, folder in enumerate(fold_checkpoints(tmp_path / "bag")):
        model, meta = load_model(folder)
        assert meta["epoch"] == 3, "a fold keeps its last epoch, whatever patience says"
        fold_ids = sorted(i for i, row in bag["oof"].items() if row["fold"] == k)
        assert fold_ids == sorted(data.dataset.ids[i] for i in data.split.folds[k])
        assert meta["split"]["counts"]["train"] == len(dev) - len(fold_ids), "it trained on the other folds only"
        images = np.asarray(data.images.array[[position[i] for i in fold_ids]])
        margins = predict_margins(model, images, Preprocessing.from_dict(meta["preprocessing"]),
                                  device=torch.device("cpu"))
        np.testing.assert_allclose(margins, [bag["oof"][i]["logit"] for i in fold_ids], atol=1e-4)


def test_an_interrupted_bag_resumes_with_the_next_fold(tmp_path, synthetic_data):
    cfg = tiny_config(synthetic_data, cv_folds=3, epochs=1, num_threads=1)
    first = train_bag(cfg, tmp_path / "bag", on_fold=lambda r: r.fold == 0)
    assert first.folds_done == 1
    weights = (tmp_path / "bag" / "fold_0" / "model.safetensors").read_bytes()
    with pytest.raises(Exception, match="already holds a bag; pass --resume"):
        train_bag(cfg, tmp_path / "bag")
    with pytest.raises(Exception, match="config key 'lr' was 0.003, now 0.1"):
        train_bag(cfg.replace(lr=0.1), tmp_path / "bag", resume=True)
    done = train_bag(cfg, tmp_path / "bag", resume=True)
    assert done.folds_done == 3 and len(read_bag(tmp_path / "bag")["oof"]) > 0
    assert (tmp_path / "bag" / "fold_0" / "model.safetensors").read_bytes() == weights, "fold 0 was not retrained"


def test_a_single_model_run_refuses_a_k_fold_config(tmp_path, synthetic_data):
    from trainers import ConfigError, train

    with pytest.raises(ConfigError, match="cv_folds > 1 trains one model per fold: use trainers.train_bag"):
        train(tiny_config(synthetic_data, cv_folds=3, epochs=1), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"'fold' 3 needs cv_folds > 1 and must be in \[0, cv_folds - 1\]"):
        tiny_config(synthetic_data, cv_folds=3, fold=3)
