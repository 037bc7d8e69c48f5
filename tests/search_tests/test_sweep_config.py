from __future__ import annotations

import dataclasses

import optuna
import pytest

from search import load_sweep_config, parse_sweep_config, smoke_test, suggest
from trainers import ConfigError, TrainConfig
from trainers.config import SPLIT_KEYS

EXAMPLE = "configs/sweep_covid_ct.yaml"


def test_example_sweep_config_is_valid_and_searches_pretrained_backbones(request):
    cfg = load_sweep_config(request.config.rootpath / EXAMPLE)
    names = {s.name: s for s in cfg.space}
    assert names["pretrained"].values == (True, False)
    assert "efficientnet_lite0" in names["model"].values
    assert cfg.image_sizes() == [128, 160]
    assert cfg.base_train_config().epochs == cfg.asha.max_epochs
    small = smoke_test(cfg)
    assert small.num_samples <= 4 and small.asha.max_epochs == 2 and small.image_sizes() == [64]


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"metrc": "val_auc"}, r"unknown key 'metrc'; allowed keys: .*metric"),
        ({"metric": "auc"}, r"'metric' must be one of val_auc"),
        ({"mode": "up"}, r"'mode' must be max or min, got 'up'"),
        ({"num_samples": 0}, r"'num_samples' must be at least 1, got 0"),
        ({"num_samples": "ten"}, r"'num_samples' must be int, got 'ten'"),
        ({"asha": {"grace_period": 20}}, r"'asha.grace_period' must be in \[1, asha.max_epochs=12\], got 20"),
        ({"asha": {"max_epoch": 3}}, r"unknown key 'asha.max_epoch'"),
        ({"train": {"lr": "fast"}}, r"train: 'lr' must be float, got 'fast'"),
        ({"train": {"epochs": 3}}, r"train.epochs is set by the sweep \(asha.max_epochs"),
        ({"space": {"learning_rate": {"loguniform": [1e-4, 1e-2]}}}, r"space.learning_rate: 'learning_rate' is not a training setting"),
        ({"space": {"lr": {"loguniform": [0, 1e-2]}}}, r"space.lr.loguniform: log bounds must be above 0"),
        ({"space": {"lr": {"uniform": [0.1, 0.01]}}}, r"space.lr.uniform: low must be below high"),
        ({"space": {"lr": {"normal": [0, 1]}}}, r"space.lr: needs exactly one of choice, uniform"),
        ({"space": {"optimizer": {"choice": ["adamw", "adam"]}}}, r"space.optimizer: choice 'adam' is not allowed"),
        ({"space": {"image_size": {"int": [64, 128]}}}, r"space.image_size: must be a choice"),
        ({"space": {"momentum": {"uniform": [0.8, 0.9], "when": {"optimizer": "sgd"}}}}, r"'optimizer' must be a parameter listed before 'momentum'"),
    ],
)
def test_bad_sweep_config_names_the_key_or_value(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse_sweep_config(raw)


def test_define_by_run_samples_conditionals_only_when_they_apply():
    cfg = parse_sweep_config({
        "space": {
            "optimizer": {"choice": ["adamw", "sgd"]},
            "momentum": {"uniform": [0.8, 0.95], "when": {"optimizer": "sgd"}},
            "lr": {"loguniform": [1e-4, 1e-2]},
            "batch_size": {"choice": [16, 32]},
            "unfreeze_blocks": {"int": [1, 3]},
        }
    })
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(20):
        trial = study.ask()
        params = suggest(trial, cfg.space, fixed={})
        seen.append(params)
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert 1e-4 <= params["lr"] <= 1e-2 and params["batch_size"] in (16, 32)
        assert params["unfreeze_blocks"] in (1, 2, 3)
        study.tell(trial, 0.0)
    assert {p["optimizer"] for p in seen} == {"adamw", "sgd"}


@pytest.mark.parametrize("key", SPLIT_KEYS)
def test_a_setting_that_changes_the_split_cannot_be_searched(key):
    remedy = {"cv_folds": "the top-level cv_folds", "fold": r"remove it \(every trial trains every fold\)"}.get(
        key, "set it once under train: instead")
    with pytest.raises(ConfigError, match=rf"s\.yaml: space\.{key}: '{key}' cannot be searched .*trials must share one "
                                          rf"split .*same out-of-fold set and judged on the same holdout; .*{remedy}"):
        parse_sweep_config({"space": {"lr": {"loguniform": [1e-4, 1e-2]}, key: {"choice": [0, 1]}}}, source="s.yaml")
    with pytest.raises(ConfigError, match=rf"first_trials\[1\]\.{key}: '{key}' cannot be searched .*{remedy}"):
        parse_sweep_config({"space": {"lr": {"loguniform": [1e-4, 1e-2]}},
                            "first_trials": [{"lr": 1e-3}, {"lr": 1e-3, key: 1}]}, source="s.yaml")


def test_split_settings_are_fixed_under_train_and_name_real_training_settings():
    assert set(SPLIT_KEYS) <= {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = parse_sweep_config({"train": {"split_seed": 3, "val_fraction": 0.2, "merge_duplicates": False},
                              "space": {"lr": {"loguniform": [1e-4, 1e-2]}}, "first_trials": [{"lr": 1e-3}]})
    base = cfg.base_train_config()
    assert (base.split_seed, base.val_fraction, base.merge_duplicates) == (3, 0.2, False)


def test_default_sweep_holds_the_plain_recipe_and_starts_on_every_backbone() -> None:
    cfg = load_sweep_config("default")
    space = {s.name: s for s in cfg.space}
    assert 0.0 in space["aug_strength"].values and 0 in space["freeze_epochs"].values
    assert 0.0 in space["label_smoothing"].values and space["lr"].values[0] <= 3e-4
    assert {t["model"] for t in cfg.first_trials} == set(space["model"].values)
    plainest = cfg.first_trials[0]
    assert (plainest["aug_strength"], plainest["freeze_epochs"], plainest["label_smoothing"]) == (0.0, 0, 0.0)
    for trial in cfg.first_trials:  # each first trial is a full point of the space
        assert set(trial) == set(space)
        TrainConfig.from_dict({**cfg.base_train_config().to_dict(), **trial})
