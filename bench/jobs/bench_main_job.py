"""The README's main job against the one-model quick start, judged on the same untouched holdout.

    main job:     `lungsweep run --quick` (two pretrained configs as 3-fold bags, an ensemble fitted on
                  their out-of-fold predictions, exported to ONNX); with --job default, `lungsweep run`
                  (the bundled default sweep: 12 trials of 5-fold bags within an hour)
    single model: `lungsweep train --config configs/quickstart.yaml` (one EfficientNet-Lite0, best epoch
                  chosen on a validation split)

Both share split_seed 0, so both hold out the same images (the holdout is cut before the
validation split or the folds). Prints each one's holdout AUC and accuracy with 95%
group-bootstrap intervals and its wall time.

    .venv/bin/python -m bench.jobs.bench_main_job --out runs/bench_main_job      # ~15-20 min on 2 CPU cores
    .venv/bin/python -m bench.jobs.bench_main_job --job default --out runs/bench_default_job   # ~70 min
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import DATA, LUNGSWEEP, ROOT
from ensemble import bootstrap_metrics, metric_text, read_metrics
from trainers.checkpoint import read_meta
from trainers.inference import sigmoid


def timed(cmd: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as fh:
        done = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed; see {log}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_main_job")
    parser.add_argument("--job", choices=["quick", "default"], default="quick",
                        help="the main job to run: `lungsweep run --quick` or `lungsweep run` (the default sweep)")
    parser.add_argument("--skip-main", action="store_true", help="reuse OUT/main from an earlier run")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LUNGSWEEP_CACHE", str(out / "cache"))  # a cold cache: decoding counts, as for a new user

    rows = {}
    if not args.skip_main:
        quick = ["--quick"] if args.job == "quick" else []
        seconds = timed([*LUNGSWEEP, "run", *quick, "--data", str(DATA), "--out", str(out / "main")],
                        out / "main.log")
    else:
        seconds = float("nan")
    metrics = read_metrics(out / "main" / "ensemble")
    rows["main job (lungsweep run --quick)" if args.job == "quick" else "main job (lungsweep run)"] = (metrics, seconds)

    seconds = timed([*LUNGSWEEP, "train", "--config", "configs/quickstart.yaml", "--out", str(out / "single"),
                     "--resume"], out / "single.log")
    rows["quick-start single model"] = (single_model_metrics(out / "single" / "best"), seconds)

    print(f"{'model':34s} {'holdout AUC [95% CI]':26s} {'accuracy [95% CI]':26s} {'n':>4s} {'wall':>8s}")
    for name, (m, seconds) in rows.items():
        print(f"{name:34s} {metric_text(m, 'auc'):26s} {metric_text(m, 'accuracy'):26s} {m['n']:4d} "
              f"{seconds / 60:6.1f} min")
    (out / "summary.json").write_text(json.dumps({k: {"metrics": v[0], "seconds": v[1]} for k, v in rows.items()},
                                                 indent=1, default=float))


def single_model_metrics(checkpoint: Path) -> dict:
    holdout = read_meta(checkpoint)["predictions"]["holdout"]
    ids = sorted(holdout)
    y = np.array([holdout[i]["label"] for i in ids])
    p = sigmoid(np.array([holdout[i]["logit"] for i in ids]))
    groups = np.array([holdout[i]["group"] for i in ids])
    return bootstrap_metrics(y, p, groups, 0.5, n_boot=1000)


if __name__ == "__main__":
    main()
