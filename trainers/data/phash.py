"""Perceptual hashes (DCT pHash, 64 bits) and the near-identical pairs they reveal.

Resizing, recompression, a slight change of brightness or contrast keep an
image's low spatial frequencies, so they keep its pHash: each of the 64 bits
says whether one of the 8 x 8 lowest DCT coefficients of a 32 x 32 grey
thumbnail lies above their median. Near-identical images differ in a few bits.
"""
from __future__ import annotations

import numpy as np
from scipy.fft import dctn

__all__ = ["phash", "hamming_matrix", "nearest_distances", "near_pairs", "HASH_SIZE", "DEFAULT_MAX_DISTANCE"]

HASH_SIZE = 32  # side of the thumbnail the DCT runs on
_LOW = 8  # 8 x 8 low frequencies: 64 bits
# Two images whose hashes differ in at most this many of the 64 bits are near-duplicates.
# Chosen on the COVID-CT training images (BENCHMARKS.md, the audit): CT slices share their low
# frequencies, so past 4 bits the hash starts pairing different patients (cross-class pairs: 1 at 4, 5 at 6, 29 at 8).
DEFAULT_MAX_DISTANCE = 4


def phash(images: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 grey squares (S a multiple of 32) -> (N,) uint64 perceptual hashes.

    The squares are the decoder's own output (aspect kept, zero-padded), so a
    resized copy of an image gives the same square, whatever its file size.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[1] % HASH_SIZE:
        raise ValueError(f"phash needs (N, S, S) squares with S a multiple of {HASH_SIZE}, got {images.shape}")
    n, size = images.shape[0], images.shape[1]
    k = size // HASH_SIZE
    # box-filter down to 32 x 32: an exact, resampling-free thumbnail
    thumbs = images.astype(np.float64).reshape(n, HASH_SIZE, k, HASH_SIZE, k).mean(axis=(2, 4))
    low = dctn(thumbs, type=2, norm="ortho", axes=(1, 2))[:, :_LOW, :_LOW].reshape(n, -1)
    bits = low > np.median(low, axis=1, keepdims=True)
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def _bits(hashes: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.asarray(hashes, dtype=np.uint64).view(np.uint8).reshape(-1, 8), axis=1).astype(np.int32)


def _rows(bits: np.ndarray, ones: np.ndarray, start: int, stop: int) -> np.ndarray:
    # differing bits = ones(a) + ones(b) - 2 * common ones: one matrix product per block of rows
    return ones[start:stop, None] + ones[None, :] - 2 * (bits[start:stop] @ bits.T)


def hamming_matrix(hashes: np.ndarray) -> np.ndarray:
    """(N,) uint64 hashes -> (N, N) int bit distances (N^2 memory: for small sets and reports)."""
    bits = _bits(hashes)
    return _rows(bits, bits.sum(axis=1), 0, len(bits))


def nearest_distances(hashes: np.ndarray, block: int = 2048) -> np.ndarray:
    """(N,) bits from each hash to its nearest other one (64 when alone), in blocks of rows."""
    bits = _bits(hashes)
    ones = bits.sum(axis=1)
    out = np.full(len(bits), 64, dtype=np.int64)
    for start in range(0, len(bits), block):
        dist = _rows(bits, ones, start, start + block)
        rows = np.arange(dist.shape[0])
        dist[rows, rows + start] = 64
        out[start:start + block] = dist.min(axis=1) if dist.shape[1] else 64
    return out


def near_pairs(
    hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE, usable: np.ndarray | None = None,
    block: int = 2048,
) -> list[tuple[int, int, int]]:
    """(i, j, distance) with i < j for every pair within `max_distance` bits; unusable images are left out.

    Rows are compared in blocks, so memory stays at block x N whatever the dataset's size.
    """
    bits = _bits(hashes)
    ones = bits.sum(axis=1)
    usable = np.ones(len(bits), dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(bits), block):
        dist = _rows(bits, ones, start, start + block)
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        keep = (j > i) & usable[i] & usable[j]
        pairs += [(int(a), int(b), int(dist[a - start, b])) for a, b in zip(i[keep], j[keep])]
    return sorted(pairs)
