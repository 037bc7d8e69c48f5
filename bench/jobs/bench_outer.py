"""Outer splits: do the main jobs beat one plain model? Judged on several untouched holdouts.

One 78-image holdout cannot tell 0.03 of AUC apart, so every arm runs once per outer split
(`split_seed`), and each split cuts its own holdout (15% of the patients) before anything
is trained. Per split and as a mean over the splits it prints the holdout AUC, accuracy
and ECE, and beside them the development cross-fit (the ensemble's out-of-fold estimate
over ~460 images) where an arm has one.

Arms (pick with --arms; each is run once per --seeds value):

    plain          one `lungsweep train --config configs/plain.yaml` (no search, no freezing, no
                   label smoothing, no augmentation, lr 3e-4; learns from 80% of the images)
    plain_x3       that model trained with seeds 0, 1 and 2: their mean margin (a seed ensemble, what
                   refitting a 3-member ensemble on the whole pool would ship), and as the row
                   plain_x3:one-model-mean the three single models' mean scores (less training noise
                   than one seed)
    quick          `lungsweep run --quick` (search/sweeps/quick.yaml)
    default        `lungsweep run` (search/sweeps/default.yaml; 29-50 min on 2 CPU cores)
    NAME=SWEEP     `lungsweep run --config SWEEP` under the name NAME, e.g.
                   quick_plain=bench/sweeps/quick_plain.yaml, or wide=bench/sweeps/default_wide.yaml
                   (the default's space with as many trials as 45 minutes train)
    refit          what a refit stage would ship (needs the default arm on the same split): the
                   default job's top REFIT_MEMBERS member configs, each retrained once as one model
                   on 80% of the images (`lungsweep train`, cv_folds 1, a 5% split picks the epoch),
                   their mean margin; beside it (row refit:bags) the same members' bags (5 fold models
                   each, 68% of the images per model), mean margin, on the same holdout

For every job arm a second row, ARM:best-member, is the job's rank-1 bag alone (its mean
margin, thresholded where its out-of-fold part put it): what the job would be without the
ensemble. A job arm also records, per member bag, how much the bag's mean margin shrinks
against one fold model's on the holdout (sd ratio), which is what the combiner's
calibrator must allow for (ensemble/calibration.py, BENCHMARKS.md).

Each (arm, split) writes OUT/ARM/seedN/result.json when it finishes; a rerun skips the
finished ones, so the bench can be run a piece at a time and resumed after a kill.
Wall times are per arm on this machine; the first arm on a cold cache also pays decoding.

    .venv/bin/python -m bench.jobs.bench_outer --arms plain quick --seeds 0 1 2          # ~45 min
    .venv/bin/python -m bench.jobs.bench_outer --arms default --seeds 0 1 2              # ~2 h
    .venv/bin/python -m bench.jobs.bench_outer --table-only                              # print what is done
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.special import expit

from bench.common import DATA, LUNGSWEEP, ROOT
from bench.jobs.bench_main_job import timed
from ensemble import bootstrap_metrics, member_dir, read_ensemble_json, read_metrics
from trainers.atomic import atomic_write_text
from trainers.bag import read_bag
from trainers.checkpoint import read_meta

BUNDLED = {"quick": ROOT / "search" / "sweeps" / "quick.yaml", "default": ROOT / "search" / "sweeps" / "default.yaml"}
PLAIN_CONFIG = ROOT / "configs" / "plain.yaml"
PLAIN_ARMS = {"plain": (0,), "plain_x3": (0, 1, 2)}
REFIT_MEMBERS = 2  # the default job's top members refitted: each costs about 1.3 folds of its bag
SHOWN = ("auc", "accuracy", "ece", "sensitivity", "specificity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", default=["plain", "quick"],
                        help="plain, plain_x3, quick, default, refit or NAME=SWEEP")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="outer splits (split_seed values)")
    parser.add_argument("--out", default="runs/bench_outer")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--table-only", action="store_true", help="run nothing; print the finished results")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LUNGSWEEP_CACHE", str(out / "cache"))

    arms = dict(_parse_arm(a) for a in args.arms)
    if not args.table_only:
        for seed in args.seeds:  # a split at a time: a partial bench still compares arms on the same splits
            for name, sweep in arms.items():
                folder = out / name / f"seed{seed}"
                if (folder / "result.json").exists():
                    continue
                print(f"[bench_outer] {name}, split_seed {seed} -> {folder}", flush=True)
                if sweep == "refit":
                    result = run_refit(folder, seed, args.data, out / "default" / f"seed{seed}")
                elif isinstance(sweep, tuple):
                    result = run_plain(folder, seed, args.data, train_seeds=sweep)
                else:
                    result = run_job(folder, seed, sweep, args.data)
                atomic_write_text(folder / "result.json", json.dumps({"arm": name, "seed": seed, **result}, indent=1))
    print_table(out)


def _parse_arm(text: str) -> tuple[str, Path | tuple[int, ...] | str]:
    """An arm's name and what it runs: a sweep file, the training seeds of plain models, or "refit"."""
    if text == "refit":
        return text, text
    if text in PLAIN_ARMS:
        return text, PLAIN_ARMS[text]
    if text in BUNDLED:
        return text, BUNDLED[text]
    name, sep, path = text.partition("=")
    if not sep or not Path(path).is_file():
        sys.exit(f"--arms {text!r}: give plain, plain_x3, quick, default, refit or NAME=SWEEP.yaml with an "
                 "existing file")
    return name, Path(path).resolve()


def run_plain(folder: Path, seed: int, data: str, train_seeds: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """Plain models on this split, one per training seed: their mean margin on the holdout, thresholded at 0.5
    (no calibration), and each one's own scores."""
    folder.mkdir(parents=True, exist_ok=True)
    seconds, logits, singles = 0.0, [], []
    for train_seed in train_seeds:
        config = yaml.safe_load(PLAIN_CONFIG.read_text())
        config.update(data=data, split_seed=seed, seed=train_seed)
        name = "plain" if len(train_seeds) == 1 else f"plain_seed{train_seed}"
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        run = folder / ("run" if len(train_seeds) == 1 else f"run_seed{train_seed}")
        seconds += timed([*LUNGSWEEP, "train", "--config", str(folder / f"{name}.yaml"), "--out", str(run),
                          "--resume"], folder / f"{name}.log")
        _, y, groups, margins = holdout_margins(run)
        logits.append(margins)
        singles.append(_shown(bootstrap_metrics(y, expit(logits[-1]), groups, 0.5, n_boot=200)))
    mean = bootstrap_metrics(y, expit(np.mean(logits, axis=0)), groups, 0.5, n_boot=1000)
    return {"seconds": seconds, "holdout": _shown(mean), "crossfit": None,
            **({"singles": singles} if len(train_seeds) > 1 else {})}


def holdout_margins(run: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """A `lungsweep train` run's holdout, as its best checkpoint scored it: ids, labels, groups, margins."""
    holdout = read_meta(run / "best")["predictions"]["holdout"]
    ids = sorted(holdout)
    return (ids, np.array([holdout[i]["label"] for i in ids]), np.array([holdout[i]["group"] for i in ids]),
            np.array([holdout[i]["logit"] for i in ids]))


def run_job(folder: Path, seed: int, sweep: Path, data: str) -> dict[str, Any]:
    """The main job with this sweep on this split: the ensemble's holdout and cross-fit, its best bag alone."""
    config = yaml.safe_load(sweep.read_text())
    config.setdefault("train", {})["split_seed"] = seed
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    seconds = timed([*LUNGSWEEP, "run", "--config", str(folder / "sweep.yaml"), "--data", data,
                      "--out", str(folder / "job")], folder / "job.log")
    ens = folder / "job" / "ensemble"
    metrics = read_metrics(ens)
    members = read_ensemble_json(ens)["members"]
    best = members[0]  # members are listed by rank
    return {
        "seconds": seconds,
        "holdout": _shown(metrics),
        "crossfit": _shown(metrics["development_crossfit"]),
        "best_member": {"trial": best, "holdout": _shown(metrics["members"][best])},
        "members": members,
        "shrinkage": {m: bag_shrinkage(ens / "members" / m) for m in members},
    }


def run_refit(folder: Path, seed: int, data: str, default_folder: Path) -> dict[str, Any]:
    """The default job's top members, each retrained as one model on 80% of the images, against their bags."""
    ens = default_folder / "job" / "ensemble"
    if not (default_folder / "result.json").is_file():
        sys.exit(f"the refit arm retrains the default job's members: run --arms default --seeds {seed} first "
                 f"({default_folder / 'result.json'} is missing)")
    folder.mkdir(parents=True, exist_ok=True)
    seconds, refits, bags, per_member = 0.0, [], [], []
    for trial in read_ensemble_json(ens)["members"][:REFIT_MEMBERS]:
        bag = read_bag(member_dir(ens, trial))
        config = {**bag["config"], "data": data, "cv_folds": 1, "fold": None, "val_fraction": 0.05,
                  "patience": None, "num_threads": None, "progress": False}
        (folder / f"{trial}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        run = folder / trial
        seconds += timed([*LUNGSWEEP, "train", "--config", str(folder / f"{trial}.yaml"), "--out", str(run),
                          "--resume"], folder / f"{trial}.log")
        ids, y, groups, margins = holdout_margins(run)
        if sorted(bag["holdout"]) != ids:
            sys.exit(f"{run}: its holdout is not the bag's; the refit must use the bag's split_seed and data")
        refits.append(margins)
        bags.append(np.array([bag["holdout"][i]["logit"] for i in ids]))
        per_member.append({"trial": trial, "refit": _shown(bootstrap_metrics(y, expit(refits[-1]), groups, 0.5,
                                                                              n_boot=200)),
                           "bag": _shown(bootstrap_metrics(y, expit(bags[-1]), groups, 0.5, n_boot=200))})
    return {"seconds": seconds, "crossfit": None, "per_member": per_member,
            "holdout": _shown(bootstrap_metrics(y, expit(np.mean(refits, axis=0)), groups, 0.5, n_boot=1000)),
            "bags": _shown(bootstrap_metrics(y, expit(np.mean(bags, axis=0)), groups, 0.5, n_boot=1000))}


def bag_shrinkage(bag_dir: Path) -> dict[str, float]:
    """On the holdout (no fold model saw it): sd of the bag's mean margin / mean sd of one fold model's margin.

    Also the share of one fold model's margin variance that is fold-to-fold disagreement
    (the part averaging removes): noise_share = mean within-image variance over folds
    (unbiased) / mean variance of a fold's margins.
    """
    bag = read_bag(bag_dir)
    folds = bag["fold_holdout"]
    ids = sorted(next(iter(folds.values())))
    M = np.array([[folds[k][i] for i in ids] for k in sorted(folds)])  # folds x images
    k = M.shape[0]
    single_sd = float(np.mean(M.std(axis=1)))
    mean_sd = float(M.mean(axis=0).std())
    within = float(M.var(axis=0, ddof=1).mean()) if k > 1 else float("nan")
    return {"folds": k, "single_sd": single_sd, "mean_sd": mean_sd, "sd_ratio": mean_sd / single_sd,
            "noise_share": within / float(np.mean(M.var(axis=1)))}


def _shown(block: dict[str, Any]) -> dict[str, Any]:
    return {**{name: block[name]["value"] for name in SHOWN}, "n": block["n"]}


def print_table(out: Path) -> None:
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*/seed*/result.json"))]
    if not results:
        print("no finished (arm, split) yet")
        return
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for r in results:
        rows.setdefault(r["arm"], {})[r["seed"]] = {**r["holdout"], "seconds": r["seconds"], "cf": r["crossfit"]}
        if r.get("singles"):
            rows.setdefault(f"{r['arm']}:one-model-mean", {})[r["seed"]] = {
                **{k: float(np.mean([one[k] for one in r["singles"]])) for k in SHOWN}, "n": r["holdout"]["n"],
                "seconds": r["seconds"] / len(r["singles"]), "cf": None}
        if r.get("bags"):
            rows.setdefault(f"{r['arm']}:bags", {})[r["seed"]] = {**r["bags"], "seconds": float("nan"), "cf": None}
        if r.get("best_member"):
            rows.setdefault(f"{r['arm']}:best-member", {})[r["seed"]] = {**r["best_member"]["holdout"],
                                                                         "seconds": r["seconds"], "cf": None}
    seeds = sorted({r["seed"] for r in results})
    print(f"\nholdout per outer split (split_seed {', '.join(map(str, seeds))}); "
          "cross-fit = the development pool's out-of-fold estimate")
    print(f"{'arm':26s} {'seed':>4s} {'n':>4s} {'AUC':>6s} {'acc':>6s} {'ECE':>6s} {'sens':>6s} {'spec':>6s} "
          f"{'cf AUC':>7s} {'cf n':>5s} {'cf ECE':>7s} {'wall':>8s}")
    for arm, by_seed in rows.items():
        for seed in sorted(by_seed):
            r = by_seed[seed]
            cf = r["cf"]
            cf_text = f"{cf['auc']:7.3f} {cf['n']:5d} {cf['ece']:7.3f}" if cf else f"{'':7s} {'':5s} {'':7s}"
            print(f"{arm:26s} {seed:4d} {r['n']:4d} {r['auc']:6.3f} {r['accuracy']:6.3f} {r['ece']:6.3f} "
                  f"{r['sensitivity']:6.3f} {r['specificity']:6.3f} {cf_text} {r['seconds'] / 60:6.1f} m")
    common = sorted(set.intersection(*(set(by_seed) for by_seed in rows.values())))
    print(f"\nmean over the splits every arm finished (split_seed {', '.join(map(str, common)) or 'none'})")
    print(f"{'arm':26s} {'splits':>6s} {'AUC':>6s} {'acc':>6s} {'ECE':>6s} {'cf AUC':>7s} {'cf ECE':>7s} {'wall':>8s}")
    for arm, by_seed in rows.items():
        vals = [by_seed[seed] for seed in common]
        if not vals:
            continue
        mean = {k: float(np.mean([v[k] for v in vals])) for k in ("auc", "accuracy", "ece", "seconds")}
        cfs = [v["cf"] for v in vals if v["cf"]]
        cf_text = (f"{np.mean([c['auc'] for c in cfs]):7.3f} {np.mean([c['ece'] for c in cfs]):7.3f}"
                   if cfs else f"{'':7s} {'':7s}")
        print(f"{arm:26s} {len(vals):6d} {mean['auc']:6.3f} {mean['accuracy']:6.3f} {mean['ece']:6.3f} {cf_text} "
              f"{mean['seconds'] / 60:6.1f} m")
    refits = [(r["seed"], m) for r in results for m in r.get("per_member") or []]
    if refits:
        print("\nrefit (one model, 80% of the images) against the bag (5 fold models, 68% each), per member, holdout")
        print(f"{'seed':>4s} {'member':28s} {'refit AUC':>9s} {'bag AUC':>8s}")
        for seed, m in refits:
            print(f"{seed:4d} {m['trial'][:28]:28s} {m['refit']['auc']:9.3f} {m['bag']['auc']:8.3f}")
    shrink = [(r["arm"], r["seed"], m, s) for r in results for m, s in (r.get("shrinkage") or {}).items()]
    if shrink:
        print("\nbag-mean margin against one fold model's, on the holdout")
        print(f"{'arm':26s} {'seed':>4s} {'member':28s} {'folds':>5s} {'sd ratio':>8s} {'noise share':>11s}")
        for arm, seed, m, s in shrink:
            print(f"{arm:26s} {seed:4d} {m[:28]:28s} {s['folds']:5d} {s['sd_ratio']:8.3f} {s['noise_share']:11.3f}")


if __name__ == "__main__":
    main()
