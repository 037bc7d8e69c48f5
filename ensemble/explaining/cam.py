"""Class activation maps of an ensemble: Grad-CAM (captum's LayerGradCam) of every member model, placed on
the image as the models saw it and averaged as the ensemble averages its members.

    cams = EnsembleCam.of(EnsembleModel.load("runs/ens"))
    maps = cams.maps({160: images}, classes)          # (N, D, D), each of unit mass

Each network is mapped at its final feature map (timm's forward_features, which the head pools), where
Grad-CAM is CAM: each position's exact share of the logit of a pool-then-linear head. Only when that map is
under MIN_CAM_CELLS cells across (a tiny input) is a finer feature_info stage taken. Grad-CAM at mid-network
stages is finer but unfaithful: on a planted shortcut it moved from the shortcut to the lungs from one
training seed to the next, where the final map did not (tests/ensemble_tests/explaining_tests/test_explain.py).
Each cell is put where its receptive field is centred (`cell_centres`), then filled in bilinearly. Every
model's map is scaled to unit mass at the display size (the largest member image size); a bag's fold models
are averaged within the member, members with the combiner's weights (their absolute shares: greedy and stack
weigh members, mean weighs them equally); with TTA each map is averaged with the mirror image's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from trainers.inference import Preprocessing, to_input

from ..errors import ExplainError
from ..runtime.model import EnsembleModel, LoadedMember

__all__ = ["MIN_CAM_CELLS", "CamLayer", "EnsembleCam", "cam_layer", "cell_centres", "grad_cam", "place"]

MIN_CAM_CELLS = 4  # a final feature map narrower than this is too coarse: a finer stage is mapped instead


@dataclass(frozen=True)
class CamLayer:
    """Where a network is mapped: `layer`'s output, on the way `forward` computes the logits."""

    name: str  # "features" (the map the head pools) or a timm feature_info stage
    layer: torch.nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]


def cam_layer(model: torch.nn.Module, image_size: int) -> CamLayer:
    """The final feature map (timm's forward_features, which the head pools) when it is at least MIN_CAM_CELLS
    cells across at `image_size`: Grad-CAM there is CAM, each position's exact share of the logit for a
    pool-then-linear head. Else the deepest feature_info stage that is (the finest when none is)."""
    stages = [info for info in getattr(model, "feature_info", None) or [] if "module" in info and "reduction" in info]
    if not stages:
        raise ExplainError(f"{type(model).__name__} lists no feature stages (timm feature_info); explain draws "
                           "class activation maps of timm CNNs")
    cells = [-(-image_size // int(s["reduction"])) for s in stages]
    if cells[-1] >= MIN_CAM_CELLS and hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        tap = torch.nn.Identity()
        return CamLayer("features", tap, lambda x: model.forward_head(tap(model.forward_features(x))))
    wide = [s for s, n in zip(stages, cells) if n >= MIN_CAM_CELLS]
    stage = wide[-1] if wide else min(stages, key=lambda s: int(s["reduction"]))
    return CamLayer(stage["module"], model.get_submodule(stage["module"]), model)


def grad_cam(
    model: torch.nn.Module, prep: Preprocessing, images: np.ndarray, classes: np.ndarray, *, device: torch.device,
    batch_size: int = 16,
) -> np.ndarray:
    """Grad-CAM (captum LayerGradCam, ReLU'd) of `classes` (1: positive, 0: negative) for (N, S, S) uint8
    images at cam_layer's map: (N, h, w) cells. A class's score is its side of the logit margin."""
    from captum.attr import LayerGradCam  # loaded only to draw maps

    model.eval()
    target = cam_layer(model, prep.image_size)

    def scores(x: torch.Tensor) -> torch.Tensor:  # (B, 2): -margin, margin; their softmax is the model's
        logits = target.forward(x)
        margin = logits[:, 1] - logits[:, 0]
        return torch.stack([-margin, margin], dim=1)

    cam = LayerGradCam(scores, target.layer)
    out = []
    with torch.enable_grad():
        for start in range(0, len(images), batch_size):
            x = to_input(torch.from_numpy(np.array(images[start:start + batch_size])), prep, device)
            maps = cam.attribute(x, target=[int(c) for c in classes[start:start + batch_size]], relu_attributions=True)
            if maps.dim() != 4:
                raise ExplainError(f"{type(model).__name__}'s {target.name!r} is not a spatial feature map "
                                   f"(its Grad-CAM has shape {tuple(maps.shape)}); explain works on CNNs")
            out.append(maps[:, 0].detach().float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1), np.float32)


def cell_centres(model: torch.nn.Module, prep: Preprocessing, *, device: torch.device) -> tuple[np.ndarray, ...]:
    """Where, in input pixels (continuous, 0 at the top-left edge), each row and column of cam_layer's map is
    centred, by receptive-field arithmetic over the convolutions and poolings that ran to make it.

    Upsampling alone assumes cell i covers [r*i, r*(i+1)); a stride-2 3x3 convolution padded by 1 (ResNet,
    EfficientNet) centres cell i at r*i + 0.5 instead, half a cell up and left: up to 15 px at stride 32,
    enough to move a map's mass across a border band. Each module that first produces a resolution moves the
    first cell's centre by ((k - 1) * d / 2 - left padding) input steps (timm's *Same modules pad as
    timm.layers.padding.get_same_padding says); a parallel branch to a resolution already made (a residual
    shortcut) is the same grid and is not counted twice.
    """
    from timm.layers.padding import get_same_padding

    target = cam_layer(model, prep.image_size)
    size = prep.image_size
    grids: dict[tuple[int, int], tuple[float, float]] = {}  # (axis, cells) -> (first centre, step), in pixels
    for axis in (0, 1):
        grids[(axis, size)] = (0.5, 1.0)
    seen: list[tuple[int, int]] = []

    def record(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0] if inputs else None
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)) or x is None \
                or x.dim() != 4 or output.dim() != 4:
            return
        for axis in (0, 1):
            n_in, n_out = int(x.shape[2 + axis]), int(output.shape[2 + axis])
            if (axis, n_out) in grids or (axis, n_in) not in grids:
                continue
            k, s, pad, d = (_pair(getattr(module, name, 1))[axis] for name in ("kernel_size", "stride", "padding",
                                                                              "dilation"))
            if type(module).__name__.endswith("Same"):
                pad = get_same_padding(n_in, k, s, d) // 2
            elif not isinstance(pad, int):  # "same" (stride 1: centred) or "valid"
                pad = (k - 1) * d // 2 if pad == "same" else 0
            first, step = grids[(axis, n_in)]
            grids[(axis, n_out)] = (first + ((k - 1) * d / 2 - pad) * step, step * s)

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    hooks.append(target.layer.register_forward_hook(lambda _m, _i, output: seen.append(tuple(output.shape[-2:]))))
    try:
        with torch.no_grad():
            target.forward(torch.zeros(1, 1, size, size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    h, w = seen[0]
    centres = []
    for axis, cells in ((0, h), (1, w)):
        first, step = grids.get((axis, cells), (size / cells / 2, size / cells))  # not traced: uniform cells
        centres.append(first + step * np.arange(cells))
    return tuple(centres)


def _pair(value: Any) -> tuple[Any, Any]:
    return (value, value) if not isinstance(value, (tuple, list)) else (value[0], value[-1])


def place(cells: np.ndarray, centres: tuple[np.ndarray, ...], image_size: int, size: int) -> np.ndarray:
    """(N, h, w) cell maps at `size` x `size` pixels: bilinear between the cells' centres (cell_centres, in
    pixels of `image_size`), the edge cells' values held out to the edges."""
    ys, xs = (np.asarray(c) * size / image_size for c in centres)
    pixels = np.arange(size) + 0.5
    wy = np.stack([np.interp(pixels, ys, np.eye(len(ys))[i]) for i in range(len(ys))], axis=1)  # (size, h)
    wx = np.stack([np.interp(pixels, xs, np.eye(len(xs))[j]) for j in range(len(xs))], axis=1)  # (size, w)
    return np.einsum("yh,nhw,xw->nyx", wy, cells, wx).astype(np.float32)


def _unit_mass(maps: np.ndarray) -> np.ndarray:
    """Each (H, W) map divided by its sum; an empty (all-zero) map stays zero."""
    total = maps.sum(axis=(-2, -1), keepdims=True)
    return np.divide(maps, total, out=np.zeros_like(maps), where=total > 0)


class EnsembleCam:
    """Grad-CAM of an ensemble: unit-mass maps of each model at the display size (the largest member image
    size), averaged over a bag's fold models (and the mirror, with TTA), then over members with `weights`."""

    def __init__(self, members: Sequence[LoadedMember], weights: Sequence[float] | None, *, tta: bool,
                 device: torch.device, display_size: int | None = None) -> None:
        w = np.abs(np.asarray(weights if weights is not None else np.ones(len(members)), dtype=np.float64))
        if len(w) != len(members) or not w.sum() > 0:
            raise ExplainError(f"{len(w)} combiner weight(s) for {len(members)} member(s), summing to {w.sum()}")
        self.members = [(m, wm / w.sum()) for m, wm in zip(members, w) if wm > 0]
        self.tta, self.device = tta, device
        self.display_size = display_size or max(m.prep.image_size for m, _ in self.members)
        self._cells: dict[int, tuple[np.ndarray, ...]] = {}

    def _centres(self, model: torch.nn.Module, prep: Preprocessing) -> tuple[np.ndarray, ...]:
        if id(model) not in self._cells:
            self._cells[id(model)] = cell_centres(model, prep, device=self.device)
        return self._cells[id(model)]

    @classmethod
    def of(cls, model: EnsembleModel) -> EnsembleCam:
        """The members of a loaded ensemble, weighed as its combiner weighs them."""
        return cls(model.members, model.pipeline.combiner_.member_weights(), tta=model.tta, device=model.device)

    def layers(self) -> dict[str, str]:
        """Member -> the feature stage its maps are taken at."""
        return {m.trial_id: cam_layer(m.models[0], m.prep.image_size).name for m, _ in self.members}

    def maps(self, images: dict[int, np.ndarray], classes: np.ndarray) -> np.ndarray:
        """(N, D, D) unit-mass maps (all zero where no model found evidence) for {image_size: (N, S, S)} images."""
        size = self.display_size
        total = None
        for member, weight in self.members:
            views = [np.asarray(images[member.prep.image_size])]
            if self.tta:
                views.append(np.ascontiguousarray(views[0][:, :, ::-1]))
            parts = []
            for model in member.models:
                centres = self._centres(model, member.prep)
                for k, view in enumerate(views):
                    cells = grad_cam(model, member.prep, view, classes, device=self.device)
                    maps = _unit_mass(place(cells, centres, member.prep.image_size, size))
                    parts.append(maps[:, :, ::-1] if k else maps)  # a mirror's map, mirrored back
            part = weight * np.mean(parts, axis=0)
            total = part if total is None else total + part
        assert total is not None
        return _unit_mass(total)
