"""Which bags, combined how? The default job's ensemble refitted from its sweep, per outer split.

Reads the job folders bench/bench_outer.py wrote for an arm (OUT/ARM/seedN/job/sweep) and fits
the ensemble again with each variant below, from the same sweep: nothing is retrained. Per split
and as a mean over the splits it prints the holdout (78 images that no training, selection or
fitting step used) and the development cross-fit (465 images, out of fold) beside it.

- greedy-top5: the ensemble as `lungsweep ensemble` fitted it before (greedy weights on the top 5
  bags that finished every fold);
- mean-top5: the same bags, equal weights;
- mean-all: every bag the sweep trained, with those ASHA stopped after one or more folds
  (`--members all --method mean`).

The cross-fit cannot judge mean-all fairly: ASHA stopped those bags because their first fold's
out-of-fold AUC was low, on the very images the cross-fit scores them on. The holdout can.

    .venv/bin/python bench/bench_members.py --out runs/bench_outer --arm default
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ensemble.build import fit_ensemble  # noqa: E402
from ensemble.settings import EnsembleSettings  # noqa: E402

VARIANTS = {
    "greedy-top5": EnsembleSettings(method="greedy", members=5),
    "mean-top5": EnsembleSettings(method="mean", members=5),
    "mean-all": EnsembleSettings(method="mean", members="all"),
}
SHOWN = ("auc", "accuracy", "ece", "sensitivity", "specificity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_outer", help="bench_outer's --out")
    parser.add_argument("--arm", default="default", help="the job arm whose sweeps are refitted")
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    sweeps = sorted((ROOT / args.out / args.arm).glob("seed*/job/sweep"))
    if not sweeps:
        sys.exit(f"no job folders under {ROOT / args.out / args.arm}: run bench/bench_outer.py --arms {args.arm}")
    print(f"{'variant':12s} {'split':>5s} {'bags':>4s} {'folds':>5s} | holdout " + " ".join(f"{k[:5]:>6s}" for k in SHOWN)
          + " | cross-fit    AUC    ECE")
    results: dict[str, list[tuple[dict, dict]]] = {name: [] for name in VARIANTS}
    for sweep in sweeps:
        seed = int(sweep.parents[1].name.removeprefix("seed"))
        for name, settings in VARIANTS.items():
            started = time.monotonic()
            fitted = fit_ensemble(sweep, EnsembleSettings(**{**settings.__dict__, "n_boot": args.bootstrap}))
            holdout, crossfit = fitted.metrics, fitted.metrics["development_crossfit"]
            folds = sum(len(m.meta["folds_done"]) for m in fitted.members)
            results[name].append((holdout, crossfit))
            print(f"{name:12s} {seed:5d} {len(fitted.members):4d} {folds:5d} |         "
                  + " ".join(f"{holdout[k]['value']:6.3f}" for k in SHOWN)
                  + f" |           {crossfit['auc']['value']:6.3f} {crossfit['ece']['value']:6.3f}"
                  f"   ({time.monotonic() - started:.0f} s)", flush=True)
    print(f"\nmean over {len(sweeps)} split(s)")
    for name, rows in results.items():
        mean = {k: np.mean([h[k]["value"] for h, _ in rows]) for k in SHOWN}
        print(f"{name:12s} holdout " + " ".join(f"{k} {v:.3f}" for k, v in mean.items())
              + f" | cross-fit AUC {np.mean([c['auc']['value'] for _, c in rows]):.3f}"
              f" ECE {np.mean([c['ece']['value'] for _, c in rows]):.3f}")


if __name__ == "__main__":
    main()
