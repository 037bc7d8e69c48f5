"""The content box and the border band of an image as the models saw it, and where a map's mass lies.

decode_image resizes the original with its aspect ratio kept and zero-pads it to a centred square, so the
original's width and height give the real-image rectangle inside the padding (`content_rectangle`, with
PIL's own rounding). The content box is that rectangle less BORDER_MARGIN of its width and height on each
side; the border band is everything else (that margin and the padding). content_mass + border_mass = 1;
border_area is the band's share of the square: what a map spread evenly would put there.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ..errors import ExplainError

__all__ = ["BORDER_MARGIN", "MEASURES", "MassShares", "content_box", "content_rectangle", "mass_shares"]

BORDER_MARGIN = 0.10  # the content box: the real image less this share of its width and height on each side
MEASURES = ("content_mass", "border_mass", "padding_mass", "border_area")


def content_rectangle(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), in pixels of the size x size square, of a width x height original as decode_image
    places it: resized with its aspect ratio kept (PIL ImageOps.contain's rounding), centred, zero-padded."""
    if width <= 0 or height <= 0:
        raise ExplainError(f"an image of {width}x{height} pixels has no content")
    if width > height:
        h = round(height / width * size)
        y = round((size - h) * 0.5)
        return 0, y, size, y + h
    if height > width:
        w = round(width / height * size)
        x = round((size - w) * 0.5)
        return x, 0, x + w, size
    return 0, 0, size, size


def content_box(width: int, height: int, size: int, margin: float = BORDER_MARGIN) -> tuple[float, ...]:
    """The content rectangle less `margin` of its width and height on each side: (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = content_rectangle(width, height, size)
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    return x0 + dx, y0 + dy, x1 - dx, y1 - dy


def _inside(box: Sequence[float], size: int) -> np.ndarray:
    """(size, size) bool: pixels whose centre lies in the box."""
    centres = np.arange(size) + 0.5
    x0, y0, x1, y1 = box
    return ((centres >= y0) & (centres <= y1))[:, None] & ((centres >= x0) & (centres <= x1))[None, :]


class MassShares(NamedTuple):
    content_mass: float  # share of the map inside the content box
    border_mass: float  # outside it: the margin band and the padding (1 - content_mass)
    padding_mass: float  # on the zero padding alone (part of border_mass)
    border_area: float  # the border band's share of the square: a uniform map's border_mass


def mass_shares(cam: np.ndarray, width: int, height: int, margin: float = BORDER_MARGIN) -> MassShares:
    """Where a (D, D) map's mass lies relative to the content box of a width x height original (NaN: empty map)."""
    size = cam.shape[-1]
    content = _inside(content_box(width, height, size, margin), size)
    real = _inside(content_rectangle(width, height, size), size)
    area = 1.0 - float(content.mean())
    total = float(cam.sum())
    if not total > 0:
        return MassShares(float("nan"), float("nan"), float("nan"), area)
    inside = float(cam[content].sum()) / total
    return MassShares(inside, 1.0 - inside, float(cam[~real].sum()) / total, area)
