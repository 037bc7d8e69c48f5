"""How honest a dataset's groups are: per class, how many, how many singletons, how large, and
whether one group swallows a class."""
from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np

if TYPE_CHECKING:
    from .discover import Dataset

__all__ = ["group_summary", "group_warnings", "log_group_summary", "swallowed", "Swallowed", "SINGLETON_WARN_SHARE",
           "SWALLOW_SHARE", "SWALLOW_MIN_IMAGES"]

log = logging.getLogger(__name__)

# Above this share of one-image groups in a class, the groups likely do not name patients.
SINGLETON_WARN_SHARE = 0.5
# One group holding over this share of a class of SWALLOW_MIN_IMAGES or more images "swallows" it: the
# file names were read too coarsely (`covid_0.png` ... `covid_97.png` -> one group `covid`).
SWALLOW_SHARE = 0.25
SWALLOW_MIN_IMAGES = 20


class Swallowed(NamedTuple):
    """A class most of which one group holds."""

    label: str
    group: str
    size: int  # images of the class in that group
    images: int  # images of the class

    @property
    def share(self) -> float:
        return self.size / self.images

    def sentence(self) -> str:
        return (f"class {self.label!r} is swallowed: group {self.group!r} holds {self.size} of its {self.images} "
                f"images ({self.share:.0%})")


def swallowed(labels: Sequence[str], groups: Sequence[str]) -> Swallowed | None:
    """The class whose largest group holds the largest share of it, among the classes of SWALLOW_MIN_IMAGES+
    images where that share is over SWALLOW_SHARE; None when no class is swallowed."""
    by_class: dict[str, Counter[str]] = {}
    for label, group in zip(labels, groups):
        by_class.setdefault(label, Counter())[group] += 1
    found = []
    for label, sizes in sorted(by_class.items()):
        images = sum(sizes.values())
        group, size = min(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
        if images >= SWALLOW_MIN_IMAGES and size > SWALLOW_SHARE * images:
            found.append(Swallowed(label, group, size, images))
    return max(found, key=lambda s: s.share, default=None)


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
