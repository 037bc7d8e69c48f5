"""Trials packed per GPU: N training runs sharing one device, as `gpus_per_trial: 1/N` packs them.

Ray's fractional GPUs are bookkeeping: a trial with `gpus_per_trial: 0.25` is a process
that sees the whole card, beside three others. So N plain `lungsweep train` processes
started together on one device measure what a packed sweep gets, without Ray (which the
device machine lacks). For each N in --packs it prints the mean images/s of one run, the
sum over the N runs (images/s per GPU), the peak GPU memory one run held (torch's
max_memory_reserved, which `trainers.train` records as gpu_memory_peak_mib) and the wall
time. Steady state: an epoch's training images over its training time, every epoch but
the first (warm-up) when there are more.

    python3 -m bench.searching.bench_gpu_packing --device cuda --packs 1 2 4      # on a GPU machine
    .venv/bin/python -m bench.searching.bench_gpu_packing --smoke-test            # seconds, on the CPU
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import LUNGSWEEP, ROOT
from tests.tests_support import make_dataset
from trainers.run_folder import read_history


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="class-per-folder dataset (default: generated images, 2 x --groups x 2)")
    p.add_argument("--groups", type=int, default=150, help="generated groups per class when --data is not given")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4], help="runs sharing the device at once")
    p.add_argument("--out", help="folder for the runs (default: a temporary one)")
    p.add_argument("--smoke-test", action="store_true", help="test_resnet, 32 px, 1 and 2 runs on the CPU")
    args = p.parse_args(argv)
    if args.smoke_test:
        args.model, args.image_size, args.epochs, args.device, args.packs, args.groups = "test_resnet", 32, 2, "cpu", [1, 2], 12
    if min(args.packs) < 1:
        p.error("--packs must be at least 1")
    return args


def train_command(args: argparse.Namespace, data: Path, out: Path) -> list[str]:
    return [*LUNGSWEEP, "train", "--data", str(data), "--out", str(out),
            "--model", args.model, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
            "--epochs", str(args.epochs), "--device", args.device, "--no-pretrained"]


def steady_state(run_dir: Path) -> tuple[float, float]:
    """(images/s over every epoch but the first, peak GPU MiB) from a run's history."""
    rows = read_history(run_dir)
    timed = rows[1:] or rows
    images = sum(r["train_images_per_second"] * r["train_seconds"] for r in timed)
    seconds = sum(r["train_seconds"] for r in timed)
    peak = max(r.get("gpu_memory_peak_mib", float("nan")) for r in rows)
    return images / seconds, peak


def run_env() -> dict[str, str]:
    """This checkout first on the path, keeping what the caller put there (e.g. carried wheels)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run_pack(args: argparse.Namespace, data: Path, out: Path, n: int) -> dict[str, float]:
    started = time.perf_counter()
    procs, logs = [], [(out / f"pack{n}_run{k}.log").open("w") for k in range(n)]
    for k, log in enumerate(logs):
        procs.append(subprocess.Popen(train_command(args, data, out / f"pack{n}" / f"run{k}"), cwd=ROOT, env=run_env(),
                                      stdout=log, stderr=subprocess.STDOUT))
    codes = [proc.wait() for proc in procs]
    for log in logs:
        log.close()
    for k, code in enumerate(codes):
        if code != 0:
            sys.exit(f"run {k} of the pack of {n} failed; see {out / f'pack{n}_run{k}.log'}")
    wall = time.perf_counter() - started
    per_run = [steady_state(out / f"pack{n}" / f"run{k}") for k in range(n)]
    rates = [r for r, _ in per_run]
    return {"n": n, "per_run": sum(rates) / n, "per_device": sum(rates), "peak_mib": max(p for _, p in per_run),
            "wall": wall}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu-packing-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LUNGSWEEP_CACHE", str(out / "cache"))
    if args.data:
        data = Path(args.data)
    else:
        data = make_dataset(out / "data", groups_per_class=args.groups, per_group=2, seed=1)
    # decode once before timing: the packed runs then share the cache, as trials on one node do
    subprocess.run([*train_command(args, data, out / "warm"), "--epochs", "1"], cwd=ROOT, check=True,
                   env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    print(f"{args.model} {args.image_size} px, batch {args.batch_size}, {args.epochs} epochs on {args.device}; "
          f"data {data}", flush=True)
    print(f"{'runs':>4} {'images/s per run':>17} {'images/s per device':>20} {'peak MiB per run':>17} {'wall s':>7}")
    for n in args.packs:
        row = run_pack(args, data, out, n)
        print(f"{row['n']:4d} {row['per_run']:17.1f} {row['per_device']:20.1f} {row['peak_mib']:17.0f} "
              f"{row['wall']:7.1f}", flush=True)


if __name__ == "__main__":
    main()
