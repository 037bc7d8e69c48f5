"""Batch augmentations as tensor ops on the training device (no per-image CPU work).

At strength 1 these are the seed work's settings: flips, rotation up to 10 degrees,
zoom 0.9-1.1, translation up to 10% and contrast 0.8-1.2. Strength scales every range.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["augment_batch"]

MAX_ROTATION_DEG = 10.0
MAX_ZOOM = 0.10
MAX_TRANSLATE = 0.10
MAX_CONTRAST = 0.20


def augment_batch(
    x: torch.Tensor,
    *,
    strength: float,
    hflip: bool = True,
    vflip: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """x: (B, C, H, W) float, normalised. Returns a new augmented batch."""
    if strength <= 0:
        return x
    b = x.shape[0]

    def uniform(scale: float) -> torch.Tensor:  # U(-scale, scale) per sample, drawn on CPU for determinism
        return ((torch.rand(b, generator=generator) * 2 - 1) * scale).to(x.device)

    angle = uniform(math.radians(MAX_ROTATION_DEG) * strength)
    zoom = 1.0 + uniform(MAX_ZOOM * strength)
    tx, ty = uniform(MAX_TRANSLATE * strength * 2), uniform(MAX_TRANSLATE * strength * 2)
    sx = torch.ones(b, device=x.device)
    sy = torch.ones(b, device=x.device)
    if hflip:
        sx = torch.where(torch.rand(b, generator=generator).to(x.device) < 0.5, -sx, sx)
    if vflip:
        sy = torch.where(torch.rand(b, generator=generator).to(x.device) < 0.5, -sy, sy)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid maps output to input coordinates in [-1, 1]
    theta = torch.stack(
        [torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    contrast = (1.0 + uniform(MAX_CONTRAST * strength)).to(x.dtype).view(b, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (out - mean) * contrast + mean
