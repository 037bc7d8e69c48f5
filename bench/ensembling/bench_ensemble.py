"""Ensemble benchmark: best single member vs mean, greedy and stacked ensembles, before and after calibration.

Every figure is cross-fitted on the sweep's holdout split (ensemble/build.py): a
pipeline fitted on K-1 folds of holdout patients scores the remaining fold. The
goal: the calibrated ensemble beats the best single member on AUC and has
ECE at most 0.03.

    .venv/bin/python -m bench.ensembling.bench_ensemble runs/bench_search/tpe_asha --out runs/bench_ensemble
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ensemble import EnsembleSettings, build_ensemble, metric_text
from search.record import RESULTS_PARQUET, read_sweep
from search.results import load_results, save_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="a sweep RUN_DIR (e.g. the tpe_asha arm of bench_search)")
    parser.add_argument("--out", default="runs/bench_ensemble")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--calibration", default="temperature")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"command: {' '.join(sys.argv)}\ndate:    {datetime.now(timezone.utc).isoformat(timespec='seconds')}")

    sweep = Path(args.sweep)
    if not (sweep / RESULTS_PARQUET).is_file():  # a bench arm writes it; a killed one may not have
        save_results(load_results(sweep), sweep, read_sweep(sweep))
    rows = []
    for method in ("mean", "greedy", "stack"):
        t0 = time.perf_counter()
        settings = EnsembleSettings(method=method, calibration=args.calibration, members=args.members,
                                    n_splits=args.folds, n_boot=args.bootstrap)
        metrics = build_ensemble(sweep, Path(args.out) / method, settings)
        seconds = time.perf_counter() - t0
        if not rows:  # the members are the same for every method: report the best one once
            best_id, best = max(metrics["members"].items(), key=lambda kv: kv[1]["auc"]["value"])
            rows.append(_row(f"best single member ({best_id})", "raw", best, None))
        rows.append(_row(method, "none", metrics["uncalibrated"], seconds))
        rows.append(_row(method, args.calibration, metrics, seconds))
    table = pd.DataFrame(rows)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(args.out) / "summary.csv", index=False)
    print(f"\n{metrics['data']}\n")
    print(table.to_string(index=False))
    single = rows[0]["auc"]
    calibrated = [r for r in rows[1:] if r["calibration"] != "none"]
    best = max(calibrated, key=lambda r: r["auc"])
    print(f"\nbest calibrated ensemble: {best['model']} AUC {best['auc']:.4f} vs best single member {single:.4f} "
          f"(goal: higher); its ECE {best['ece']:.4f} (goal <= 0.03)")


def _row(model: str, calibration: str, m: dict, seconds: float | None) -> dict:
    def fmt(key: str) -> str:
        return metric_text(m, key)

    return {
        "model": model, "calibration": calibration,
        "auc": m["auc"]["value"], "auc_ci": fmt("auc"),
        "accuracy": m["accuracy"]["value"], "accuracy_ci": fmt("accuracy"),
        "ece": m["ece"]["value"], "ece_ci": fmt("ece"),
        "seconds": None if seconds is None else round(seconds, 1),
    }


if __name__ == "__main__":
    main()
