"""Does the selection metric predict quality on patients nobody selected on? Single split vs k-fold.

The same N configurations (the quick-start config plus random draws from the bundled
default space) are trained two ways on the shared COVID-CT data, sharing one holdout:

  single split: one model, best epoch chosen on a validation split of ~80 images; its
                selection metric is that best val AUC (what a single-split sweep ranks by)
  k-fold bag:   K fold models over everything but the holdout, each its last epoch; its
                selection metric is the pooled out-of-fold AUC over ~460 images

The holdout (used by no training or selection) judges both: Spearman's rank correlation
between each arm's selection metric and its holdout AUC over the configs, the holdout AUC
of the config each arm would pick (top 1), and of the mean of each arm's top 3.

    .venv/bin/python -m bench.ensembling.bench_selection --configs 10 --image-size 96 --epochs 4   # ~30 min on 2 cores
    .venv/bin/python -m bench.ensembling.bench_selection --smoke-test                             # generated data, seconds
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import search
import trainers
from bench.common import DATA
from tests.tests_support import make_dataset
from trainers.metrics import binary_metrics


def sample_configs(n: int, image_size: int, epochs: int, seed: int) -> list[dict]:
    import optuna

    sweep = search.load_sweep_config("default")
    fixed = {k: v for k, v in sweep.train.items() if k != "data"}
    configs = [{**fixed, **sweep.first_trials[0]}]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    while len(configs) < n:
        trial = study.ask()
        configs.append({**fixed, **search.suggest(trial, sweep.space, fixed)})
        study.tell(trial, 0.0)
    # one image size and epoch budget for every run: the comparison is of selection, not of size
    return [{**c, "image_size": image_size, "epochs": epochs, "patience": None, "progress": False,
             "num_threads": 1} for c in configs]


def run_one(job: tuple[int, str, dict, str, str]) -> dict:
    index, arm, values, data, out = job
    import torch  # trainers' names load on first use, so torch loads here, in the worker

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    folder = Path(out) / f"{arm}_{index}"
    started = time.perf_counter()
    folds = 1 if arm == "single" else values["cv_folds"]
    cfg = trainers.TrainConfig.from_dict({**values, "data": data, "cv_folds": folds})
    if arm == "single":
        result = trainers.train(cfg, folder)
        meta = trainers.read_meta(folder / trainers.BEST)
        selection = float(result.best_metrics["val_auc"])
        holdout = meta["predictions"]["holdout"]
    else:
        bag = trainers.train_bag(cfg, folder)
        selection = float(bag.metrics["oof_auc"])
        holdout = trainers.read_bag(folder)["holdout"]
    ids = sorted(holdout)
    y = np.array([holdout[i]["label"] for i in ids])
    margins = np.array([holdout[i]["logit"] for i in ids])
    scored = binary_metrics(y, trainers.sigmoid(margins))
    return {"index": index, "arm": arm, "selection": selection, "holdout_auc": scored["auc"],
            "holdout_accuracy": scored["accuracy"], "seconds": time.perf_counter() - started,
            "ids": ids, "y": y.tolist(), "margins": margins.tolist(), "config": values}


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="runs/bench_selection")
    parser.add_argument("--smoke-test", action="store_true")
    args = parser.parse_args()
    data = str(DATA)
    if args.smoke_test:
        data = str(make_dataset(Path(tempfile.mkdtemp()) / "train", groups_per_class=12, per_group=2))
        args.configs, args.image_size, args.epochs, args.folds = 3, 32, 1, 3
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = sample_configs(args.configs, args.image_size, args.epochs, args.seed)
    if args.smoke_test:
        configs = [{**c, "model": "test_efficientnet", "pretrained": False} for c in configs]
    configs = [{**c, "cv_folds": args.folds} for c in configs]
    jobs = [(i, arm, c, data, str(out)) for i, c in enumerate(configs) for arm in ("bag", "single")]
    print(f"{len(configs)} configs x 2 arms, {args.image_size} px, {args.epochs} epochs, {args.folds} folds, "
          f"{args.workers} workers", flush=True)
    started = time.perf_counter()
    results = []
    with ProcessPoolExecutor(args.workers) as pool:
        for r in pool.map(run_one, jobs):
            results.append(r)
            print(f"  [{time.perf_counter() - started:6.0f}s] config {r['index']:2d} {r['arm']:6s} selection "
                  f"{r['selection']:.3f}  holdout auc {r['holdout_auc']:.3f}  ({r['seconds']:.0f}s)", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    summarise(results)


def summarise(results: list[dict]) -> None:
    print("\narm      configs  spearman(selection, holdout auc)  top-1 holdout auc  top-3 mean holdout auc  "
          "mean holdout auc  wall s per config")
    for arm in ("single", "bag"):
        rows = sorted((r for r in results if r["arm"] == arm), key=lambda r: -r["selection"])
        rho = spearman([r["selection"] for r in rows], [r["holdout_auc"] for r in rows])
        top3 = rows[:3]
        y = np.array(top3[0]["y"])
        mean_p = np.mean([trainers.sigmoid(np.array(r["margins"])) for r in top3], axis=0)
        ens = binary_metrics(y, mean_p)["auc"]
        print(f"{arm:8s} {len(rows):7d}  {rho:32.3f}  {rows[0]['holdout_auc']:17.3f}  {ens:22.3f}  "
              f"{np.mean([r['holdout_auc'] for r in rows]):16.3f}  {np.mean([r['seconds'] for r in rows]):17.0f}")


if __name__ == "__main__":
    os.environ.setdefault("LUNGSWEEP_CACHE", str(Path.home() / ".cache" / "lungsweep"))
    main()
