"""Shared fixtures: small generated chest-like images that two classes can learn apart."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "covid-ct-qsr" / "train"

# every mode the loader must handle, cycled over the generated files
MODES = ("L", "RGB", "RGBA", "I;16", "L-jpeg")


def write_image(path: Path, pixels: np.ndarray, mode: str) -> None:
    if mode == "I;16":
        Image.fromarray(pixels.astype(np.uint16) * 257).save(path.with_suffix(".png"))
    elif mode == "L-jpeg":
        Image.fromarray(pixels).save(path.with_suffix(".jpg"), quality=95)
    else:
        Image.fromarray(pixels).convert(mode).save(path.with_suffix(".png"))


def make_dataset(
    root: Path,
    *,
    groups_per_class: int = 12,
    per_group: int = 3,
    classes: tuple[str, str] = ("CT_COVID", "CT_NonCOVID"),
    seed: int = 0,
) -> Path:
    """Positive images carry bright round blobs (like ground-glass opacities); negatives do not.

    Files of one group share the prefix before '%', as in the COVID-CT data; sizes
    and aspect ratios vary, and modes cycle through L, RGB, RGBA, 16-bit and JPEG.
    """
    rng = np.random.default_rng(seed)
    k = 0
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for g in range(groups_per_class):
            for i in range(per_group):
                h, w = int(rng.integers(36, 60)), int(rng.integers(36, 60))
                img = rng.normal(70, 18, size=(h, w))
                yy, xx = np.mgrid[:h, :w]
                if c == 0:  # the positive class (first folder): two bright blobs
                    for _ in range(2):
                        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
                        r = rng.uniform(0.12, 0.2) * min(h, w)
                        img += 110 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
                pixels = np.clip(img, 0, 255).astype(np.uint8)
                write_image(folder / f"{name.lower()}{g}%{i}", pixels, MODES[k % len(MODES)])
                k += 1
    return root


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "train")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One decoded-image cache per test session, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "image-cache"
    monkeypatch.setenv("LUNGSWEEP_CACHE", str(cache))
    return cache


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    logging.getLogger("lungsweep").setLevel(logging.INFO)


def tiny_config(data: Path, **overrides: object):
    from trainers import TrainConfig

    values = dict(
        data=str(data), model="test_resnet", image_size=32, epochs=6, batch_size=16, lr=3e-3,
        warmup_epochs=0.5, patience=None, progress=False, val_fraction=0.2, holdout_fraction=0.2,
        eval_batch_size=64,
    )
    values.update(overrides)
    return TrainConfig(**values)
