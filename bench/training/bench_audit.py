"""The dataset audit on the real COVID-CT training images.

Prints, for the old default grouping (the file stem before '%') and the new one
(crops of one paper page form one group):
  groups per class as named and after merging near-duplicates (pHash),
  near-duplicate pairs that the split of the groups as given puts on two sides;
and, once: duplicate pairs found, the per-threshold counts that chose the merge
threshold, the format-only shortcut AUC, and the audit's wall time, cold (fresh
decode cache: decoding and file headers included) and warm (what `train` pays).

Goal: the cold audit of 543 images under 30 s on 2 cores.

    .venv/bin/python -m bench.training.bench_audit [--data ../shared/datasets/covid-ct-qsr/train]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.common import DATA
from trainers import discover
from trainers.audit.report import audit_dataset, format_audit
from trainers.data.duplicates import find_duplicates, hash_images
from trainers.data.phash import hamming_matrix


def old_default_group(sample_id: str) -> str:
    """The first default grouping: the file stem before any '%'."""
    return Path(sample_id).stem.split("%", 1)[0]


def audit(dataset, cache: str):
    fingerprint = dataset.fingerprint()
    images = hash_images(dataset, fingerprint=fingerprint, cache_dir=cache, skip_bad=True, progress=False)
    return audit_dataset(dataset, images, fingerprint=fingerprint, cache_dir=cache, progress=False), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"# bench_audit {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, data {args.data}")

    new = discover(data=args.data)
    old = replace(new, groups=tuple(old_default_group(i) for i in new.ids))
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        report, images = audit(new, cache)  # cold: decode at 64 px and read every file's header and ink
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        audit(new, cache)
        warm = time.perf_counter() - t0
        old_report, _ = audit(old, cache)

    print("\n| grouping | class | images | groups as named | after merging | singletons as named | after merging |")
    print("|---|---|---|---|---|---|---|")
    runs = (("old: stem before '%'", old_report), ("new: page of the paper", report))
    for name, r in runs:
        for c, s in r["groups"]["after_merge"].items():
            b = r["groups"]["before_merge"][c]
            print(f"| {name} | {c} | {s['images']} | {b['groups']} | {s['groups']} | {b['singleton_share']:.0%} "
                  f"| {s['singleton_share']:.0%} |")
    for name, r in runs:
        print(f"near-duplicate pairs on two sides of the default split (val 0.15, holdout 0.15, seed 0), {name}: "
              f"groups as named {r['split']['straddling']}, after merging {r['split']['straddling_after_merge']}")

    nd = report["near_duplicates"]
    print(f"\nnear-duplicate pairs (pHash <= {report['settings']['max_distance']} bits): {nd['count']}, "
          f"{nd['cross_class']} across classes, {nd['groups_merged']} groups merged; exact duplicates: "
          f"{report['exact_duplicates']['count']}; images labelled twice: {len(report['cross_class_duplicates'])}")

    # how the threshold was chosen: pairs within t bits, of them in one named group, and across classes
    dups = find_duplicates(new, images)
    dist = hamming_matrix(dups.hashes)
    i, j = np.triu_indices(len(new), 1)
    d = dist[i, j]
    same = np.asarray(new.groups)[i] == np.asarray(new.groups)[j]
    cross = new.labels[i] != new.labels[j]
    print("\n| max bits | pairs | same named group | across classes |")
    print("|---|---|---|---|")
    for t in (0, 2, 4, 6, 8, 10):
        print(f"| {t} | {int((d <= t).sum())} | {int((same & (d <= t)).sum())} | {int((cross & (d <= t)).sum())} |")

    sc = report["shortcut"]
    print(f"\nshortcut AUC (format features only, {sc['folds']}-fold group CV): {sc['auc']:.3f}; "
          f"old grouping: {old_report['shortcut']['auc']:.3f}")
    print(f"audit wall time: cold {cold:.1f} s (decode + headers + audit), warm {warm:.1f} s; "
          f"goal < 30 s cold: {'met' if cold < 30 else 'NOT met'}")
    print("\n" + format_audit(report))


if __name__ == "__main__":
    main()
