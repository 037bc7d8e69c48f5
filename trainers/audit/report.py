"""Audit a dataset's groups: duplicates, straddling copies, images labelled twice, a source shortcut.

    report = audit_config(TrainConfig(data="covid-ct/train"))   # `lungsweep audit`: find the data, then audit
    report = audit_found(cfg, prepare_data(cfg).found)            # a door that prepared the data already
    audit_into(RUN_DIR, cfg, found)   # RUN_DIR/audit.json once: `lungsweep train`, `launch` and `run` call it
    audit_summary(read_audit(RUN_DIR / AUDIT_FILE))   # the headline numbers, for an ensemble report

The audit runs at the door of a command, never inside training: train() and
train_bag() do not import it.

audit.json keys (AUDIT_VERSION 1; new keys may be added, these keep their meaning):
  version                    1
  dataset                    root, images, classes, positive, fingerprint, group_regex
  settings                   max_distance (pHash bits), hash_image_size, val_fraction, holdout_fraction, split_seed
  groups.rule                how the groups were formed (trainers.data.discover.Grouping): rule ("group_regex",
                             "manifest", "dicom", "name", "name+K", "stem", "given"), description, reason
  groups.before_merge        per class: images, groups, singletons, singleton_share, largest_group, largest_group_size
  groups.after_merge         the same after merging near-duplicates' groups
  near_duplicates            count, cross_class, groups_merged, pairs: [{a, b, distance, same_group, cross_class}],
                             nearest_histogram: 65 counts, images whose nearest other image lies at 0..64 bits
  exact_duplicates           count, pairs: [{a, b, kind: "bytes"|"pixels", cross_class}]
  cross_class_duplicates     [{a, b, label_a, label_b, kind}]: one image labelled twice (an error)
  split                      straddling (count), straddling_after_merge (count), error (null or why no split),
                             pairs: [{a, b, split_a, split_b, distance}]: near-duplicates the split of the
                             groups as given puts on two sides
  shortcut                   auc (null when impossible), folds, images, model, features, warning, error
  warnings, errors           lists of sentences; errors make `lungsweep audit` exit 1
  seconds                    wall time of the audit
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_write_text
from ..data.discover import Dataset
from ..data.duplicates import HASH_IMAGE_SIZE, Duplicates, find_duplicates, merged_groups
from ..errors import DataError, SplitError
from ..records import read_record_file
from .html import render_html
from ..data.groups import group_summary, group_warnings
from ..data.images import DecodedImages
from ..data.phash import DEFAULT_MAX_DISTANCE, nearest_distances
from .shortcut import FEATURES, SHORTCUT_WARN_AUC, format_features, shortcut_auc
from ..data.prepare import FoundData, find_data
from ..data.splits import SPLITS, split_dataset

if TYPE_CHECKING:
    from ..config import TrainConfig

__all__ = ["AUDIT_FILE", "AUDIT_HTML", "AUDIT_VERSION", "audit_dataset", "audit_config", "audit_found", "audit_into",
           "audit_summary", "write_audit", "format_audit", "read_audit"]

log = logging.getLogger(__name__)

AUDIT_VERSION = 1


AUDIT_FILE = "audit.json"  # beside a train run, a bag or a sweep (RUN_DIR/audit.json, RUN_DIR/audit.html)
AUDIT_HTML = "audit.html"


def audit_config(cfg: "TrainConfig") -> dict[str, Any]:
    """Audit the dataset a training config names (`lungsweep audit`): undecodable images are listed, not fatal."""
    if cfg.data is None and cfg.manifest is None:
        raise DataError("no dataset given to audit: pass a folder (DATA) or --manifest FILE")
    return audit_found(cfg, find_data(cfg, keep_going=True))


def audit_found(cfg: "TrainConfig", found: FoundData) -> dict[str, Any]:
    """The audit of what find_data (or prepare_data, as `.found`) discovered and hashed, with cfg's split settings."""
    return audit_dataset(
        found.dataset, found.hashed, fingerprint=found.fingerprint, duplicates=found.duplicates,
        group_regex=cfg.group_regex, val_fraction=cfg.val_fraction, holdout_fraction=cfg.holdout_fraction,
        split_seed=cfg.split_seed, cache_dir=cfg.cache_dir, progress=cfg.progress,
    )


def audit_into(folder: str | Path, cfg: "TrainConfig", found: FoundData, *, html: bool = False) -> dict[str, Any] | None:
    """A command's door: FOLDER/audit.json (and audit.html), once. Returns the new report, or None when the
    folder already holds one (a resumed run, bag or sweep keeps the audit of the data it was checked to share)."""
    folder = Path(folder)
    if (folder / AUDIT_FILE).is_file():
        return None
    report = audit_found(cfg, found)
    folder.mkdir(parents=True, exist_ok=True)
    write_audit(report, folder / AUDIT_FILE, folder / AUDIT_HTML if html else None)
    return report


def audit_dataset(
    dataset: Dataset,
    images: DecodedImages,
    *,
    fingerprint: str,
    group_regex: str | None = None,
    val_fraction: float = 0.15,
    holdout_fraction: float = 0.15,
    split_seed: int = 0,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    duplicates: Duplicates | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The audit report of `dataset` (groups as discovered) from its fixed-size decode `images`.

    duplicates: find_duplicates' result for these images when the caller has it already.
    """
    t0 = time.perf_counter()
    ids, classes = dataset.ids, dataset.classes
    label = [classes[k] for k in dataset.labels]
    if duplicates is None or duplicates.max_distance != max_distance:
        duplicates = find_duplicates(dataset, images, max_distance=max_distance)
    dups = duplicates
    merged = replace(dataset, groups=merged_groups(dataset.groups, dups.near))
    before, after = group_summary(dataset), group_summary(merged)
    warnings = group_warnings(after)
    errors: list[str] = []

    near = [
        {"a": ids[i], "b": ids[j], "distance": d, "same_group": dataset.groups[i] == dataset.groups[j],
         "cross_class": label[i] != label[j]}
        for i, j, d in dups.near
    ]
    exact = [{"a": ids[i], "b": ids[j], "kind": kind, "cross_class": label[i] != label[j]} for i, j, kind in dups.exact]
    cross = [
        {"a": ids[i], "b": ids[j], "label_a": label[i], "label_b": label[j], "kind": kind}
        for i, j, kind in dups.cross_class_exact(dataset)
    ]
    for c in cross:
        errors.append(f"{c['a']} ({c['label_a']}) and {c['b']} ({c['label_b']}) hold identical {c['kind']}: "
                      "one image labelled twice; remove one copy or fix its label")
    n_cross_near = sum(p["cross_class"] for p in near)
    if n_cross_near > len(cross):
        warnings.append(f"{n_cross_near - len(cross)} near-duplicate pair(s) carry different labels: check them "
                        "(the near_duplicates list, cross_class: true)")

    split = _straddling(dataset, merged, dups, images.keep, val_fraction, holdout_fraction, split_seed)
    if split["straddling"]:
        warnings.append(f"{split['straddling']} near-duplicate pair(s) fall into two splits when the groups are "
                        "used as given; merge_duplicates: true (the default) keeps each pair in one split")

    x = format_features(dataset, images, fingerprint=fingerprint, cache_dir=cache_dir, progress=progress)
    shortcut = {**shortcut_auc(x, dataset.binary_labels, np.asarray(merged.groups), seed=split_seed),
                "features": list(FEATURES)}
    if shortcut["warning"]:
        warnings.append(
            f"the label is predictable from image format alone (size, mode, file type, borders, ink): "
            f"group-cross-validated AUC {shortcut['auc']:.3f} > {SHORTCUT_WARN_AUC}; a network can learn the "
            "image source instead of the lungs: check a model on scans from one source"
        )

    return {
        "version": AUDIT_VERSION,
        "dataset": {"root": dataset.root, "images": len(dataset), "classes": list(classes),
                    "positive": dataset.positive, "fingerprint": fingerprint, "group_regex": group_regex},
        "settings": {"max_distance": max_distance, "hash_image_size": HASH_IMAGE_SIZE, "val_fraction": val_fraction,
                     "holdout_fraction": holdout_fraction, "split_seed": split_seed},
        "groups": {"rule": dataset.grouping.as_dict(), "before_merge": before, "after_merge": after},
        "near_duplicates": {"count": len(near), "cross_class": n_cross_near,
                            "groups_merged": len(set(dataset.groups)) - len(set(merged.groups)), "pairs": near,
                            "nearest_histogram": _nearest_histogram(dups)},
        "exact_duplicates": {"count": len(exact), "pairs": exact},
        "cross_class_duplicates": cross,
        "split": split,
        "shortcut": shortcut,
        "skipped": [{"id": i, "reason": r} for i, r in images.skipped],
        "warnings": warnings,
        "errors": errors,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _nearest_histogram(dups: Duplicates) -> list[int]:
    usable = np.flatnonzero(dups.usable)
    if len(usable) < 2:
        return [0] * 65
    return np.bincount(nearest_distances(dups.hashes[usable]), minlength=65).tolist()


def _straddling(
    dataset: Dataset, merged: Dataset, dups: Duplicates, usable: np.ndarray,
    val_fraction: float, holdout_fraction: float, seed: int,
) -> dict[str, Any]:
    """Near-duplicate pairs on two sides of the split of the groups as given, and after merging."""
    where: list[dict[int, str]] = []
    try:
        for ds in (dataset, merged):
            split = split_dataset(ds, val_fraction=val_fraction, holdout_fraction=holdout_fraction, seed=seed,
                                  usable=usable, describe=False)  # the training run describes its own split
            where.append({int(i): name for name in SPLITS for i in split[name]})
    except SplitError as e:
        return {"straddling": 0, "straddling_after_merge": 0, "error": str(e), "pairs": []}
    pairs = [
        {"a": dataset.ids[i], "b": dataset.ids[j], "split_a": where[0][i], "split_b": where[0][j], "distance": d}
        for i, j, d in dups.near
        if where[0].get(i) != where[0].get(j)
    ]
    after = sum(where[1].get(i) != where[1].get(j) for i, j, _ in dups.near)
    return {"straddling": len(pairs), "straddling_after_merge": int(after), "error": None, "pairs": pairs}


def audit_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an audit, for a report section (e.g. the ensemble's)."""
    return {
        "group_rule": report["groups"].get("rule", {}).get("rule"),  # None in an audit.json from before the key
        "groups_per_class": {c: s["groups"] for c, s in report["groups"]["after_merge"].items()},
        "groups_per_class_before_merge": {c: s["groups"] for c, s in report["groups"]["before_merge"].items()},
        "singleton_share": {c: s["singleton_share"] for c, s in report["groups"]["after_merge"].items()},
        "near_duplicate_pairs": report["near_duplicates"]["count"],
        "exact_duplicate_pairs": report["exact_duplicates"]["count"],
        "straddling_pairs": report["split"]["straddling"],
        "cross_class_duplicates": len(report["cross_class_duplicates"]),
        "shortcut_auc": report["shortcut"]["auc"],
        "warnings": len(report["warnings"]),
        "errors": len(report["errors"]),
    }


def format_audit(report: dict[str, Any]) -> str:
    """A few lines for a terminal."""
    lines = [f"audit of {report['dataset']['root']}: {report['dataset']['images']} images"]
    rule = report["groups"].get("rule")
    if rule:
        lines.append(f"  groups by rule {rule['rule']!r}: {rule['description']} ({rule['reason']})")
    for c, s in report["groups"]["after_merge"].items():
        b = report["groups"]["before_merge"][c]
        lines.append(f"  {c}: {b['groups']} groups as named, {s['groups']} after merging near-duplicates; "
                     f"{s['singleton_share']:.0%} singletons; largest {s['largest_group']!r} ({s['largest_group_size']})")
    nd, sp, sc = report["near_duplicates"], report["split"], report["shortcut"]
    lines.append(f"  near-duplicate pairs: {nd['count']} ({nd['cross_class']} across classes); exact duplicates: "
                 f"{report['exact_duplicates']['count']}; straddling the split: {sp['straddling']}")
    auc = "n/a" if sc["auc"] is None else f"{sc['auc']:.3f}"
    lines.append(f"  shortcut AUC (format features only): {auc}")
    lines += [f"warning: {w}" for w in report["warnings"]] + [f"error: {e}" for e in report["errors"]]
    return "\n".join(lines)


def write_audit(report: dict[str, Any], json_path: str | Path | None = None, html_path: str | Path | None = None) -> None:
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
    if html_path is not None:
        atomic_write_text(html_path, render_html(report))


REQUIRED_KEYS = ("version", "dataset", "groups", "near_duplicates", "exact_duplicates", "cross_class_duplicates",
                 "split", "shortcut", "warnings", "errors")


def read_audit(path: str | Path) -> dict[str, Any]:
    """audit.json, checked for the keys its readers use: a DataError that names the file otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / AUDIT_FILE
    report = read_record_file(path, required=REQUIRED_KEYS, error=DataError, missing=f"{path} is missing",
                              remedy="run `lungsweep audit DATA --out audit.json` again")
    if report["version"] > AUDIT_VERSION:
        raise DataError(f"{path} has audit version {report['version']}; upgrade lungsweep to read it")
    return report
