"""The whole ensemble as one torch module: uint8 images in, calibrated P(positive) out.

This is what `lungsweep export` hands to the ONNX (or TorchScript) exporter, so it
holds everything a deployment needs inside one graph:

    images at each member's size ──> normalise ──> member ──> margin ─┐
      (optional mirror TTA: the batch and its mirror in one pass)     ├─> combiner ─> calibrator ─> probability
    ...                                                               ┘

Inputs are what `trainers.decode_image` returns (grey, aspect kept, zero-padded,
0..255), shaped (batch, 1, S, S), one input per distinct member image size; each
member's own mean/std is applied inside. The head (combiner and calibrator) runs in
float64, as the in-process pipeline does, so saturated calibrators keep their precision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers import Preprocessing

from .errors import EnsembleError

__all__ = ["GraphMember", "EnsembleGraph", "input_name"]


def input_name(image_size: int) -> str:
    return f"image_{image_size}"


@dataclass
class GraphMember:
    trial_id: str
    model: nn.Module
    prep: Preprocessing


class _NormalisedMember(nn.Module):
    """uint8 (B, 1, S, S) -> logit margin (B,), float32; the same arithmetic as trainers.to_input."""

    def __init__(self, model: nn.Module, prep: Preprocessing, tta: bool) -> None:
        super().__init__()
        self.model, self.tta = model, tta
        self.scale = 1.0 / (255.0 * prep.std)
        self.shift = prep.mean / prep.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() * self.scale - self.shift
        if self.tta:  # the batch and its left-right mirror in one pass, then the mean margin
            n = x.shape[0]
            logits = self.model(torch.cat([x, torch.flip(x, dims=[3])], dim=0)).float()
            margins = logits[:, 1] - logits[:, 0]
            return (margins[:n] + margins[n:]) / 2
        logits = self.model(x).float()
        return logits[:, 1] - logits[:, 0]


class EnsembleGraph(nn.Module):
    """Members + combiner + calibrator of a fitted EnsemblePipeline record (its to_dict())."""

    def __init__(self, members: list[GraphMember], pipeline: dict[str, Any], *, tta: bool) -> None:
        super().__init__()
        combiner, calibrator = pipeline["combiner"], pipeline["calibrator"]
        if len(members) != int(pipeline["n_members"]):
            raise EnsembleError(f"the pipeline expects {pipeline['n_members']} members, got {len(members)}")
        weights = _member_weights(combiner, len(members))
        # A member the combiner gives no weight changes nothing: leave it out of the graph.
        kept = [k for k in range(len(members)) if weights[k] != 0.0]
        self.trial_ids = [members[k].trial_id for k in kept]
        self.image_sizes = sorted({members[k].prep.image_size for k in kept})
        self.input_names = [input_name(s) for s in self.image_sizes]
        self.input_index = [self.image_sizes.index(members[k].prep.image_size) for k in kept]
        self.members = nn.ModuleList(_NormalisedMember(members[k].model, members[k].prep, tta) for k in kept)

        self.combiner = combiner["name"]
        self.register_buffer("weights", torch.tensor(weights[kept], dtype=torch.float64))
        self.intercept = float(combiner["state"].get("intercept_", 0.0))

        self.calibration = calibrator["name"]
        state = calibrator["state"]
        self.scale, self.offset = 1.0, 0.0
        if self.calibration == "temperature":
            self.scale = 1.0 / float(state["T_"])
        elif self.calibration == "platt":
            self.scale, self.offset = float(state["coef_"]), float(state["intercept_"])
        elif self.calibration == "isotonic":
            x = np.asarray(state["X_thresholds_"], dtype=np.float64)
            y = np.asarray(state["y_thresholds_"], dtype=np.float64)
            # np.interp as a sum of clipped ramps: only elementwise ops, which every ONNX runtime has
            width = np.diff(x)
            slope = np.divide(np.diff(y), width, out=np.zeros_like(width), where=width > 0)
            self.register_buffer("knots", torch.tensor(x[:-1]))
            self.register_buffer("widths", torch.tensor(width))
            self.register_buffer("slopes", torch.tensor(slope))
            self.y0 = float(y[0])
        elif self.calibration != "none":
            raise EnsembleError(f"cannot export calibration {self.calibration!r}")

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        margins = torch.stack(
            [member(images[i]) for member, i in zip(self.members, self.input_index)], dim=1
        ).double()
        if self.combiner == "stack":
            margin = margins @ self.weights + self.intercept
        else:  # mean and greedy pool member probabilities (ensemble.combine.pooled_margin)
            log_w = torch.log(self.weights)
            margin = torch.logsumexp(nn.functional.logsigmoid(margins) + log_w, dim=1) - torch.logsumexp(
                nn.functional.logsigmoid(-margins) + log_w, dim=1
            )
        if self.calibration == "isotonic":
            p = torch.sigmoid(margin).unsqueeze(1)
            ramps = torch.minimum(torch.clamp(p - self.knots, min=0.0), self.widths)
            prob = self.y0 + (ramps * self.slopes).sum(dim=1)
        else:
            prob = torch.sigmoid(margin * self.scale + self.offset)
        return prob.float()


def _member_weights(combiner: dict[str, Any], n: int) -> np.ndarray:
    name, state = combiner["name"], combiner["state"]
    if name == "mean":
        return np.full(n, 1.0 / n)
    if name == "greedy":
        return np.asarray(state["weights_"], dtype=np.float64)
    if name == "stack":
        return np.asarray(state["coef_"], dtype=np.float64)
    raise EnsembleError(f"cannot export combiner {name!r}")
