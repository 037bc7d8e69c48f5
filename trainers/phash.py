"""Perceptual hashes (DCT pHash, 64 bits) and the near-identical pairs they reveal.

Resizing, recompression, a slight change of brightness or contrast keep an
image's low spatial frequencies, so they keep its pHash: each of the 64 bits
says whether one of the 8 x 8 lowest DCT coefficients of a 32 x 32 grey
thumbnail lies above their median. Near-identical images differ in a few bits.
"""
from __future__ import annotations

import numpy as np
from scipy.fft import dctn

__all__ = ["phash", "hamming_matrix", "near_pairs", "HASH_SIZE", "DEFAULT_MAX_DISTANCE"]

HASH_SIZE = 32  # side of the thumbnail the DCT runs on
_LOW = 8  # 8 x 8 low frequencies: 64 bits
# Two images whose hashes differ in at most this many of the 64 bits are near-duplicates.
# Chosen on the COVID-CT training images (BENCHMARKS.md, issue 12): CT slices share their low
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


def hamming_matrix(hashes: np.ndarray) -> np.ndarray:
    """(N,) uint64 hashes -> (N, N) int bit distances."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    as_bytes = hashes.view(np.uint8).reshape(-1, 8)
    bits = np.unpackbits(as_bytes, axis=1).astype(np.int16)  # (N, 64)
    return (bits[:, None, :] != bits[None, :, :]).sum(axis=2) if len(bits) < 64 else _hamming_dot(bits)


def _hamming_dot(bits: np.ndarray) -> np.ndarray:
    # differing bits = ones(a) + ones(b) - 2 * common ones; one matrix product, O(N^2) memory in ints
    b = bits.astype(np.int32)
    ones = b.sum(axis=1)
    return ones[:, None] + ones[None, :] - 2 * (b @ b.T)


def near_pairs(
    hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE, usable: np.ndarray | None = None
) -> list[tuple[int, int, int]]:
    """(i, j, distance) with i < j for every pair within `max_distance` bits; unusable images are left out."""
    dist = hamming_matrix(hashes)
    close = dist <= max_distance
    if usable is not None:
        usable = np.asarray(usable, dtype=bool)
        close &= usable[:, None] & usable[None, :]
    i, j = np.nonzero(np.triu(close, k=1))
    return [(int(a), int(b), int(dist[a, b])) for a, b in zip(i, j)]
