"""trainers.models: a network by timm name, and the ImageNet weights that install offline.

    model = create_model("efficientnet_lite0", drop_rate=0.2)       # factory: one grey channel, two classes
    info = load_pretrained(model, "efficientnet_lite0")              # pretrained: weights from pip packages

Names load on first use (PEP 562).
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "create_model": "factory", "head_parameters": "factory", "layer_ids": "factory",
    "optimizer_param_groups": "factory", "set_trainable": "factory",
    "PretrainedInfo": "pretrained", "load_pretrained": "pretrained", "normalisation": "pretrained",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
