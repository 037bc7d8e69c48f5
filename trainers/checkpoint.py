"""Checkpoints without pickle: weights in safetensors, everything else in JSON.

A checkpoint folder holds
    model.safetensors    the weights
    checkpoint.json      config, classes, preprocessing, metrics, data fingerprint,
                         package versions, validation and holdout predictions by sample id
    train_state.*        optimizer, RNG and loop state, only in the `last/` folder (to resume)
"""
from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_dir
from .errors import CheckpointError
from .records import read_record_file

__all__ = [
    "FORMAT_VERSION",
    "save_checkpoint",
    "read_meta",
    "load_weights",
    "load_train_state",
    "package_versions",
    "load_model",
]

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "checkpoint.json"
STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
REQUIRED_META = ("format_version", "config", "classes", "positive", "preprocessing", "metrics", "data_fingerprint")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("lungsweep", "torch", "timm", "numpy", "scikit-learn", "safetensors", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def save_checkpoint(
    folder: str | Path,
    *,
    model: torch.nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write the whole folder atomically: a crash leaves the previous checkpoint intact."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS))
        (tmp / META).write_text(json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=1))
        if train_state is not None:
            tensors, plain = _split_tensors(train_state)
            save_file(tensors, str(tmp / STATE_TENSORS))
            (tmp / STATE_JSON).write_text(json.dumps(plain))
    return folder


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META
    meta = read_record_file(path, required=REQUIRED_META, error=CheckpointError,
                            missing=f"{folder} is not a checkpoint folder: {META} is missing",
                            remedy="retrain or restore it")
    if meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format {meta['format_version']}; upgrade lungsweep to read it")
    return meta


def load_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    return _load_safetensors(Path(folder) / WEIGHTS)


def load_model(folder: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model of a checkpoint folder, ready for inference on CPU, and its meta."""
    from .models.factory import create_model  # timm loads only to build a model: reading a checkpoint's meta needs none

    meta = read_meta(folder)
    model = create_model(meta["config"]["model"], drop_rate=meta["config"].get("drop_rate"))
    try:
        model.load_state_dict(load_weights(folder))
    except RuntimeError as e:
        raise CheckpointError(f"{folder}: weights do not fit {meta['config']['model']}: {e}") from e
    return model.eval(), meta


def load_train_state(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    json_path = folder / STATE_JSON
    if not json_path.is_file():
        raise CheckpointError(f"{folder} holds no training state to resume from ({STATE_JSON} is missing)")
    try:
        plain = json.loads(json_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{json_path} is damaged: {e}") from e
    return _join_tensors(plain, _load_safetensors(folder / STATE_TENSORS))


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or damaged ({e}); retrain or restore it") from e


# JSON cannot hold tensors and safetensors holds nothing else: store each tensor
# under its path in the nested state, and a {"__tensor__": path} marker in the JSON.
def _split_tensors(state: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value.detach().to("cpu").contiguous()
            return {"__tensor__": path}
        if isinstance(value, dict):
            return {"__dict__": [[k, walk(v, f"{path}/{k}")] for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(value)]
        return value

    return tensors, walk(state, prefix)


def _join_tensors(plain: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(plain, dict) and "__tensor__" in plain:
        return tensors[plain["__tensor__"]]
    if isinstance(plain, dict) and "__dict__" in plain:
        return {k: _join_tensors(v, tensors) for k, v in plain["__dict__"]}
    if isinstance(plain, list):
        return [_join_tensors(v, tensors) for v in plain]
    return plain
