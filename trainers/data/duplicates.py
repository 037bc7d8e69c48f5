"""Near-identical and identical images: found by perceptual hash, merged into one group before splitting.

The hashes come from a fixed 64 px decode (through the decoded-image cache), never
from the config's image_size, so every trial of a sweep gets the same groups and
the same split whatever size it trains at.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from .discover import Dataset, file_sha256
from ..errors import DataError
from .groups import group_summary, group_warnings, log_group_summary
from .images import DecodedImages, decode_image, load_images
from .medical import is_medical, read_slice
from .phash import DEFAULT_MAX_DISTANCE, phash, near_pairs

if TYPE_CHECKING:
    from ..config import TrainConfig

__all__ = [
    "Duplicates", "HASH_IMAGE_SIZE", "find_duplicates", "hash_images", "merged_groups",
    "check_cross_class", "merge_duplicate_groups",
]

log = logging.getLogger(__name__)

HASH_IMAGE_SIZE = 64  # fixed: the groups, and so the split, must not depend on cfg.image_size


@dataclass(frozen=True)
class Duplicates:
    hashes: np.ndarray  # (N,) uint64 pHash of each image
    near: tuple[tuple[int, int, int], ...]  # (i, j, bit distance), i < j, within max_distance
    exact: tuple[tuple[int, int, str], ...]  # (i, j, "bytes" | "pixels"): same file and slice, or full-size pixels
    usable: np.ndarray  # bool (N,): images that decoded
    max_distance: int

    def cross_class_exact(self, dataset: Dataset) -> list[tuple[int, int, str]]:
        return [(i, j, kind) for i, j, kind in self.exact if dataset.labels[i] != dataset.labels[j]]


def hash_images(
    dataset: Dataset, *, fingerprint: str, cache_dir: str | None = None, skip_bad: bool = False, progress: bool = True
) -> DecodedImages:
    """The fixed-size decode the hashes and the audit read (cached like every decode)."""
    return load_images(
        dataset, HASH_IMAGE_SIZE, fingerprint=fingerprint, cache_dir=cache_dir, skip_bad=skip_bad, progress=progress
    )


def find_duplicates(
    dataset: Dataset, images: DecodedImages, *, max_distance: int = DEFAULT_MAX_DISTANCE
) -> Duplicates:
    array = np.asarray(images.array)
    hashes = phash(array)
    near = near_pairs(hashes, max_distance, usable=images.keep)
    # a file's bytes, and the slice taken from it: two slices of one volume are not copies of each other
    files = [f"{file_sha256(p)}#{dataset.frame(i)}" for i, p in enumerate(dataset.paths)]
    same_bytes = {(j, i) for i, j in _first_of_each(files, images.keep)}
    same_thumbnail = [hashlib.sha256(a.tobytes()).hexdigest() for a in array]
    same_pixels = {(j, i) for i, j in _identical_at_full_resolution(dataset, files, same_thumbnail, images.keep)}
    exact = [(j, i, "bytes") for j, i in same_bytes] + [(j, i, "pixels") for j, i in same_pixels - same_bytes]
    return Duplicates(
        hashes=hashes, near=tuple(near), exact=tuple(sorted(exact)), usable=np.asarray(images.keep, dtype=bool),
        max_distance=max_distance,
    )


def _first_of_each(keys: Sequence[str], keep: np.ndarray) -> list[tuple[int, int]]:
    """(i, j) for every usable image i whose key an earlier usable image j has (j: the first with it)."""
    first: dict[str, int] = {}
    pairs = []
    for i, key in enumerate(keys):
        if keep[i]:
            j = first.setdefault(key, i)
            if j != i:
                pairs.append((i, j))
    return pairs


def _identical_at_full_resolution(
    dataset: Dataset, files: Sequence[str], thumbnails: Sequence[str], keep: np.ndarray
) -> list[tuple[int, int]]:
    """(i, j): image i has the same pixels as the earlier image j, at the images' own resolution.

    Equal 64 px thumbnails are only candidates: two different scans can average to the same
    thumbnail. Only candidates from two or more different files are decoded again, at full
    size, one file at a time; each is compared with the distinct images of its thumbnail seen
    so far (j: the first of them).
    """
    candidates: dict[str, dict[str, list[int]]] = {}  # thumbnail -> file -> its images
    for i, key in enumerate(thumbnails):
        if keep[i]:
            candidates.setdefault(key, {}).setdefault(files[i], []).append(i)
    pairs = []
    for copies in candidates.values():
        if len(copies) < 2:
            continue  # copies of one file: "bytes" pairs already, nothing to decode
        distinct: list[tuple[int, np.ndarray]] = []  # (first image, its full decode)
        for same in copies.values():
            pixels = _full_decode(dataset, same[0])
            j = next((k for k, seen in distinct if np.array_equal(seen, pixels)), None)
            if j is None:
                j = same[0]
                distinct.append((j, pixels))
            pairs.extend((i, j) for i in same if i != j)
    return pairs


def _full_decode(dataset: Dataset, i: int) -> np.ndarray:
    """Image i as the hash decode reads it (grey; DICOM and NIfTI lung-windowed by `auto`), at its own size."""
    path, frame = dataset.paths[i], dataset.frame(i)
    if is_medical(path):
        return read_slice(path, frame, "auto")
    with Image.open(path) as img:
        side = max(img.size)
    return decode_image(path, side)  # its own longest side: no resampling, a non-square image zero-padded


def merged_groups(groups: Sequence[str], pairs: Sequence[tuple[int, int, object]]) -> tuple[str, ...]:
    """Union-find: every pair's two groups become one, named after its alphabetically first group."""
    parent = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]  # path halving
            g = parent[g]
        return g

    for i, j, _ in pairs:
        a, b = root(groups[i]), root(groups[j])
        if a != b:
            parent[max(a, b)] = min(a, b)
    return tuple(root(g) for g in groups)


def check_cross_class(dataset: Dataset, duplicates: Duplicates) -> None:
    """Raise DataError when one image is labelled twice (identical pixels in two classes)."""
    clashes = duplicates.cross_class_exact(dataset)
    if not clashes:
        return
    i, j, kind = clashes[0]
    more = f" ({len(clashes) - 1} more such pair(s); `lungsweep audit` lists them)" if len(clashes) > 1 else ""
    raise DataError(
        f"{dataset.paths[i]} ({dataset.classes[dataset.labels[i]]}) and {dataset.paths[j]} "
        f"({dataset.classes[dataset.labels[j]]}) hold identical {kind}: one image labelled twice{more}; "
        "remove one copy or fix its label"
    )


def merge_duplicate_groups(dataset: Dataset, duplicates: Duplicates, cfg: "TrainConfig") -> Dataset:
    """prepare_data's step: log the groups, refuse images labelled twice, merge near-duplicates' groups."""
    check_cross_class(dataset, duplicates)
    before = group_summary(dataset)
    log_group_summary(before, label="groups")
    if not cfg.merge_duplicates:
        for warning in group_warnings(before):
            log.warning(warning)
        log.info("%d near-duplicate pair(s) found; merge_duplicates is off, so they may straddle splits",
                 len(duplicates.near))
        return dataset
    merged = replace(dataset, groups=merged_groups(dataset.groups, duplicates.near))
    after = group_summary(merged)
    log.info(
        "merged %d near-duplicate pair(s) (pHash within %d bits): %d -> %d groups",
        len(duplicates.near), duplicates.max_distance, len(set(dataset.groups)), len(set(merged.groups)),
    )
    log_group_summary(after, label="merged")
    for warning in group_warnings(after):
        log.warning(warning)
    return merged
