"""Memory per trial: a long sweep on one machine, every trial worker's RSS and the node's use sampled.

A reused trial worker (Tune's reuse_actors) kept what each trial allocated: after 18 trials
of the wide arm two workers held 12.1 and 8.6 GB of 24 and Ray's memory monitor killed one.
Now each trial gets a fresh worker (reuse_actors: false, the default) and every fold ends
with `trainers.memory.release_memory`. This bench runs a sweep of --trials trials over the
bundled default space (its backbones, image sizes and batch sizes; --epochs per fold, short)
and, every --every seconds, reads the RSS of each process Ray runs a trial in (its title
names Tune's trainable) and the node's used memory (total - available). It prints

    - one trial's standalone peak: the largest config of the space (Lite2 at 192 px, batch
      32), trained as one bag in a fresh process, its peak RSS (ru_maxrss);
    - each trial worker's peak RSS against it (the worst and the median), and how many
      workers ran (one per trial when workers are not reused);
    - the node's peak use, as a share of its memory;
    - the memory-monitor kills (Ray's OutOfMemoryError in the driver's log);
    - the sweep's wall time per trial, and --compare-reuse runs the first --compare trials
      again with reuse_actors true: the per-trial cost of a fresh worker.

    .venv/bin/python -m bench.searching.bench_memory --out /tmp/bench-memory             # 40 trials, ~25 min
    .venv/bin/python -m bench.searching.bench_memory --out /tmp/bench-memory --trials 6   # a short look
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

from bench.common import DATA, LUNGSWEEP, ROOT
from search.record import SWEEP_COUNT

TRIAL_TITLE = "ImplicitFunc"  # Ray titles a trial's worker process after Tune's function trainable
OOM = re.compile(r"OutOfMemoryError|memory monitor killed")


def sweep_config(data: Path, *, trials: int, epochs: int, reuse: bool) -> dict:
    """The bundled default sweep, shortened: --trials trials of --epochs epochs per fold, no time budget."""
    raw = yaml.safe_load((ROOT / "search/sweeps/default.yaml").read_text())
    raw["train"] = {**raw["train"], "data": str(data)}
    raw.update(num_samples=trials, time_budget_s=None, reuse_actors=reuse)
    raw["asha"] = {**raw["asha"], "max_epochs": epochs}
    return raw


class Sampler(threading.Thread):
    """Every `every` seconds: the RSS of each trial worker under `root`, and the node's used memory."""

    def __init__(self, root: int, every: float) -> None:
        super().__init__(daemon=True)
        self.root, self.every = root, every
        self.worker_peak: dict[int, int] = {}
        self.node_peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            memory = psutil.virtual_memory()
            self.node_peak = max(self.node_peak, memory.total - memory.available)
            try:
                children = psutil.Process(self.root).children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for p in children:
                try:
                    if TRIAL_TITLE in " ".join(p.cmdline()):
                        self.worker_peak[p.pid] = max(self.worker_peak.get(p.pid, 0), p.memory_info().rss)
                except psutil.Error:
                    pass
            self.done.wait(self.every)


def run_sweep(raw: dict, out: Path, every: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    config = out / "sweep.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    log = out / "driver.log"
    started = time.monotonic()
    with log.open("w") as sink:
        driver = subprocess.Popen([*LUNGSWEEP, "launch", "--config", str(config), "--out",
                                   str(out / "sweep")], stdout=sink, stderr=subprocess.STDOUT)
    sampler = Sampler(driver.pid, every)
    sampler.start()
    driver.wait()
    sampler.done.set()
    sampler.join()
    text = log.read_text()
    count_file = out / "sweep" / SWEEP_COUNT
    return {
        "rc": driver.returncode, "seconds": time.monotonic() - started,
        "workers": sampler.worker_peak, "node_peak": sampler.node_peak,
        "oom_kills": len(OOM.findall(text)),
        "count": json.loads(count_file.read_text()) if count_file.is_file() else None,
    }


def standalone_peak(data: Path, out: Path, epochs: int) -> int:
    """Peak RSS (bytes) of one bag of the space's largest config, trained in a fresh process."""
    code = f"""
import json, resource, sys
from trainers import TrainConfig, train_bag
raw = json.loads({json.dumps(json.dumps(sweep_config(data, trials=1, epochs=epochs, reuse=False)["train"]))})
cfg = TrainConfig.from_dict({{**raw, "model": "efficientnet_lite2", "image_size": 192, "batch_size": 32,
                             "cv_folds": 5, "epochs": {epochs}, "progress": False}})
train_bag(cfg, sys.argv[1])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""
    done = subprocess.run([sys.executable, "-c", code, str(out / "standalone-bag")], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per fold (the default sweep trains 6)")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--compare", type=int, default=0,
                        help="also run this many trials with reuse_actors true and with false: the cost per trial")
    args = parser.parse_args()
    total = psutil.virtual_memory().total
    gb = 2**30

    alone = standalone_peak(args.data, args.out, args.epochs)
    print(f"one trial alone (Lite2, 192 px, batch 32, one bag): peak RSS {alone / gb:.2f} GB", flush=True)
    run = run_sweep(sweep_config(args.data, trials=args.trials, epochs=args.epochs, reuse=False),
                    args.out / "fresh", args.every)
    peaks = sorted(run["workers"].values())
    count = run["count"] or {}
    print(f"sweep: {args.trials} trials asked, {count.get('usable')} gave a model, {count.get('errored')} failed; "
          f"exit {run['rc']}; {run['seconds'] / 60:.1f} min ({run['seconds'] / max(args.trials, 1):.0f} s a trial "
          f"on {psutil.cpu_count()} cores)")
    if peaks:
        print(f"trial workers: {len(peaks)}; peak RSS worst {peaks[-1] / gb:.2f} GB ({peaks[-1] / alone:.2f}x one "
              f"trial alone), median {statistics.median(peaks) / gb:.2f} GB")
    print(f"node: peak use {run['node_peak'] / gb:.1f} of {total / gb:.1f} GB ({run['node_peak'] / total:.0%})")
    print(f"memory-monitor kills: {run['oom_kills']}")
    if args.compare:
        for reuse in (True, False):
            timed = run_sweep(sweep_config(args.data, trials=args.compare, epochs=args.epochs, reuse=reuse),
                              args.out / f"compare-reuse-{str(reuse).lower()}", args.every)
            worst = max(timed["workers"].values(), default=0)
            print(f"reuse_actors {str(reuse).lower():5s}: {args.compare} trials in {timed['seconds']:.0f} s "
                  f"({timed['seconds'] / args.compare:.1f} s a trial), {len(timed['workers'])} worker(s), worst "
                  f"peak RSS {worst / gb:.2f} GB")


if __name__ == "__main__":
    main()
