"""An ensemble folder (or one trial's checkpoint or bag) loaded for prediction in this process.

ENS_DIR (ensemble.folders.ensemble_dir) holds the combiner, calibrator and threshold as plain numbers,
and each member: a checkpoint folder (safetensors weights and checkpoint.json), or a bag folder
(bag.json and one checkpoint folder per fold).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers import CheckpointError, Preprocessing, load_model
from trainers.bag import fold_checkpoints, is_bag, read_bag
from trainers.inference import resolve_device, shared_reading
from trainers.run_folder import model_folder

from ..errors import EnsembleError
from ..fit.pipeline import EnsemblePipeline
from ..fit.tta import model_margins
from ..folders.ensemble_dir import ENSEMBLE_JSON, EnsembleFolder, read_ensemble
from ..folders.kinds import FolderKind, kind_of

__all__ = ["LoadedMember", "EnsembleModel", "MEMBER_KINDS", "load_member", "member_margins"]

# the folders that load as one member: its models as trained
MEMBER_KINDS = (FolderKind.BAG, FolderKind.CHECKPOINT, FolderKind.TRAIN_RUN)


@dataclass
class LoadedMember:
    """One member: a model, or a bag of fold models whose margins are averaged."""

    trial_id: str
    models: list[torch.nn.Module]
    prep: Preprocessing
    meta: dict[str, Any] = field(default_factory=dict)  # bag.json, or the checkpoint's meta: read with the models
    folder: Path | None = None  # the checkpoint or bag folder the models were read from

    @property
    def model(self) -> torch.nn.Module:
        """The model of a single-model member (a bag has several: use `models`)."""
        if len(self.models) != 1:
            raise EnsembleError(f"member {self.trial_id} is a bag of {len(self.models)} fold models")
        return self.models[0]


def member_margins(
    member: LoadedMember, images: np.ndarray, *, tta: bool, device: torch.device, batch_size: int = 64
) -> np.ndarray:
    """Logit margins of one member on (N, S, S) uint8 images: a bag's is the mean over its fold models."""
    return np.mean([model_margins(m, member.prep, images, tta=tta, device=device, batch_size=batch_size)
                    for m in member.models], axis=0)


class EnsembleModel:
    """Members + fitted pipeline: images in, calibrated P(positive) out (an ensemble.Predictor)."""

    def __init__(self, *, members: list[LoadedMember], pipeline: EnsemblePipeline, tta: bool,
                 classes: list[str], positive: str, manifest: dict[str, Any], device: str = "cpu") -> None:
        self.members, self.pipeline, self.tta = members, pipeline, tta
        self.classes, self.positive, self.manifest = classes, positive, manifest
        self.device = torch.device(device)

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
    def load(cls, folder: str | Path, *, device: str = "auto") -> "EnsembleModel":
        """An ensemble folder, or one checkpoint, bag or `lungsweep train` run folder (one member, no calibration,
        threshold 0.5)."""
        return cls.of_kind(folder, kind_of(folder), device=device)

    @classmethod
    def of_kind(cls, folder: str | Path, kind: FolderKind, *, device: str = "auto") -> "EnsembleModel":
        """`load` for a caller that has already told `folder`'s kind (kind_of), so it is told once."""
        folder = Path(folder)
        if kind is FolderKind.ENSEMBLE:
            model = cls.of_folder(read_ensemble(folder))
        elif kind in MEMBER_KINDS:
            model = cls.of_member(folder, folder.name)
        else:
            raise EnsembleError(f"{folder} is {kind.named}, which holds no torch ensemble; give an ensemble "
                                "folder, a bag, a checkpoint or a `lungsweep train` run")
        model.device = resolve_device(device)
        for member in model.members:
            for m in member.models:
                m.to(model.device)
        return model

    @classmethod
    def of_folder(cls, ens: EnsembleFolder) -> "EnsembleModel":
        """The ensemble of an ENS_DIR as ensemble.folders.ensemble_dir.read_ensemble read it (on the CPU)."""
        members = [load_member(folder, t) for t, folder in ens.members.items()]
        manifest = ens.manifest
        try:
            pipeline = EnsemblePipeline.from_dict(manifest["pipeline"])
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, EnsembleError):
                raise
            raise EnsembleError(f"{ens.path / ENSEMBLE_JSON}: its 'pipeline' is malformed ({e!r}); "
                                "run `lungsweep ensemble` again") from e
        return cls(members=members, pipeline=pipeline, tta=manifest["tta"], classes=manifest["classes"],
                   positive=manifest["positive"], manifest=manifest)

    @classmethod
    def of_member(cls, folder: Path, trial_id: str) -> "EnsembleModel":
        """One checkpoint, bag or train run folder as it was trained: one member, no calibration, threshold 0.5
        (on the CPU)."""
        member = load_member(folder, trial_id)
        return cls(members=[member], pipeline=EnsemblePipeline.single_member(), tta=False,
                   classes=member.meta["classes"], positive=member.meta["positive"],
                   manifest={"kind": "checkpoint", "checkpoint": str(folder)})

    def margins_for_images(self, arrays: dict[int, np.ndarray], *, device: torch.device) -> np.ndarray:
        """(N, n_members) margins for {image_size: (N, S, S) uint8} decoded images."""
        return np.stack(
            [member_margins(m, np.asarray(arrays[m.prep.image_size]), tta=self.tta, device=device) for m in self.members],
            axis=1,
        )

    def predict_proba(self, images: dict[int, np.ndarray]) -> np.ndarray:
        """Calibrated P(positive) for {image_size: (N, S, S) uint8} decoded images."""
        return self.proba_from_margins(self.margins_for_images(images, device=self.device))

    def proba_from_margins(self, margins: np.ndarray) -> np.ndarray:
        """The fitted pipeline on (N, n_members) member margins."""
        return self.pipeline.predict_proba(margins)


def load_member(folder: Path, trial_id: str) -> LoadedMember:
    """A checkpoint folder (one model), a bag folder (its fold models) or a train run (its best/), with its meta,
    each file read once."""
    folder = model_folder(folder)
    try:
        bag = read_bag(folder) if is_bag(folder) else None
        folders = [folder] if bag is None else fold_checkpoints(folder, bag)
        loaded = [load_model(f) for f in folders]
    except CheckpointError as e:
        raise EnsembleError(f"member {trial_id}: {e}") from e
    preps = {json.dumps(meta["preprocessing"], sort_keys=True) for _, meta in loaded}
    if len(preps) != 1:
        raise EnsembleError(f"member {trial_id}: its fold models were trained with different preprocessing")
    return LoadedMember(trial_id=trial_id, models=[m for m, _ in loaded],
                        prep=Preprocessing.from_dict(loaded[0][1]["preprocessing"]), meta=bag or loaded[0][1],
                        folder=folder)
