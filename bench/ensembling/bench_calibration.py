"""Is the shipped bag calibrated? The ensemble refitted with and without the bag-mean correction.

A k-fold bag ships the mean of its fold models' margins, while its calibrator and threshold
are fitted on out-of-fold margins, each from one fold model (ensemble/bag_spread.py). This
reads the job folders bench/jobs/bench_outer.py wrote (OUT/ARM/seedN/job/sweep), refits each
job's ensemble (as `lungsweep ensemble` fits it by default) with each `fold_noise_share` given (0: the out-of-fold
margins as they are), and prints per outer split the holdout's ECE, calibration slope and
intercept, and whether the deployed threshold's holdout sensitivity and specificity fall in
the development cross-fit's intervals (what the report states for them).

The holdouts of the splits are also pooled (each scored by its own split's ensemble), which
brings the sample, and the floor, down. "ECE floor" is the ECE a perfectly calibrated model
with the same probabilities would show on a sample this size: the mean ECE over 2000 label
draws y ~ Bernoulli(p), same bins. On ~78 images it is far from 0, so a holdout ECE is read
against it, not against 0. Pooled log-loss and Brier score, proper scores, decide.

That floor treats the images as independent; a holdout is a few dozen patients, each with
several similar slices. "patient floor" is what the development pool itself shows under the
same draw: the ensemble's cross-fitted probabilities (a pipeline fitted without each patient)
on random sets of as many pool patients as the holdout has, 2000 draws: the median ECE, and
how often it is at most 0.05. A holdout ECE inside that range is what a model calibrated on
the pool shows on new patients at this sample size.

It also prints the noise share each bag shows on its holdout (the r the correction would
assume). The holdouts judge here as in bench_outer; BENCHMARKS.md names the splits looked at.

    .venv/bin/python -m bench.ensembling.bench_calibration --out runs/bench_outer --shares 0 0.13 0.26
"""
from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from bench.common import ROOT
from ensemble import EnsemblePipeline, EnsembleSettings, cross_fit, fit_ensemble, oof_predictions
from trainers.metrics import clinical_metrics, ece_edges, expected_calibration_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_outer", help="bench_outer's --out")
    parser.add_argument("--shares", nargs="+", type=float, default=[0.0, 0.13, 0.26])
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    jobs = sorted(p.parent / "job" / "sweep" for p in (ROOT / args.out).glob("*/seed*/result.json")
                  if (p.parent / "job").is_dir())  # finished job arms only
    if not jobs:
        sys.exit(f"no job folders under {args.out}: run python -m bench.jobs.bench_outer first")
    print(f"{'arm':14s} {'seed':>4s} {'r':>5s} {'ECE':>6s} {'slope':>6s} {'icpt':>6s} {'sens':>6s} {'in cf':>5s} "
          f"{'spec':>6s} {'in cf':>5s} {'AUC':>6s} {'floor':>6s} {'patient floor':>16s}  measured noise share per bag")
    rows = []
    for sweep in jobs:
        arm, seed = sweep.parents[2].name, int(sweep.parents[1].name.removeprefix("seed"))
        for share in args.shares:
            fitted = fit_ensemble(sweep, EnsembleSettings(fold_noise_share=share, n_boot=200))
            m, cf = fitted.metrics, fitted.metrics["development_crossfit"]
            measured = [v["noise_share"] for v in m["bag_spread"]["on_holdout"].values()]
            inside = {k: cf[k]["ci_low"] is not None and cf[k]["ci_low"] <= m[k]["value"] <= cf[k]["ci_high"]
                      for k in ("sensitivity", "specificity")}
            floor = ece_floor(fitted.predictions["probability"].to_numpy())
            median, at_goal = patient_floor(fitted, share, fitted.predictions["group"].nunique())
            rows.append((arm, share, m["ece"]["value"], m["calibration_slope"]["value"], floor,
                         fitted.predictions["label"].to_numpy(), fitted.predictions["probability"].to_numpy(), median))
            print(f"{arm:14s} {seed:4d} {share:5.2f} {m['ece']['value']:6.3f} {m['calibration_slope']['value']:6.2f} "
                  f"{m['calibration_intercept']['value']:6.2f} {m['sensitivity']['value']:6.3f} "
                  f"{'yes' if inside['sensitivity'] else 'no':>5s} {m['specificity']['value']:6.3f} "
                  f"{'yes' if inside['specificity'] else 'no':>5s} {m['auc']['value']:6.3f} {floor:6.3f} "
                  f"{median:6.3f} ({at_goal:4.0%} <=.05)  "
                  f"{', '.join(f'{v:.2f}' for v in measured)}", flush=True)
    print("\nmean over the splits")
    for arm in sorted({r[0] for r in rows}):
        for share in args.shares:
            sel = [r for r in rows if r[0] == arm and r[1] == share]
            y, p = np.concatenate([r[5] for r in sel]), np.concatenate([r[6] for r in sel])
            pooled = clinical_metrics(y, p, 0.5)
            print(f"{arm:14s} r {share:4.2f}: ECE {np.mean([r[2] for r in sel]):.3f} (floor "
                  f"{np.mean([r[4] for r in sel]):.3f}, patient floor {np.mean([r[7] for r in sel]):.3f}), calibration slope {np.mean([r[3] for r in sel]):.2f}; "
                  f"the {len(sel)} holdouts pooled ({len(y)} images): ECE {expected_calibration_error(y, p):.3f} "
                  f"(floor {ece_floor(p):.3f}), log-loss {pooled['nll']:.4f}, Brier {pooled['brier']:.4f}, "
                  f"slope {pooled['calibration_slope']:.2f}, intercept {pooled['calibration_intercept']:.2f}")


def ece_floor(p: np.ndarray, draws: int = 2000, seed: int = 0) -> float:
    """Mean ECE of a perfectly calibrated model with these probabilities, on a sample of this size."""
    rng = np.random.default_rng(seed)
    edges = ece_edges(p)
    return float(np.mean([expected_calibration_error((rng.random(len(p)) < p).astype(int), p, edges=edges)
                          for _ in range(draws)]))


def patient_floor(fitted, share: float, n_groups: int, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The ECE the development pool shows on `n_groups` of its patients, scored by its cross-fit.

    Returns the median over `draws` random patient sets, and the share of draws at or below 0.05.
    """
    if share:  # the correction refits on scaled margins; the floor is read at r = 0
        return float("nan"), float("nan")
    preds = oof_predictions(fitted.members)
    params = fitted.pipeline.get_params()  # the pipeline as fitted, refitted per fold of patients
    crossfit = cross_fit(lambda: EnsemblePipeline(**params), preds, n_splits=params["n_splits"], seed=params["seed"])
    y, p, groups = preds.y, crossfit["calibrated"], preds.groups
    rng = np.random.default_rng(seed)
    patients = np.unique(groups)
    eces = []
    for _ in range(draws):
        chosen = np.isin(groups, rng.choice(patients, n_groups, replace=False))
        eces.append(expected_calibration_error(y[chosen], p[chosen]))
    return float(np.median(eces)), float(np.mean(np.array(eces) <= 0.05))


if __name__ == "__main__":
    main()
