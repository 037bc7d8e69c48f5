"""The whole ensemble as one torch module: uint8 images in, calibrated P(positive) out.

This is what `lungsweep export` hands to the ONNX (or TorchScript) exporter, so it
holds everything a deployment needs inside one graph:

    images at each member's size ──> normalise ──> member ──> margin ─┐
      (optional mirror TTA: the batch and its mirror in one pass)     ├─> combiner ─> calibrator ─> probability
      (a bag member: the mean margin of its fold models)              │
    ...                                                               ┘

Inputs are what `trainers.decode_image` returns (grey, aspect kept, zero-padded,
0..255), shaped (batch, 1, S, S), one input per distinct member image size; each
member's own mean/std is applied inside. The head (combiner and calibrator) runs in
float64, as the in-process pipeline does, so saturated calibrators keep their precision.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn

from trainers import Preprocessing

from ..errors import EnsembleError
from ..fit.pipeline import EnsemblePipeline

__all__ = ["GraphMember", "EnsembleGraph", "input_name"]


def input_name(image_size: int) -> str:
    return f"image_{image_size}"


@dataclass
class GraphMember:
    trial_id: str
    models: list[nn.Module]  # one model, or a bag's fold models (their margins are averaged)
    prep: Preprocessing


class _NormalisedMember(nn.Module):
    """uint8 (B, 1, S, S) -> logit margin (B,), float32; the same arithmetic as trainers.to_input
    and ensemble.runtime.model.member_margins (a bag: the mean over its fold models)."""

    def __init__(self, models: list[nn.Module], prep: Preprocessing, tta: bool) -> None:
        super().__init__()
        self.models, self.tta = nn.ModuleList(models), tta
        self.scale = 1.0 / (255.0 * prep.std)
        self.shift = prep.mean / prep.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() * self.scale - self.shift
        n = x.shape[0]
        if self.tta:  # the batch and its left-right mirror in one pass
            x = torch.cat([x, torch.flip(x, dims=[3])], dim=0)
        total = torch.zeros(n, dtype=torch.float32)
        for model in self.models:
            logits = model(x).float()
            margins = logits[:, 1] - logits[:, 0]
            total = total + ((margins[:n] + margins[n:]) / 2 if self.tta else margins)
        return total / len(self.models)


class EnsembleGraph(nn.Module):
    """Members + combiner + calibrator of a fitted EnsemblePipeline, each head piece from its own to_torch()."""

    def __init__(self, members: list[GraphMember], pipeline: EnsemblePipeline, *, tta: bool) -> None:
        super().__init__()
        if len(members) != pipeline.n_members_:
            raise EnsembleError(f"the pipeline expects {pipeline.n_members_} members, got {len(members)}")
        # A member the combiner gives no weight changes nothing: leave it out of the graph.
        kept = [int(k) for k in pipeline.combiner_.used_members()]
        self.trial_ids = [members[k].trial_id for k in kept]
        self.weights = pipeline.combiner_.member_weights()[kept].tolist()
        self.image_sizes = sorted({members[k].prep.image_size for k in kept})
        self.input_names = [input_name(s) for s in self.image_sizes]
        self.input_index = [self.image_sizes.index(members[k].prep.image_size) for k in kept]
        self.members = nn.ModuleList(_NormalisedMember(members[k].models, members[k].prep, tta) for k in kept)
        self.combiner = pipeline.combiner_.to_torch(keep=kept)
        self.calibrator = pipeline.calibrator_.to_torch()

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        margins = torch.stack(
            [member(images[i]) for member, i in zip(self.members, self.input_index)], dim=1
        ).double()  # the head runs in float64, as the in-process pipeline does
        return self.calibrator(self.combiner(margins)).float()
