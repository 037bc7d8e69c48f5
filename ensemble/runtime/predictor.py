"""One interface for everything that turns images into P(positive): an exported MODEL_DIR
(onnxruntime), an ensemble folder, a bag or a single checkpoint (torch, in process).

    model = load_predictor("runs/model")                  # any of those folders
    p = model.predict_proba({160: images})                # {image_size: (N, S, S) uint8} -> (N,)
    p = proba_for_dataset(model, dataset)                 # every image of a labelled folder

`evaluate` and `predict` use only this, so they never branch on which kind of folder
they were given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from trainers.data import Dataset, decode_image_sizes, load_images

from ..errors import EnsembleError
from ..folders.kinds import FolderKind, kind_of
from .exported import ExportedModel
from .model import EnsembleModel

__all__ = ["Predictor", "decode_for", "load_predictor", "proba_for_dataset", "stack_for"]


@runtime_checkable
class Predictor(Protocol):
    classes: list[str]
    positive: str

    @property
    def threshold(self) -> float: ...

    @property
    def image_sizes(self) -> list[int]: ...

    @property
    def window(self) -> Any:
        """How DICOM/NIfTI pixels are windowed (trainers.data.medical), as the model was trained."""
        ...

    @property
    def slices(self) -> str:
        """Which slices of a DICOM series or volume are predicted."""
        ...

    def predict_proba(self, images: dict[int, np.ndarray]) -> np.ndarray:
        """Calibrated P(positive) for {image_size: (N, S, S) uint8 decoded images}."""
        ...


def load_predictor(path: str | Path, *, device: str = "auto", threads: int | None = None) -> Predictor:
    """The predictor of a MODEL_DIR, ENS_DIR, bag, checkpoint or `lungsweep train` run folder."""
    kind = kind_of(path)  # refuses a pickle
    if kind is FolderKind.MODEL:
        return ExportedModel.load(path, threads=threads)
    if kind is FolderKind.SWEEP:
        raise EnsembleError(f"{path} is a sweep folder; export one of its trials first "
                            f"(`lungsweep export {path} --trial best --out MODEL_DIR`) or build an ensemble")
    return EnsembleModel.of_kind(path, kind, device=device)


def decode_for(model: Predictor, path: str | Path, *, frame: int | None = None) -> dict[int, np.ndarray]:
    """One image file (or one slice of it) at every input size of `model`, by the training code's decoder."""
    return decode_image_sizes(path, model.image_sizes, frame=frame, window=model.window)


def stack_for(model: Predictor, decoded: list[dict[int, np.ndarray]]) -> dict[int, np.ndarray]:
    return {size: np.stack([d[size] for d in decoded]) for size in model.image_sizes}


def proba_for_dataset(model: Predictor, dataset: Dataset, *, batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """P(positive) for every image of a labelled dataset, decoded once through the image cache."""
    fingerprint = dataset.fingerprint()
    arrays = {s: load_images(dataset, s, fingerprint=fingerprint, progress=progress, window=model.window).array
              for s in model.image_sizes}
    out = [
        model.predict_proba({s: np.asarray(a[start : start + batch_size]) for s, a in arrays.items()})
        for start in range(0, len(dataset), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0)
