"""Dataset, decoded images and split, prepared once and shared by every run that uses them.

The one way in: find (discover the files and groups, hash a fixed-size decode, find
duplicates) -> merge near-duplicates' groups -> decode at the image size -> split.
What was found before merging is kept (`PreparedData.found`): the data audit reads it
instead of discovering and hashing again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass

from ..config import TrainConfig
from .discover import Dataset, discover
from .duplicates import Duplicates, find_duplicates, hash_images, merge_duplicate_groups
from ..errors import DataError
from .images import DecodedImages, load_images
from .splits import SPLITS, Split, split_dataset

__all__ = ["FoundData", "PreparedData", "find_data", "prepare_data"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundData:
    """The dataset as discovered (groups as named, nothing merged or refused yet) and its duplicates."""

    dataset: Dataset
    fingerprint: str  # of the files and groups as found: keys every decode cache
    hashed: DecodedImages  # the fixed-size decode (HASH_IMAGE_SIZE) the hashes and the audit read
    duplicates: Duplicates


@dataclass(frozen=True)
class PreparedData:
    dataset: Dataset  # groups after merging near-duplicates (when merge_duplicates)
    images: DecodedImages
    split: Split
    fingerprint: str
    found: FoundData

    def for_fold(self, k: int) -> "PreparedData":
        """The same data with fold k's split: train on the other folds, predict fold k."""
        return dataclasses.replace(self, split=self.split.for_fold(k))

    def split_summary(self, cfg: TrainConfig) -> dict[str, object]:
        """What identifies the split: members of an ensemble must share it.

        sha256 names this model's own train/val/holdout; partition_sha256 the holdout
        and the fold of every image, which every fold model of every trial shares.
        """
        ids = self.split.ids(self.dataset)
        return {
            "seed": cfg.split_seed,
            "val_fraction": cfg.val_fraction,
            "holdout_fraction": cfg.holdout_fraction,
            "group_regex": cfg.group_regex,
            "merge_duplicates": cfg.merge_duplicates,
            "cv_folds": cfg.cv_folds,
            "fold": self.split.fold,
            "sha256": _sha256(ids),
            "partition_sha256": _sha256(self.split.partition(self.dataset)),
            "counts": {name: len(ids[name]) for name in SPLITS},
        }


def find_data(cfg: TrainConfig, *, keep_going: bool = False) -> FoundData:
    """Discover the files and their groups, hash them, and find duplicates. Refuses nothing.

    keep_going: leave undecodable images out of the hashes (listed as skipped) even
    without skip_bad, as the audit does: it reports them instead of stopping.
    """
    if cfg.data is None and cfg.manifest is None:
        raise DataError("no dataset given: pass --data DIR (a folder with one sub-folder per class)")
    dataset = discover(
        data=cfg.data, manifest=cfg.manifest, positive=cfg.positive, group_regex=cfg.group_regex,
        slices=cfg.slices, skip_bad=cfg.skip_bad,
    )
    log.info(
        "dataset %s: %d images, %d groups, classes %s (positive: %s)",
        dataset.root, len(dataset), len(set(dataset.groups)), list(dataset.classes), dataset.positive,
    )
    fingerprint = dataset.fingerprint()
    hashed = hash_images(dataset, fingerprint=fingerprint, cache_dir=cfg.cache_dir,
                         skip_bad=cfg.skip_bad or keep_going, progress=cfg.progress)
    return FoundData(dataset=dataset, fingerprint=fingerprint, hashed=hashed,
                     duplicates=find_duplicates(dataset, hashed))


def prepare_data(cfg: TrainConfig, *, found: FoundData | None = None) -> PreparedData:
    """find -> merge -> decode -> split; `found`: what find_data already returned for this config."""
    found = found or find_data(cfg)
    dataset = merge_duplicate_groups(found.dataset, found.duplicates, cfg)
    images = load_images(
        dataset,
        cfg.image_size,
        fingerprint=found.fingerprint,
        cache_dir=cfg.cache_dir,
        skip_bad=cfg.skip_bad,
        progress=cfg.progress,
        window=cfg.window,
    )
    if dataset.skipped:  # DICOM / NIfTI files left out at discovery are listed with the undecodable ones
        images = dataclasses.replace(images, skipped=dataset.skipped + images.skipped)
    if not images.keep.any():
        raise DataError(f"every image under {dataset.root} failed to decode")
    split = split_dataset(
        dataset,
        val_fraction=cfg.val_fraction,
        holdout_fraction=cfg.holdout_fraction,
        seed=cfg.split_seed,
        usable=images.keep,
        cv_folds=cfg.cv_folds,
        fold=cfg.fold,
    )
    return PreparedData(dataset=dataset, images=images, split=split, fingerprint=found.fingerprint, found=found)


def _sha256(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
