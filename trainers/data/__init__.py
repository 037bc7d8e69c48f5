"""trainers.data: from a folder or manifest to decoded images and a patient-level split.

    data = prepare_data(TrainConfig(data="covid-ct/train"))   # the one way in
    data.dataset, data.images, data.split, data.fingerprint

prepare_data discovers the files and their groups, merges near-duplicates' groups,
decodes once into a cached array and splits by group. Its modules, in that order:
discover (files, labels, groups), medical (DICOM / NIfTI), groups (per-class summary),
phash and duplicates (near and exact copies), images (decode and cache), splits.
Names load on first use (PEP 562).
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "Dataset": "discover", "Grouping": "discover", "discover": "discover", "infer_group": "discover",
    "default_positive": "discover",
    "IMAGE_SUFFIXES": "discover", "file_sha256": "discover",
    "Duplicates": "duplicates", "HASH_IMAGE_SIZE": "duplicates", "find_duplicates": "duplicates",
    "hash_images": "duplicates", "merge_duplicate_groups": "duplicates", "merged_groups": "duplicates",
    "group_summary": "groups", "group_warnings": "groups",
    "DecodedImages": "images", "PREPROCESSING_VERSION": "images", "cache_key": "images", "decode_image": "images",
    "decode_image_sizes": "images", "default_cache_dir": "images", "load_images": "images",
    "expand": "medical", "is_medical": "medical", "read_slice": "medical",
    "FoundData": "prepare", "PreparedData": "prepare", "find_data": "prepare", "prepare_data": "prepare",
    "SPLITS": "splits", "Split": "splits", "split_dataset": "splits",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
