"""Decode throughput into the image cache, per file format: PNG, uncompressed DICOM, RLE Lossless DICOM, NIfTI.

Builds N generated 512 x 512 CT slices (noise over air and a body of soft tissue) in
each format in a temporary folder, two classes, then times trainers.load_images
(decode, window, resize to --size, write the cache .npy) into an empty cache, with
the default thread pool (min(8, cores)). DICOM files are CT_small.dcm from the
pydicom wheel with new pixels; RLE Lossless is decoded by pydicom with numpy alone.
NIfTI is timed as volumes of --depth axial slices (`slices: all`), uncompressed
(.nii, memory-mapped) and gzipped (.nii.gz, which nibabel decompresses per slice read).

    .venv/bin/python -m bench.training.bench_decode                # N = 200 slices per format
    .venv/bin/python -m bench.training.bench_decode --smoke-test   # seconds
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tests.medical_support import write_dicom, write_nifti
from trainers import discover, load_images

CLASSES = ("CT_COVID", "CT_NonCOVID")


def ct_slice(rng: np.random.Generator, size: int) -> np.ndarray:
    """HU: air (-1000) around an ellipse of soft tissue (40) with darker lungs (-750), plus noise."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    hu = np.full((size, size), -1000.0)
    hu[(xx / 0.45) ** 2 + (yy / 0.35) ** 2 < 1] = 40.0
    for cx in (-0.18, 0.18):
        hu[((xx - cx) / 0.14) ** 2 + (yy / 0.25) ** 2 < 1] = -750.0
    return hu + rng.normal(0, 20, hu.shape)


def build_png(root: Path, slices: list[np.ndarray]) -> None:
    for i, hu in enumerate(slices):
        folder = root / CLASSES[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        grey = np.clip((hu + 1350) / 1500 * 255, 0, 255).astype(np.uint8)
        Image.fromarray(grey).save(folder / f"case{i // 8}%{i}.png")


def build_dicom(root: Path, slices: list[np.ndarray], *, rle: bool) -> None:
    import pydicom
    from pydicom.uid import RLELossless

    for i, hu in enumerate(slices):
        path = write_dicom(root / CLASSES[i % 2] / f"s{i:04d}.dcm", hu, patient=f"p{i // 8}",
                           series=f"1.2.3.{i // 8}", number=i, z=float(i))
        if rle:
            ds = pydicom.dcmread(path)
            ds.compress(RLELossless)
            ds.save_as(path, enforce_file_format=True)


def build_nifti(root: Path, slices: list[np.ndarray], depth: int, suffix: str) -> None:
    for v, start in enumerate(range(0, len(slices), depth)):
        volume = np.stack([s.T for s in slices[start : start + depth]], axis=-1)
        write_nifti(root / CLASSES[v % 2] / f"vol{v}{suffix}", volume)


def time_load(root: Path, size: int, cache: Path) -> tuple[int, float]:
    ds = discover(data=root, slices="all")
    fingerprint = ds.fingerprint()
    start = time.perf_counter()
    decoded = load_images(ds, size, fingerprint=fingerprint, cache_dir=cache, progress=False)
    elapsed = time.perf_counter() - start
    assert decoded.keep.all() and decoded.array.shape == (len(ds), size, size)
    return len(ds), elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=200, help="slices per format (default 200)")
    p.add_argument("--depth", type=int, default=40, help="axial slices per NIfTI volume (default 40)")
    p.add_argument("--pixels", type=int, default=512, help="slice side in pixels (default 512)")
    p.add_argument("--size", type=int, default=224, help="decoded image size (default 224)")
    p.add_argument("--smoke-test", action="store_true", help="16 slices of 128 px")
    args = p.parse_args()
    if args.smoke_test:
        args.n, args.depth, args.pixels = 16, 8, 128
    import nibabel  # noqa: F401  imported before the clock starts, as in any long run
    import pydicom.pixels  # noqa: F401

    rng = np.random.default_rng(0)
    slices = [ct_slice(rng, args.pixels) for _ in range(args.n)]
    formats = {
        "PNG (8-bit grey)": lambda r: build_png(r, slices),
        "DICOM, uncompressed": lambda r: build_dicom(r, slices, rle=False),
        "DICOM, RLE Lossless": lambda r: build_dicom(r, slices, rle=True),
        f"NIfTI .nii, {args.depth}-slice volumes": lambda r: build_nifti(r, slices, args.depth, ".nii"),
        f"NIfTI .nii.gz, {args.depth}-slice volumes": lambda r: build_nifti(r, slices, args.depth, ".nii.gz"),
    }
    print(f"{args.n} slices of {args.pixels} px per format -> {args.size} px, "
          f"{min(8, os.cpu_count() or 1)} decode threads, {os.cpu_count()} cores")
    print(f"{'format':<34} {'images':>6} {'seconds':>8} {'images/s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, build) in enumerate(formats.items()):
            root = Path(tmp) / f"f{k}"
            build(root)
            n, elapsed = time_load(root, args.size, Path(tmp) / f"cache{k}")
            print(f"{name:<34} {n:>6} {elapsed:>8.2f} {n / elapsed:>9.1f}")


if __name__ == "__main__":
    main()
