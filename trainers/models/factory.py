"""Models by timm name, and the parameter groups that fine-tuning needs."""
from __future__ import annotations

import difflib
import logging
from typing import Any

import timm
import torch
from timm.models import group_parameters
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from timm.optim._param_groups import auto_group_layers

from ..config import TrainConfig
from ..errors import ConfigError

__all__ = ["create_model", "head_parameters", "layer_ids", "optimizer_param_groups", "set_trainable"]

log = logging.getLogger(__name__)

NUM_CLASSES = 2


def create_model(name: str, *, drop_rate: float | None = None) -> torch.nn.Module:
    """A fresh single-channel, two-class timm model. Unset (None) arguments keep timm's defaults."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ConfigError(f"'model' {name!r} is not a timm model{hint}")
    kwargs: dict[str, Any] = {"in_chans": 1, "num_classes": NUM_CLASSES, "drop_rate": drop_rate}
    model = timm.create_model(name, pretrained=False, **{k: v for k, v in kwargs.items() if v is not None})
    # Some timm inits scale the head by 1/sqrt(num_classes): with two classes the first
    # logits reach +-20 and early epochs are spent undoing that. Start near 50/50 instead.
    for m in model.get_classifier().modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    return model


def head_parameters(model: torch.nn.Module) -> set[int]:
    """ids of the classifier's parameters: the part trained from scratch."""
    return {id(p) for p in model.get_classifier().parameters()}


def layer_ids(model: torch.nn.Module) -> dict[str, int]:
    """Parameter name -> depth index (stem 0 ... head last), by timm's stage grouping."""
    if hasattr(model, "group_matcher"):
        return group_parameters(model, model.group_matcher(coarse=True), reverse=True)
    return auto_group_layers(model)


def set_trainable(model: torch.nn.Module, cfg: TrainConfig, epoch: int) -> str:
    """Freeze or unfreeze the backbone for `epoch` (0-based); returns a short phase name.

    Phase 1 (epoch < freeze_epochs): only the new head learns. Phase 2: the whole
    model, or only the top `unfreeze_blocks` stages and the head.
    """
    head = head_parameters(model)
    if epoch < cfg.freeze_epochs:
        for p in model.parameters():
            p.requires_grad_(id(p) in head)
        return "head"
    if cfg.unfreeze == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return "all"
    depth = layer_ids(model)
    top = max(depth.values())
    for name, p in model.named_parameters():
        p.requires_grad_(id(p) in head or depth.get(name, top) > top - 1 - cfg.unfreeze_blocks)
    return f"top{cfg.unfreeze_blocks}"


def optimizer_param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """timm's weight-decay (and optional layer-decay) groups, with the backbone's lr scaled.

    Every parameter is in a group from the start, so freezing and unfreezing only
    flips requires_grad: the optimizer skips parameters without gradients.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():  # timm's helpers leave out frozen parameters
        p.requires_grad_(True)
    if cfg.layer_decay is not None:
        groups = param_groups_layer_decay(
            model, cfg.weight_decay, no_weight_decay_list=skip, layer_decay=cfg.layer_decay
        )
    else:
        groups = param_groups_weight_decay(model, cfg.weight_decay, no_weight_decay_list=skip)
    for n, p in model.named_parameters():
        p.requires_grad_(trainable[n])
    head = head_parameters(model)
    split: list[dict[str, Any]] = []
    for group in groups:
        base_scale = group.get("lr_scale", 1.0)
        for is_head in (True, False):
            params = [p for p in group["params"] if (id(p) in head) == is_head]
            if params:
                scale = base_scale * (1.0 if is_head else cfg.backbone_lr_scale)
                split.append({**group, "params": params, "lr_scale": scale})
    return split
