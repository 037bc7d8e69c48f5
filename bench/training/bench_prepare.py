"""What preparing the data costs each trial: discovery, hashing, groups, duplicates and the split, with warm caches.

Every trial of a sweep calls trainers.prepare_data for its own config (image size, fold); the
images are decoded once per node before any trial starts (search.cluster), so a trial pays
only for reading what is cached. This times that per-trial part on a dataset as a trial
would see it: find_data (file list, content hashes, groups, near-duplicates) and the rest of
prepare_data (merging groups, opening the decoded cache, the split), the first call warming
the caches it uses, then --repeats more. CPU seconds are shown beside the wall time, since a
sweep on the same machine shares the cores.

    .venv/bin/python -m bench.training.bench_prepare                       # the COVID-CT training split
    .venv/bin/python -m bench.training.bench_prepare --data DIR --image-size 192
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time

import numpy as np

from bench.common import DATA
from trainers import TrainConfig, prepare_data
from trainers.data.prepare import find_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--cv-folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as cache:
        cfg = TrainConfig.from_dict({
            "data": args.data, "model": "efficientnet_lite0", "image_size": args.image_size,
            "cv_folds": args.cv_folds, "fold": 0, "holdout_fraction": 0.15, "progress": False, "cache_dir": cache,
        })
        started = time.perf_counter()
        prepared = prepare_data(cfg)  # the node's one decode, before the sweep's trials
        print(f"{len(prepared.dataset)} images; first call (decodes into the cache): "
              f"{time.perf_counter() - started:.1f} s")
        walls, cpus = [], []
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            prepare_data(cfg, found=find_data(cfg))
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        print(f"per trial, warm caches ({args.repeats} calls): {np.median(walls):.2f} s wall, "
              f"{np.median(cpus):.2f} s CPU (median)")


if __name__ == "__main__":
    main()
