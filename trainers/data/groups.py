"""How honest a dataset's groups are: per class, how many, how many singletons, how large."""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Sequence

import numpy as np

from .discover import Dataset

__all__ = ["group_summary", "group_warnings", "log_group_summary", "SINGLETON_WARN_SHARE"]

log = logging.getLogger(__name__)

# Above this share of one-image groups in a class, the groups likely do not name patients.
SINGLETON_WARN_SHARE = 0.5


def group_summary(dataset: Dataset, groups: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per class: images, groups, singletons, singleton_share, largest_group, largest_group_size.

    `groups` replaces the dataset's own (e.g. after merging near-duplicates). A group
    holding images of two classes counts in both.
    """
    groups = np.asarray(dataset.groups if groups is None else groups)
    summary: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(dataset.classes):
        sizes = Counter(groups[dataset.labels == index].tolist())
        largest, largest_size = max(sizes.items(), key=lambda kv: (kv[1], kv[0])) if sizes else ("", 0)
        singletons = sum(1 for n in sizes.values() if n == 1)
        summary[name] = {
            "images": int((dataset.labels == index).sum()),
            "groups": len(sizes),
            "singletons": singletons,
            "singleton_share": round(singletons / len(sizes), 4) if sizes else 0.0,
            "largest_group": largest,
            "largest_group_size": largest_size,
        }
    return summary


def group_warnings(summary: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"class {name!r}: {s['singletons']} of its {s['groups']} groups hold one image "
        f"({s['singleton_share']:.0%}); if several images come from one patient, the split can put "
        "that patient on both sides: give group_regex, or a manifest with a group column"
        for name, s in summary.items()
        if s["singleton_share"] > SINGLETON_WARN_SHARE
    ]


def log_group_summary(summary: dict[str, dict[str, Any]], *, label: str = "groups") -> None:
    for name, s in summary.items():
        log.info(
            "%s %-12s %4d images in %4d groups, %3.0f%% singletons, largest %r (%d images)",
            label, name, s["images"], s["groups"], 100 * s["singleton_share"], s["largest_group"],
            s["largest_group_size"],
        )
