"""Do the reported intervals cover the truth? Group against image bootstrap on clustered data.

Images of one patient (or one paper figure) are alike. This simulates that: each group
draws an effect, each image adds noise, the positive class is shifted; the score is
p = expit(effect + noise + shift * y). Each repetition draws a holdout of `groups` per
class with `images` per group, computes the AUC interval of `ensemble.metrics.
bootstrap_metrics` resampling whole groups, and resampling images within each class,
and checks whether it contains the population AUC (from 200 000 groups). A 95%
interval should cover about 95% of the time. This chose MIN_GROUPS_PER_CLASS: the group
bootstrap is used from that many groups per class on.

    .venv/bin/python -m bench.ensembling.bench_intervals                      # ~2 min on 2 cores
    .venv/bin/python -m bench.ensembling.bench_intervals --reps 20 --boot 100 # a smoke run
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

import ensemble.fit.metrics as metrics


def draw(rng: np.random.Generator, groups: int, images: int, shift: float, spread: float, noise: float):
    y = np.repeat([0, 1], groups * images)
    group = np.repeat(np.arange(2 * groups), images)
    effect = rng.normal(0, spread, 2 * groups)[group]
    logit = effect + rng.normal(0, noise, len(y)) + shift * y
    return y, 1 / (1 + np.exp(-logit)), group


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=150)
    p.add_argument("--boot", type=int, default=300)
    p.add_argument("--images", type=int, default=5, help="images per group")
    p.add_argument("--groups", type=int, nargs="+", default=[3, 5, 7, 10, 20])
    p.add_argument("--shift", type=float, default=1.5)
    p.add_argument("--spread", type=float, default=1.0, help="sd of the group effect (the clustering)")
    p.add_argument("--noise", type=float, default=0.5, help="sd of the image noise")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    y, prob, _ = draw(rng, 200_000, 1, args.shift, args.spread, args.noise)
    truth = roc_auc_score(y, prob)
    print(f"population AUC {truth:.4f}; group effect sd {args.spread}, image noise sd {args.noise}, "
          f"{args.images} images a group, {args.reps} holdouts, {args.boot} resamples each")
    print(f"{'groups/class':>12} {'unit':>6} {'coverage':>9} {'no interval':>12} {'mean width':>11}")
    metrics.MIN_GROUPS_PER_CLASS = 1  # compare both units at every group count
    for k in args.groups:
        for unit in ("group", "image"):
            hits = missing = 0
            widths = []
            for rep in range(args.reps):
                y, prob, group = draw(np.random.default_rng(1000 * k + rep), k, args.images, args.shift,
                                      args.spread, args.noise)
                auc = metrics.bootstrap_metrics(y, prob, group if unit == "group" else None, 0.5, n_boot=args.boot,
                                                seed=rep)["auc"]
                if auc["ci_low"] is None:
                    missing += 1
                    continue
                hits += auc["ci_low"] <= truth <= auc["ci_high"]
                widths.append(auc["ci_high"] - auc["ci_low"])
            print(f"{k:>12} {unit:>6} {hits / args.reps:>9.2f} {missing:>12} {np.mean(widths):>11.3f}", flush=True)


if __name__ == "__main__":
    main()
