"""Which kind of folder a path is: the one place that tells a checkpoint from a bag, a run, a sweep,
an ensemble or an exported model.

Each kind's own module owns its file names (trainers.checkpoint, trainers.bag, trainers.run_folder,
search.record, ensemble.folders.ensemble_dir, ensemble.folders.model_dir); this module only asks them.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path

from search.record import is_sweep
from trainers.bag import is_bag
from trainers.checkpoint import META
from trainers.errors import LungsweepError
from trainers.run_folder import BEST

from .ensemble_dir import is_ensemble_folder
from .model_dir import is_model_folder, refuse_pickle

__all__ = ["FolderKind", "kind_of"]


class FolderKind(Enum):
    MODEL = "exported model (MODEL_DIR)"
    ENSEMBLE = "ensemble folder (ENS_DIR)"
    SWEEP = "sweep folder (RUN_DIR of `lungsweep launch`)"
    BAG = "k-fold bag (bag.json and one model per fold)"
    CHECKPOINT = "checkpoint folder (model.safetensors + checkpoint.json)"
    TRAIN_RUN = "`lungsweep train` run folder"

    @property
    def named(self) -> str:
        """The kind with its article, for messages: "a sweep folder (...)", "an ensemble folder (...)"."""
        return ("an " if self.value[0] in "aeiou" else "a ") + self.value


def kind_of(path: str | Path) -> FolderKind:
    """The kind of `path`, or a LungsweepError that says what it is not (a pickle: why it is never loaded).

    A sweep may also be at a URI (s3://, gs://, file://): its readers (ensemble.fit.members) mirror it.
    A URI holding anything else gets search.record's named error.
    """
    if is_sweep(path):
        return FolderKind.SWEEP
    path = Path(path)
    refuse_pickle(path)  # every caller loads what it is told, and a pickle file is no folder
    if not path.is_dir():
        raise LungsweepError(f"{path} does not exist or is not a folder; give a folder lungsweep wrote (MODEL_DIR, "
                             "ENS_DIR, a sweep's RUN_DIR, a bag, a checkpoint or a `lungsweep train` run)")
    if is_model_folder(path):
        return FolderKind.MODEL
    if is_ensemble_folder(path):
        return FolderKind.ENSEMBLE
    if is_bag(path):
        return FolderKind.BAG
    if (path / META).is_file():
        return FolderKind.CHECKPOINT
    if (path / BEST / META).is_file():
        return FolderKind.TRAIN_RUN
    kinds = "; ".join(k.value for k in FolderKind)
    raise LungsweepError(f"{path} is none of the folders lungsweep writes ({kinds})")

