from __future__ import annotations

import json
from importlib import metadata

import numpy as np
import pytest
import torch
from tests_support import tiny_config

from trainers import CheckpointError, create_model, load_weights, predict_margins, read_meta, train
from trainers.inference import Preprocessing
from trainers.data.prepare import prepare_data


def test_learns_generated_images_to_high_auc(tmp_path, synthetic_data):
    result = train(tiny_config(synthetic_data), tmp_path / "run")
    assert result.best_metrics["val_auc"] > 0.9
    assert result.epochs_run == 6
    for name in ("config.yaml", "history.csv", "metrics.json", "best/model.safetensors", "best/checkpoint.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert not (tmp_path / "run" / "audit.json").exists(), "the audit is the calling command's, at its door"


def test_same_seed_same_metrics(tmp_path, synthetic_data):
    cfg = tiny_config(synthetic_data, epochs=2)
    a = train(cfg, tmp_path / "a").history
    b = train(cfg, tmp_path / "b").history
    keys = ["train_loss", "val_loss", "val_auc", "val_accuracy"]
    assert [[row[k] for k in keys] for row in a] == [[row[k] for k in keys] for row in b]


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path, synthetic_data):
    cfg = tiny_config(synthetic_data, epochs=2)
    train(cfg, tmp_path / "run")
    meta = read_meta(tmp_path / "run" / "best")
    assert meta["classes"] == ["CT_COVID", "CT_NonCOVID"] and meta["positive"] == "CT_COVID"
    assert set(meta["predictions"]) == {"val", "holdout"}
    assert meta["versions"]["torch"] == metadata.version("torch")
    model = create_model(meta["model"])
    model.load_state_dict(load_weights(tmp_path / "run" / "best"))
    data = prepare_data(cfg)
    ids = list(meta["predictions"]["val"])
    index = [data.dataset.ids.index(i) for i in ids]
    margins = predict_margins(model, np.asarray(data.images.array[index]),
                              Preprocessing.from_dict(meta["preprocessing"]), device=torch.device("cpu"))
    stored = np.array([meta["predictions"]["val"][i]["logit"] for i in ids])
    np.testing.assert_allclose(margins, stored, atol=1e-5)


def test_hook_sees_every_epoch_and_can_stop(tmp_path, synthetic_data):
    seen = []

    def hook(report):
        seen.append((report.epoch, report.metrics["val_auc"], (report.checkpoint_dir / "model.safetensors").is_file()))
        return report.epoch == 2

    result = train(tiny_config(synthetic_data), tmp_path / "run", on_epoch=hook)
    assert [s[0] for s in seen] == [1, 2] and all(s[2] for s in seen)
    assert result.stop_reason == "stopped by caller" and result.epochs_run == 2


def test_early_stopping_with_patience(tmp_path, synthetic_data):
    result = train(tiny_config(synthetic_data, epochs=30, patience=2, monitor="val_loss", lr=0.3), tmp_path / "run")
    assert result.epochs_run < 30 and "early stopping" in result.stop_reason


def test_resume_continues_where_it_stopped(tmp_path, synthetic_data):
    full = train(tiny_config(synthetic_data, epochs=4), tmp_path / "full").history
    train(tiny_config(synthetic_data, epochs=4), tmp_path / "cut", on_epoch=lambda r: r.epoch == 2)
    with pytest.raises(CheckpointError, match="already holds a run; pass --resume"):
        train(tiny_config(synthetic_data, epochs=4), tmp_path / "cut")
    resumed = train(tiny_config(synthetic_data, epochs=4), tmp_path / "cut", resume=True).history
    assert len(resumed) == 4
    assert resumed[-1]["val_loss"] == pytest.approx(full[-1]["val_loss"], rel=1e-5)


def test_resume_with_another_config_is_refused(tmp_path, synthetic_data):
    train(tiny_config(synthetic_data, epochs=1), tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"config key 'lr' was 0.003, now 0.1"):
        train(tiny_config(synthetic_data, epochs=1, lr=0.1), tmp_path / "run", resume=True)
    # the cosine schedule is shaped by epochs: a resumed run with another count is another run
    with pytest.raises(CheckpointError, match=r"config key 'epochs' was 1, now 2"):
        train(tiny_config(synthetic_data, epochs=2), tmp_path / "run", resume=True)


def test_truncated_checkpoint_is_named(tmp_path, synthetic_data):
    train(tiny_config(synthetic_data, epochs=1), tmp_path / "run")
    weights = tmp_path / "run" / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated or damaged"):
        train(tiny_config(synthetic_data, epochs=1), tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "best" / "model.safetensors").stat().st_size > 1000, "best is untouched"
    (tmp_path / "run" / "best" / "checkpoint.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(CheckpointError, match=r"lacks key\(s\) \['format_version'"):
        read_meta(tmp_path / "run" / "best")


def test_two_phase_fine_tuning_freezes_then_unfreezes(tmp_path, synthetic_data):
    cfg = tiny_config(synthetic_data, epochs=2, freeze_epochs=1, unfreeze="top", unfreeze_blocks=1,
                      backbone_lr_scale=0.1, layer_decay=0.8, freeze_bn=True)
    phases, weights = [], {}

    def hook(report):
        phases.append(report.metrics["epoch"])
        weights[report.epoch] = load_weights(report.checkpoint_dir)

    train(cfg, tmp_path / "run", on_epoch=hook)
    assert phases == [1, 2]
    # train() seeds torch, then creates the model: the same seed gives its initial weights
    torch.manual_seed(cfg.seed)
    initial = create_model(cfg.model, drop_rate=cfg.drop_rate).state_dict()
    head = {"fc.weight", "fc.bias"}
    backbone = [k for k in initial if k not in head]
    assert set(weights[1]) == set(initial) and len(backbone) > 10
    # epoch 1 (head only): every backbone tensor, batch-norm statistics included, is bit-identical ...
    moved = [k for k in backbone if not torch.equal(weights[1][k], initial[k])]
    assert moved == []
    # ... while the head learned
    assert not torch.equal(weights[1]["fc.weight"], initial["fc.weight"])
    # epoch 2 (top1): the top stage learns, the stem stays frozen
    changed = {k.split(".")[0] for k in backbone if not torch.equal(weights[2][k], weights[1][k])}
    assert changed and "conv1" not in changed

    from trainers.models.factory import set_trainable

    model = create_model("test_resnet")
    assert set_trainable(model, cfg, 0) == "head"
    assert {n for n, p in model.named_parameters() if p.requires_grad} == head
    assert set_trainable(model, cfg, 1) == "top1"
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert "fc" in trainable and "conv1" not in trainable and len(trainable) >= 2


def _event_tags(folder) -> dict[str, list[float]]:
    """Scalars in TensorBoard event files, read with tensorboardX's own protobufs (TFRecord framing)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


def test_tensorboard_events_hold_every_epoch(tmp_path, synthetic_data):
    result = train(tiny_config(synthetic_data, epochs=2, tensorboard=str(tmp_path / "tb")), tmp_path / "run")
    scalars = _event_tags(tmp_path / "tb")
    assert len(scalars["val_auc"]) == 2 and len(scalars["train_loss"]) == 2
    assert scalars["val_auc"][-1] == pytest.approx(result.history[-1]["val_auc"], abs=1e-6)
