"""Decode images once into a square uint8 array, cached on disk by content fingerprint."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps

from .discover import Dataset
from ..errors import BadImageError
from ..atomic import atomic_save_npy, atomic_write_text
from .medical import MEDICAL_DECODE_VERSION, is_medical, parse_window, read_slice
from ..progress import progress_bar

__all__ = ["decode_image", "decode_image_sizes", "load_images", "DecodedImages", "default_cache_dir", "PREPROCESSING_VERSION",
           "cache_key"]

log = logging.getLogger(__name__)

# Bump when decode_image changes, so stale caches are never read.
PREPROCESSING_VERSION = 1
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


def decode_image(path: str | Path, image_size: int, *, frame: int | None = None, window: Any = "auto") -> np.ndarray:
    """One image file (or one slice of a DICOM / NIfTI file) -> (image_size, image_size) uint8,
    grey, aspect kept, zero-padded.

    The one implementation used by training, evaluation and prediction. `frame` and
    `window` matter for DICOM and NIfTI only (trainers.data.medical).
    """
    return decode_image_sizes(path, (image_size,), frame=frame, window=window)[image_size]


def decode_image_sizes(
    path: str | Path, image_sizes: Sequence[int], *, frame: int | None = None, window: Any = "auto"
) -> dict[int, np.ndarray]:
    """decode_image at several sizes from one read of the file (ensembles of mixed sizes).

    The one dispatcher by format: DICOM (by preamble) and NIfTI go to trainers.data.medical, the rest to Pillow.
    """
    if is_medical(path):
        grey = Image.fromarray(read_slice(path, frame, window), mode="L")
    else:
        try:
            with Image.open(path) as img:
                img.load()  # decode now, so a truncated file fails here and names itself
                grey = _to_grey(img)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise BadImageError(str(path), str(e) or type(e).__name__) from e
    return {
        size: np.asarray(ImageOps.pad(grey, (size, size), method=Image.Resampling.BILINEAR, color=0), dtype=np.uint8)
        for size in image_sizes
    }


def _to_grey(img: Image.Image) -> Image.Image:
    if img.mode in _HIGH_BIT_MODES:
        # 16-bit scans rarely use the full range: stretch each image's own range to 0..255
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))  # transparent areas read as air
        img = Image.alpha_composite(background, img)
    return img.convert("L")


@dataclass(frozen=True)
class DecodedImages:
    array: np.ndarray  # (N, S, S) uint8, in the dataset's sample order
    keep: np.ndarray  # bool (N,): False for images skipped as bad
    skipped: tuple[tuple[str, str], ...]  # (sample id, reason)


def default_cache_dir() -> Path:
    env = os.environ.get("LUNGSWEEP_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lungsweep"


def load_images(
    dataset: Dataset,
    image_size: int,
    *,
    fingerprint: str,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    workers: int | None = None,
    window: Any = "auto",
) -> DecodedImages:
    """Decoded images of `dataset`, from the cache when it has them, else decoded and cached.

    The cache holds one .npy per (fingerprint, size), written atomically, so parallel
    trials on a node read the same file (memory-mapped) and none decodes twice. A
    dataset with DICOM / NIfTI samples adds the window to the key (cache_key).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = cache / cache_key(fingerprint, image_size, window if dataset.frames is not None else None)
    array_path, index_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    cached = _cached(array_path, index_path, dataset, skip_bad)
    if cached is not None:
        return cached
    # One decoder per node and cache entry: trials that start together on a node (an autoscaled
    # worker's first trials) wait for the first one and read its file instead of decoding again.
    with _decode_lock(stem) as waited:
        cached = _cached(array_path, index_path, dataset, skip_bad) if waited else None
        if cached is not None:
            return cached
        return _decode_all(dataset, image_size, array_path, index_path, skip_bad=skip_bad, progress=progress,
                           workers=workers, window=window)


def _cached(array_path: Path, index_path: Path, dataset: Dataset, skip_bad: bool) -> DecodedImages | None:
    if not (array_path.exists() and index_path.exists()):
        return None
    cached = _read_cache(array_path, index_path, dataset)
    if cached is None:
        return None
    if cached.skipped and not skip_bad:
        first_id, reason = cached.skipped[0]
        raise BadImageError(os.path.join(dataset.root, first_id), reason)
    log.info("decoded images from cache %s", array_path)
    return cached


@contextmanager
def _decode_lock(stem: Path) -> Iterator[bool]:
    """Hold STEM.lock while decoding; yields True when held (then look in the cache again: the process
    that held it before may have filled it). A cache folder that cannot hold a lock file decodes without.

    An OS file lock (fcntl): it dies with its process, so a killed trial never leaves it stale.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(stem.with_suffix(".lock")))
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("another process is decoding %s; waiting for it", stem.name)
            lock.acquire()
    except OSError as e:  # a read-only cache must not stop training
        log.warning("cannot lock the image cache %s (%s); decoding without a lock", stem.parent, e)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _decode_all(dataset: Dataset, image_size: int, array_path: Path, index_path: Path, *, skip_bad: bool,
                progress: bool, workers: int | None, window: Any) -> DecodedImages:
    array = np.zeros((len(dataset), image_size, image_size), dtype=np.uint8)
    keep = np.ones(len(dataset), dtype=bool)
    skipped: list[tuple[str, str]] = []

    def decode(i: int) -> tuple[int, np.ndarray | BadImageError]:
        try:
            return i, decode_image(dataset.paths[i], image_size, frame=dataset.frame(i), window=window)
        except BadImageError as e:
            return i, e

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(decode, range(len(dataset)))
        for i, result in progress_bar(results, total=len(dataset), desc="decoding images", enabled=progress):
            if isinstance(result, BadImageError):
                if not skip_bad:
                    raise result
                keep[i] = False
                skipped.append((dataset.ids[i], result.reason))
            else:
                array[i] = result
    for sample_id, reason in skipped:
        log.warning("skipped bad image %s: %s", sample_id, reason)
    decoded = DecodedImages(array=array, keep=keep, skipped=tuple(skipped))
    _write_cache(array_path, index_path, dataset, decoded)
    return decoded


def cache_key(fingerprint: str, image_size: int, window: Any = None) -> str:
    """File stem of a decoded-image cache entry: content, size, decoder version and, for
    DICOM / NIfTI datasets, the window and MEDICAL_DECODE_VERSION (a changed window or
    decoder never reads a stale cache).

    window None: a PNG/JPEG-only dataset. 'none' (min-max) is a window like any other.
    """
    stem = f"{fingerprint[:32]}-s{image_size}-v{PREPROCESSING_VERSION}"
    if window is None:  # PNG / JPEG only: the key it always had
        return stem
    reading = {"window": parse_window(window), "decoder": MEDICAL_DECODE_VERSION}
    tag = hashlib.sha256(json.dumps(reading).encode()).hexdigest()[:8]
    return f"{stem}-w{tag}"


def _read_cache(array_path: Path, index_path: Path, dataset: Dataset) -> DecodedImages | None:
    try:
        index = json.loads(index_path.read_text())
        array = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable image cache %s (%s); decoding again", array_path, e)
        return None
    if index.get("ids") != list(dataset.ids) or array.shape[0] != len(dataset):
        return None  # same content under other ids/order: decode again rather than guess
    keep = np.asarray(index["keep"], dtype=bool)
    skipped = tuple((s["id"], s["reason"]) for s in index.get("skipped", []))
    return DecodedImages(array=array, keep=keep, skipped=skipped)


def _write_cache(array_path: Path, index_path: Path, dataset: Dataset, decoded: DecodedImages) -> None:
    try:
        array_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(array_path, decoded.array)
        index = {
            "ids": list(dataset.ids),
            "keep": decoded.keep.tolist(),
            "skipped": [{"id": i, "reason": r} for i, r in decoded.skipped],
        }
        atomic_write_text(index_path, json.dumps(index))
    except OSError as e:  # a read-only cache must not stop training
        log.warning("could not write image cache %s: %s", array_path, e)
