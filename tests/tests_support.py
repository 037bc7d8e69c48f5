"""Small builders shared by tests (kept out of conftest so tests can import them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def two_class_folder(root: Path, classes: tuple[str, str], per_class: int = 2) -> Path:
    root = root / "two"
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(root / c / f"{c}{i}.png")
    return root
