"""An ensemble folder (or one trial's checkpoint) loaded for prediction in this process.

ENS_DIR/ensemble.json holds the combiner, calibrator and threshold as plain numbers;
ENS_DIR/members/<trial>/ holds each member's safetensors weights and checkpoint.json.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers import CheckpointError, Preprocessing, load_model, predict_margins
from trainers.inference import shared_reading
from trainers.data import Dataset
from trainers.images import load_images

from .errors import EnsembleError
from .pipeline import EnsemblePipeline

__all__ = ["LoadedMember", "EnsembleModel", "load_member", "member_margins", "ENSEMBLE_JSON"]

ENSEMBLE_JSON = "ensemble.json"


@dataclass
class LoadedMember:
    trial_id: str
    model: torch.nn.Module
    prep: Preprocessing


def member_margins(
    member: LoadedMember, images: np.ndarray, *, tta: bool, device: torch.device, batch_size: int = 64
) -> np.ndarray:
    """Logit margins of one member on (N, S, S) uint8 images; with TTA, averaged with the mirror image."""
    margins = predict_margins(member.model, images, member.prep, device=device, batch_size=batch_size)
    if tta:
        mirrored = np.ascontiguousarray(np.asarray(images)[:, :, ::-1])
        margins = (margins + predict_margins(member.model, mirrored, member.prep, device=device, batch_size=batch_size)) / 2
    return margins


class EnsembleModel:
    """Members + fitted pipeline: images in, calibrated P(positive) out."""

    def __init__(self, *, members: list[LoadedMember], pipeline: EnsemblePipeline, tta: bool,
                 classes: list[str], positive: str, manifest: dict[str, Any]) -> None:
        self.members, self.pipeline, self.tta = members, pipeline, tta
        self.classes, self.positive, self.manifest = classes, positive, manifest

    @property
    def threshold(self) -> float:
        return float(self.pipeline.threshold_)

    @property
    def image_sizes(self) -> list[int]:
        return sorted({m.prep.image_size for m in self.members})

    @property
    def window(self) -> Any:
        """The DICOM/NIfTI window every member was trained with."""
        return shared_reading(m.prep for m in self.members)[0]

    @property
    def slices(self) -> str:
        return shared_reading(m.prep for m in self.members)[1]

    @classmethod
    def load(cls, folder: str | Path) -> "EnsembleModel":
        """An ensemble folder, or a single checkpoint folder (one member, no calibration, threshold 0.5)."""
        folder = Path(folder)
        if (folder / ENSEMBLE_JSON).is_file():
            manifest = json.loads((folder / ENSEMBLE_JSON).read_text())
            members = [load_member(folder / "members" / t, t) for t in manifest["members"]]
            pipeline = EnsemblePipeline.from_dict(manifest["pipeline"])
            return cls(members=members, pipeline=pipeline, tta=manifest["tta"], classes=manifest["classes"],
                       positive=manifest["positive"], manifest=manifest)
        if (folder / "checkpoint.json").is_file():
            member = load_member(folder, folder.name)
            meta = json.loads((folder / "checkpoint.json").read_text())
            pipeline = EnsemblePipeline.single_member()
            return cls(members=[member], pipeline=pipeline, tta=False, classes=meta["classes"],
                       positive=meta["positive"], manifest={"kind": "checkpoint", "checkpoint": str(folder)})
        raise EnsembleError(
            f"{folder} is neither an ensemble folder ({ENSEMBLE_JSON}) nor a checkpoint folder (checkpoint.json)"
        )

    def margins_for_dataset(self, dataset: Dataset, *, device: torch.device, progress: bool = True) -> np.ndarray:
        """(N, n_members) margins for every image of a dataset, decoding once per image size."""
        fingerprint = dataset.fingerprint()
        arrays = {
            s: load_images(dataset, s, fingerprint=fingerprint, progress=progress, window=self.window).array
            for s in self.image_sizes
        }
        return self.margins_for_images(arrays, device=device)

    def margins_for_images(self, arrays: dict[int, np.ndarray], *, device: torch.device) -> np.ndarray:
        """(N, n_members) margins for {image_size: (N, S, S) uint8} decoded images."""
        return np.stack(
            [member_margins(m, np.asarray(arrays[m.prep.image_size]), tta=self.tta, device=device) for m in self.members],
            axis=1,
        )

    def predict_proba(self, margins: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(margins)

    def proba_for_dataset(self, dataset: Dataset, *, device: torch.device, progress: bool = True) -> np.ndarray:
        return self.predict_proba(self.margins_for_dataset(dataset, device=device, progress=progress))


def load_member(folder: Path, trial_id: str) -> LoadedMember:
    try:
        model, meta = load_model(folder)
    except CheckpointError as e:
        raise EnsembleError(f"member {trial_id}: {e}") from e
    return LoadedMember(trial_id=trial_id, model=model, prep=Preprocessing.from_dict(meta["preprocessing"]))
