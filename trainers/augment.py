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
    # every random draw in one CPU tensor (seeded, device-independent), moved once
    u = (torch.rand(b, 7, generator=generator) * 2 - 1).to(x.device)
    angle = u[:, 0] * math.radians(MAX_ROTATION_DEG) * strength
    zoom = 1.0 + u[:, 1] * MAX_ZOOM * strength
    tx, ty = u[:, 2] * MAX_TRANSLATE * strength * 2, u[:, 3] * MAX_TRANSLATE * strength * 2
    ones = torch.ones(b, device=x.device)
    sx = torch.where((u[:, 4] < 0) & hflip, -ones, ones)
    sy = torch.where((u[:, 5] < 0) & vflip, -ones, ones)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid maps output to input coordinates in [-1, 1]
    theta = torch.stack(
        [torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    contrast = (1.0 + u[:, 6] * MAX_CONTRAST * strength).to(x.dtype).view(b, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (out - mean) * contrast + mean
