"""Soak: a sweep of many trivial trials on the local Ray; does the driver grow, does disk stay bounded?

Runs `lungsweep launch` on a generated dataset (72 images, 32 px, test_resnet) with
--trials trials of --epochs epochs each, and samples the driver process every second.
Printed: the driver's RSS when 50, 250 and 500 trials (or the fractions of --trials)
have finished, wall time per trial, and the disk the checkpoints take against
trials x keep_checkpoints x checkpoint size (the bound Tune's num_to_keep promises).

    python -m bench.searching.bench_soak --out /tmp/soak500                 # 500 trials, ~25 min on 2 cores
    python -m bench.searching.bench_soak --out /tmp/soak20 --trials 20      # a quick look

Epochs default to 3 with keep_checkpoints 2, so every trial deletes a checkpoint and
the bound is tight (a 1-epoch trial holds one checkpoint whatever keep_checkpoints says).
Tune keeps the best keep_checkpoints by the metric plus the latest, so a trial whose last
epoch is not among its best holds one more: the hard bound is trials x (keep + 1) x size.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from bench.common import LUNGSWEEP
from bench.searching.bench_kill_resume import generated_data, tiny_sweep


def sweep_file(path: Path, data: Path, args: argparse.Namespace) -> Path:
    raw = tiny_sweep(data, num_samples=args.trials, epochs=args.epochs, keep=args.keep, concurrent=args.concurrent,
                     startup_trials=10)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


class FinishedTrials:
    """Counts trials whose result.json holds every epoch; a finished trial is not read again."""

    def __init__(self, run_dir: Path, epochs: int) -> None:
        self.run_dir, self.epochs, self.done = run_dir, epochs, set()

    def count(self) -> int:
        for log in self.run_dir.glob("trial_*/result.json"):
            if log.parent.name in self.done:
                continue
            try:
                lines = [line for line in log.read_text().splitlines() if line.strip()]
                if lines and json.loads(lines[-1]).get("training_iteration") == self.epochs:
                    self.done.add(log.parent.name)
            except (OSError, json.JSONDecodeError):
                pass  # being written
        return len(self.done)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lungsweep-soak"))
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--keep", type=int, default=2, help="keep_checkpoints")
    parser.add_argument("--concurrent", type=int, default=2)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = args.out / "sweep"
    if run_dir.exists():
        sys.exit(f"{run_dir} exists: give a fresh --out (the soak measures a sweep from its start)")
    data = generated_data(args.out / "data")
    cmd = [*LUNGSWEEP, "launch", "--config", str(sweep_file(args.out / "s.yaml", data, args)),
           "--out", str(run_dir)]
    env = {**os.environ, "LUNGSWEEP_CACHE": str(args.out / "cache")}
    marks = sorted({max(1, round(args.trials * f)) for f in (0.1, 0.5, 1.0)})  # 50 / 250 / 500 of 500
    seen: dict[int, tuple[float, float]] = {}  # mark -> (seconds, driver RSS MiB)
    peak = 0.0
    start = time.monotonic()
    with (args.out / "driver.log").open("w") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        driver = psutil.Process(proc.pid)
        finished = FinishedTrials(run_dir, args.epochs)
        while proc.poll() is None:
            time.sleep(1.0)
            try:
                rss = driver.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                break
            peak = max(peak, rss)
            n = finished.count()
            for mark in marks:
                if n >= mark and mark not in seen:
                    seen[mark] = (time.monotonic() - start, rss)
                    print(f"{n:4d} trials finished  {seen[mark][0]:7.0f} s  driver RSS {rss:7.1f} MiB", flush=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        print(f"the sweep failed (exit {proc.returncode}); its log: {args.out / 'driver.log'}")
        return 1

    checkpoints = [c for c in run_dir.glob("trial_*/checkpoint_*") if c.is_dir()]
    sizes = [folder_bytes(c) for c in checkpoints]
    trials = len(list(run_dir.glob("trial_*")))
    mean_size = sum(sizes) / max(1, len(sizes))
    bound = trials * min(args.keep, args.epochs) * mean_size
    extra = len(checkpoints) - trials * min(args.keep, args.epochs)
    first, last = seen[marks[0]][1], seen[marks[-1]][1]
    print(f"\nsoak: {trials} trials x {args.epochs} epochs, keep_checkpoints {args.keep}, "
          f"{args.concurrent} at a time, {wall:.0f} s ({wall / trials:.2f} s per trial)")
    print("driver RSS: " + ", ".join(f"{m} trials {seen[m][1]:.0f} MiB" for m in marks)
          + f"; peak {peak:.0f} MiB; growth {marks[0]}->{marks[-1]}: {last - first:+.0f} MiB")
    print(f"checkpoints on disk: {len(checkpoints)} folders, {sum(sizes) / 2**20:.1f} MiB; "
          f"trials x keep x mean size = {trials} x {min(args.keep, args.epochs)} x {mean_size / 2**10:.0f} KiB "
          f"= {bound / 2**20:.1f} MiB (ratio {sum(sizes) / bound:.3f}); "
          f"trials holding the latest beside their best {args.keep}: {extra}")
    print(f"run folder in all: {folder_bytes(run_dir) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
