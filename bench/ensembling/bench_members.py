"""Which bags, combined how? The default job's ensemble refitted from its sweep, per outer split.

Reads the job folders bench/jobs/bench_outer.py wrote for an arm (OUT/ARM/seedN/job/sweep) and fits
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

A second table asks where the mean of every bag gets its gain, more configs or more fold models,
from the holdout margins each bag stored per fold (bag.json `fold_holdout`): the holdout AUC of
the mean probability of every bag, of each config's first fold model alone, of every fold model,
of the finished bags, of the finished bags' first fold models, and of one fold model and one bag
on average. AUC only: these means are not calibrated, and AUC does not depend on a monotone
calibrator.

    .venv/bin/python -m bench.ensembling.bench_members --out runs/bench_outer --arm default
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.common import ROOT
from ensemble import EnsembleSettings, fit_ensemble, pick_members
from ensemble.fit.combine import pooled_margin

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
    sweeps = job_sweeps(args.out, args.arm)
    print(f"{'variant':12s} {'split':>5s} {'bags':>4s} {'folds':>5s} | holdout " + " ".join(f"{k[:5]:>6s}" for k in SHOWN)
          + " | cross-fit    AUC    ECE")
    results: dict[str, list[tuple[dict, dict]]] = {name: [] for name in VARIANTS}
    for sweep in sweeps:
        seed = split_seed(sweep)
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

    print("\nconfigs or folds: holdout AUC of uncalibrated means (per split, then the mean)")
    table = {split_seed(sweep): configs_or_folds(sweep) for sweep in sweeps}
    for name in next(iter(table.values())):
        values = [table[seed][name] for seed in table]
        print(f"  {name:42s} " + " ".join(f"{v:6.3f}" for v in values) + f" | mean {np.mean(values):.3f}")


def job_sweeps(out: str, arm: str) -> list[Path]:
    """The sweeps of bench_outer's job folders OUT/ARM/seedN/job/sweep, in split order; exits when there are none."""
    sweeps = sorted((ROOT / out / arm).glob("seed*/job/sweep"), key=split_seed)
    if not sweeps:
        sys.exit(f"no job folders under {ROOT / out / arm}: run python -m bench.jobs.bench_outer --arms {arm}")
    return sweeps


def split_seed(sweep: Path) -> int:
    """The outer split of OUT/ARM/seedN/job/sweep."""
    return int(sweep.parents[1].name.removeprefix("seed"))


def configs_or_folds(sweep: Path) -> dict[str, float]:
    """Holdout AUC of means over every bag, its first fold model, every fold model, the finished bags."""
    members = pick_members(sweep, top="all")
    ids = sorted(members[0].meta["holdout"])
    y = np.array([members[0].meta["holdout"][i]["label"] for i in ids])
    bags, firsts, folds, finished, finished_firsts = [], [], [], [], []
    for m in members:
        per_fold = m.meta["fold_holdout"]
        models = [np.array([per_fold[k][i] for i in ids]) for k in sorted(per_fold, key=int)]
        bag = np.array([m.meta["holdout"][i]["logit"] for i in ids])
        bags.append(bag)
        firsts.append(models[0])
        folds.extend(models)
        if len(models) == m.meta["cv_folds"]:
            finished.append(bag)
            finished_firsts.append(models[0])

    def auc_of_mean(margins: list[np.ndarray]) -> float:
        return float(roc_auc_score(y, pooled_margin(np.stack(margins, axis=1), np.full(len(margins), 1 / len(margins)))))

    return {
        "every bag's mean (the default)": auc_of_mean(bags),
        "every config's first fold model alone": auc_of_mean(firsts),
        "every fold model, equal weights": auc_of_mean(folds),
        "the finished bags' means": auc_of_mean(finished),
        "the finished bags' first fold models": auc_of_mean(finished_firsts),
        "one fold model, on average": float(np.mean([roc_auc_score(y, x) for x in folds])),
        "one bag, on average": float(np.mean([roc_auc_score(y, x) for x in bags])),
    }


if __name__ == "__main__":
    main()
