"""Soak: a sweep hard-killed at random moments and resumed, again and again, until it finishes.

Each round starts `lungsweep launch` (a local Ray under the driver), waits a random
time in [--kill-min, --kill-max] seconds, then SIGKILLs the driver's process group and
every process under it (as `kill -9 -PGID` does after a crash) and launches the same
command again, which resumes. When a round ends by itself the sweep is done. Printed:
the kills, the resumes that met a checkpoint deleted before the crash, any
trial that could not be restored, any resume whose snapshot Tune could not load (it
would start the sweep over) or that was refused, and the final status of every trial.

    python -m bench.searching.bench_kill_resume --out /tmp/soak                     # until done, at most 15 min
    python -m bench.searching.bench_kill_resume --out /tmp/soak --max-seconds 115   # a short look

--data: a folder with one sub-folder per class; default: a generated one (72 small
images, two classes), so the soak needs nothing but this repository. The sweep is tiny
(test_resnet, 32 px, --epochs per trial, keep_checkpoints 2 as in the issue), so a
round costs Ray's start-up and an epoch or two.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import yaml
from PIL import Image

import search
from search.record import SWEEP_FILE
from bench.common import LUNGSWEEP

RECOVERED = "was deleted before the crash"
LOST = "does not exist on storage anymore"
RESTARTED = "Failed to restore the run state"  # Tune's own log line before it silently starts a sweep over
REFUSED = "lungsweep launch: error:"  # a torn snapshot, named (search/snapshot.py)


def generated_data(root: Path, per_class: int = 36, seed: int = 0) -> Path:
    """Positives carry bright blobs, negatives are noise: learnable in an epoch or two."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(("CT_COVID", "CT_NonCOVID")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.normal(70, 18, size=(40, 40))
            if c == 0:
                yy, xx = np.mgrid[:40, :40]
                cy, cx = rng.uniform(12, 28, size=2)
                img += 110 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 50.0)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name / f"{name.lower()}{i // 3}%{i}.png")
    return root


def tiny_sweep(data: Path, *, num_samples: int, epochs: int, keep: int = 2, concurrent: int = 1,
               startup_trials: int = 2) -> dict:
    """A sweep.yaml of trivial trials (test_resnet, 32 px) that never stop early."""
    return {
        "metric": "val_loss", "mode": "min", "num_samples": num_samples, "max_concurrent": concurrent,
        "startup_trials": startup_trials, "keep_checkpoints": keep,
        "asha": {"max_epochs": epochs, "grace_period": epochs, "reduction_factor": 2},
        "train": {"data": str(data), "model": "test_resnet", "image_size": 32, "val_fraction": 0.2,
                  "holdout_fraction": 0.2, "patience": None, "num_threads": 1, "warmup_epochs": 0.5},
        "space": {"lr": {"loguniform": [1e-3, 0.1]}, "batch_size": {"choice": [8, 16]}},
    }


def sweep_file(path: Path, data: Path, args: argparse.Namespace) -> Path:
    path.write_text(yaml.safe_dump(tiny_sweep(data, num_samples=args.num_samples, epochs=args.epochs), sort_keys=False))
    return path


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the driver's process group, then anything under it that left the group (by pid)."""
    try:
        under = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        under = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in under:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(under, timeout=10)
    proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="dataset folder (default: a generated one)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/lungsweep-soak"))
    parser.add_argument("--num-samples", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--kill-min", type=float, default=20.0, help="seconds after a launch before a kill, at least")
    parser.add_argument("--kill-max", type=float, default=45.0, help="... and at most")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop the soak (unfinished) after this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or generated_data(args.out / "data")
    run_dir = args.out / "sweep"
    cmd = [*LUNGSWEEP, "launch", "--config", str(sweep_file(args.out / "s.yaml", data, args)),
           "--out", str(run_dir)]
    env = {**os.environ, "LUNGSWEEP_CACHE": str(args.out / "cache")}
    start, kills, rounds, done = time.monotonic(), 0, 0, False
    texts = []
    while time.monotonic() - start < args.max_seconds:
        log = args.out / f"round-{rounds}.log"
        rounds += 1
        with log.open("w") as sink:
            proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        wait = rng.uniform(args.kill_min, args.kill_max)
        wait = min(wait, max(0.5, args.max_seconds - (time.monotonic() - start)))
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            kills += 1
        texts.append(log.read_text(errors="replace"))
        print(f"round {rounds}: {'finished' if proc.returncode == 0 else f'killed after {wait:.1f} s'}"
              f" ({time.monotonic() - start:.0f} s)", flush=True)
        if proc.returncode == 0:
            done = True
            break
        if proc.returncode not in (0, -signal.SIGKILL):
            print(f"round {rounds} failed (exit {proc.returncode}); its log: {log}")
            break
    text = "\n".join(texts)
    print(f"soak: {rounds} rounds, {kills} kills, {time.monotonic() - start:.0f} s, "
          f"{'finished' if done else 'unfinished (time limit)'}")
    print(f"resumes that met a checkpoint deleted before the crash: {text.count(RECOVERED)}")
    print(f"trials that could not be restored: {text.count(LOST)}")
    print(f"resumes whose snapshot Tune could not load (it would start over): {text.count(RESTARTED)}")
    print(f"resumes refused with a named error: {text.count(REFUSED)}")
    complete = False
    if (run_dir / SWEEP_FILE).is_file():
        try:
            table = search.load_results(run_dir)
            print(table[["trial_id", "status", "epochs", "best_metric"]].to_string(index=False))
            complete = len(table) == args.num_samples and set(table.status) == {"completed"}
        except Exception as e:  # an unfinished sweep killed before Tune's first snapshot
            print(f"no results table yet: {e}")
    if done:
        print(f"every one of the {args.num_samples} trials completed (and no more): {complete}")
    failed = text.count(LOST) or text.count(RESTARTED) or text.count(REFUSED) or (done and not complete)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
