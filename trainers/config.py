"""The one typed training config: defaults < YAML file < command line, validated once."""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from .errors import ConfigError
from .data.medical import parse_slices, parse_window

__all__ = ["TrainConfig", "load_yaml", "merge_config"]

OPTIMIZERS = ("adamw", "sgd")
MONITOR_METRICS = ("val_auc", "val_loss", "val_accuracy", "val_f1")
UNFREEZE = ("all", "top")
# What decides which images there are, what they are labelled, and which split or fold each one falls in:
# one value for every model that is compared or combined (a sweep's trials, an ensemble's members).
SPLIT_KEYS = ("data", "manifest", "positive", "skip_bad", "slices", "group_regex", "merge_duplicates",
              "val_fraction", "holdout_fraction", "split_seed", "cv_folds", "fold")


@dataclass(frozen=True)
class TrainConfig:
    # --- data -------------------------------------------------------------
    data: str | None = None  # folder with one sub-folder per class
    manifest: str | None = None  # or a CSV with path,label[,group]
    positive: str | None = None  # positive class; default: the one not named Non*/normal*
    image_size: int = 224
    group_regex: str | None = None  # regex whose first group (or match) names the group
    merge_duplicates: bool = True  # near-identical images (pHash) share a group, so no copy straddles splits
    val_fraction: float = 0.15
    holdout_fraction: float = 0.15
    split_seed: int = 0  # kept apart from `seed` so every trial of a sweep sees one split
    cv_folds: int = 1  # K > 1: K stratified group folds of everything but the holdout (a bag of K models)
    fold: int | None = None  # with cv_folds > 1: train this fold's model (0-based); None: all of them
    skip_bad: bool = False
    cache_dir: str | None = None  # decoded-image cache; default ~/.cache/lungsweep
    window: str | list[float] = "auto"  # DICOM/NIfTI: auto, lung, mediastinum, none or [width, level] (HU)
    slices: str = "middle"  # DICOM series / volumes: middle, all or "every N"
    # --- model ------------------------------------------------------------
    model: str = "efficientnet_lite0"
    pretrained: bool = False
    pretrained_file: str | None = None  # with pretrained: true, this weights file (safetensors or .pth state dict)
    drop_rate: float | None = None  # None keeps the model's own default
    # --- optimisation -----------------------------------------------------
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9  # SGD only
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of lr
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0
    patience: int | None = 5  # epochs without improvement before stopping; None: never
    monitor: str = "val_auc"
    # --- fine-tuning (pretrained backbones) -------------------------------
    freeze_epochs: int = 0  # epochs that train only the new head
    unfreeze: str = "all"  # after freeze_epochs: "all" or "top" (the top `unfreeze_blocks`)
    unfreeze_blocks: int = 2
    backbone_lr_scale: float = 1.0  # backbone lr = lr * this after unfreezing
    layer_decay: float | None = None  # layer-wise lr decay per block, e.g. 0.75
    freeze_bn: bool = False  # keep pretrained batch-norm statistics fixed
    # --- augmentation (on device, as tensors) -----------------------------
    aug_strength: float = 1.0  # 0 turns augmentation off; 1 is the seed work's setting
    hflip: bool = True
    vflip: bool = False
    # --- run --------------------------------------------------------------
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    eval_batch_size: int = 128
    num_threads: int | None = None  # torch intra-op threads; None keeps torch's choice
    progress: bool = True
    tensorboard: str | None = None  # also write each epoch's metrics as TensorBoard events to this folder

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> "TrainConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(known))}"
            )
        typed = {k: _coerce(k, v, known[k].type, source) for k, v in values.items()}
        return cls(**typed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from any readable path: a file, or a pipe such as the shell's <(...), read once."""
    path = Path(path)
    if not os.path.exists(path):
        raise ConfigError(f"config file {path} does not exist")
    if os.path.isdir(path):
        raise ConfigError(f"config file {path} is a folder; give the YAML file itself")
    try:
        raw = path.read_bytes()  # once: a pipe cannot be read again; YAML finds its own encoding
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read ({e.strerror or e})") from e
    try:
        loaded = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return loaded


def merge_config(
    file: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Defaults, then the YAML file, then overrides whose value is not None."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(load_yaml(file))
    from_file = dict(values)
    source = str(file) if file is not None else "config"
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    cfg = TrainConfig.from_dict(values, source=source)
    check_overridden(from_file, values, source, lambda v: TrainConfig.from_dict(v, source=source))
    return cfg


def check_overridden(from_file: Mapping[str, Any], merged: Mapping[str, Any], source: str,
                     parse: Callable[[dict[str, Any]], Any]) -> None:
    """A file value that a flag overrides must still be valid: the file is used again without the flag.

    Each overridden value is put back into the (valid) merged config alone, so the error names it.
    """
    for key, value in from_file.items():
        if key not in merged or merged[key] == value:
            continue
        try:
            parse({**merged, key: value})
        except ConfigError as e:
            message = str(e).removeprefix(f"{source}: ")
            raise ConfigError(
                f"{source}: {message} (a command-line flag overrides {key!r} this time; fix the file)"
            ) from e


_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list[float]": list}


def _coerce(key: str, value: Any, annotation: str, source: str) -> Any:
    """Check a raw YAML/CLI value against the field's annotation ('int', 'float | None', ...)."""
    names = [part.strip() for part in str(annotation).split("|")]
    if value is None:
        if "None" in names:
            return None
        raise ConfigError(f"{source}: {key!r} must not be empty")
    for name in names:
        kind = _TYPES.get(name)
        if kind is None:
            continue
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is float and isinstance(value, str):
            try:  # YAML reads 1e-3 as a string
                return float(value)
            except ValueError:
                pass
        if kind is str and isinstance(value, str):
            return value
        if kind is list and isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            return [float(v) for v in value]
    wanted = " or ".join(n for n in names if n != "None")
    raise ConfigError(f"{source}: {key!r} must be {wanted}, got {value!r}")


def _validate(c: TrainConfig) -> None:
    def bad(key: str, rule: str) -> None:
        raise ConfigError(f"{key!r} {rule}, got {getattr(c, key)!r}")

    if c.data is not None and c.manifest is not None:
        raise ConfigError("give either 'data' (a folder) or 'manifest' (a CSV), not both")
    if c.group_regex is not None:
        try:
            re.compile(c.group_regex)
        except re.error as e:
            raise ConfigError(
                f"'group_regex' {c.group_regex!r} is not a valid regular expression ({e}); "
                r"e.g. '^(.*-p\d+)' keeps a name up to its page number as the group"
            ) from e
    for key, parse in (("window", parse_window), ("slices", parse_slices)):
        try:
            parse(getattr(c, key))
        except ValueError as e:
            raise ConfigError(str(e)) from e
    if c.image_size < 16:
        bad("image_size", "must be at least 16")
    for key in ("val_fraction", "holdout_fraction"):
        if not 0.0 <= getattr(c, key) < 0.5:
            bad(key, "must be in [0, 0.5)")
    if c.val_fraction <= 0:
        bad("val_fraction", "must be above 0 (early stopping needs validation data)")
    if c.cv_folds < 1:
        bad("cv_folds", "must be at least 1 (1: one validation split; K > 1: K cross-validation folds)")
    if c.fold is not None and not 0 <= c.fold < max(c.cv_folds, 1):
        raise ConfigError(
            f"'fold' {c.fold!r} needs cv_folds > 1 and must be in [0, cv_folds - 1]; cv_folds is {c.cv_folds}"
        )
    if c.epochs < 1:
        bad("epochs", "must be at least 1")
    if c.batch_size < 2:
        bad("batch_size", "must be at least 2")
    if c.eval_batch_size < 1:
        bad("eval_batch_size", "must be at least 1")
    if c.optimizer not in OPTIMIZERS:
        bad("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
    if c.lr <= 0:
        bad("lr", "must be above 0")
    if c.weight_decay < 0:
        bad("weight_decay", "must be 0 or more")
    if not 0.0 <= c.momentum < 1.0:
        bad("momentum", "must be in [0, 1)")
    if c.warmup_epochs < 0:
        bad("warmup_epochs", "must be 0 or more")
    if not 0.0 <= c.min_lr_ratio <= 1.0:
        bad("min_lr_ratio", "must be in [0, 1]")
    if not 0.0 <= c.label_smoothing < 1.0:
        bad("label_smoothing", "must be in [0, 1)")
    if c.grad_clip is not None and c.grad_clip <= 0:
        bad("grad_clip", "must be above 0, or empty to turn clipping off")
    if c.patience is not None and c.patience < 1:
        bad("patience", "must be at least 1, or empty to never stop early")
    if c.monitor not in MONITOR_METRICS:
        bad("monitor", f"must be one of {', '.join(MONITOR_METRICS)}")
    if c.drop_rate is not None and not 0.0 <= c.drop_rate < 1.0:
        bad("drop_rate", "must be in [0, 1)")
    if c.freeze_epochs < 0:
        bad("freeze_epochs", "must be 0 or more")
    if c.unfreeze not in UNFREEZE:
        bad("unfreeze", f"must be one of {', '.join(UNFREEZE)}")
    if c.unfreeze_blocks < 1:
        bad("unfreeze_blocks", "must be at least 1")
    if c.backbone_lr_scale <= 0:
        bad("backbone_lr_scale", "must be above 0")
    if c.layer_decay is not None and not 0.0 < c.layer_decay <= 1.0:
        bad("layer_decay", "must be in (0, 1]")
    if not 0.0 <= c.aug_strength <= 3.0:
        bad("aug_strength", "must be in [0, 3]")
    if not (c.device in ("auto", "cpu", "cuda") or c.device.startswith("cuda:")):
        bad("device", "must be auto, cpu, cuda or cuda:N")
    if c.num_threads is not None and c.num_threads < 1:
        bad("num_threads", "must be at least 1")
