from __future__ import annotations

import pytest

from trainers import ConfigError, TrainConfig, merge_config


def test_yaml_is_merged_under_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: resnet18\nlr: 1e-4\nepochs: 3\n")
    cfg = merge_config(path, {"epochs": 7, "seed": None})
    assert (cfg.model, cfg.lr, cfg.epochs, cfg.seed) == ("resnet18", 1e-4, 7, 0)


@pytest.mark.parametrize(
    "text, match",
    [
        ("epoch: 3\n", r"unknown key 'epoch'; allowed keys: .*epochs"),
        ("lr: fast\n", r"'lr' must be float, got 'fast'"),
        ("epochs: 0\n", r"'epochs' must be at least 1, got 0"),
        ("optimizer: adam\n", r"'optimizer' must be one of adamw, sgd, got 'adam'"),
        ("monitor: auc\n", r"'monitor' must be one of val_auc"),
        ("val_fraction: 0.7\n", r"'val_fraction' must be in \[0, 0.5\), got 0.7"),
        ("batch_size: 8.5\n", r"'batch_size' must be int, got 8.5"),
        ("- a\n- b\n", r"must hold a mapping"),
        ("model: [unclosed\n", r"not valid YAML"),
    ],
)
def test_bad_config_is_refused_with_the_key_and_value(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        merge_config(path)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        merge_config(tmp_path / "nope.yaml")


def test_data_and_manifest_are_exclusive():
    with pytest.raises(ConfigError, match="either 'data'.*or 'manifest'"):
        TrainConfig(data="a", manifest="b.csv")


def test_unknown_timm_model_suggests_close_names():
    from trainers import create_model

    with pytest.raises(ConfigError, match="'resnet81' is not a timm model; did you mean"):
        create_model("resnet81")
