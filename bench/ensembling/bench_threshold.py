"""Which threshold rule transfers? The default job's ensemble with each rule, per outer split.

Reads the job folders bench/jobs/bench_outer.py wrote for an arm (OUT/ARM/seedN/job/sweep) and fits
the default ensemble again from the same sweep (nothing retrained), once per threshold rule
(ensemble.fit.threshold): the members, combiner and calibrator are the same for every rule, only
the threshold moves. Each rule is judged two ways, per split:

- cross-fit: over the development pool's ~465 images, each patient's images thresholded by a
  pipeline (calibrator and threshold) fitted without that patient (5 group folds): balanced
  accuracy on many images, with the threshold chosen as the rule chooses it on new patients;
- holdout: the deployed pipeline (fitted on the whole pool) on the split's untouched holdout (78
  images, 34 patients): balanced accuracy, sensitivity and specificity, and whether they fall
  inside what the report states for them (the development cross-fit's 95% group-bootstrap
  interval), whether they are at least its low end (the promise a reader takes from it), and
  whether sensitivity reaches the operating point's promised lower bound.

Then the means over the splits and the pooled counts ("holds": in how many splits the holdout's
sensitivity and specificity fell inside the stated interval), and each rule's difference in
balanced accuracy from Youden's J (the default before 2026-12-06), cross-fitted and on the
holdout, averaged over the splits with its 95% paired patient-bootstrap interval
(bench.ensembling.paired).

    .venv/bin/python -m bench.ensembling.bench_threshold --out runs/bench_outer --arm default
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from bench.ensembling.bench_members import job_sweeps, split_seed
from bench.ensembling.paired import Paired, balanced_accuracy, interval_text, paired_difference
from ensemble import THRESHOLD_RULES, EnsemblePipeline, EnsembleSettings, bootstrap_metrics, cross_fit, fit_ensemble
from ensemble import holdout_predictions, oof_predictions, sensitivity_bound
from ensemble.fit.bag_spread import as_shipped

SHOWN = ("balanced_accuracy", "sensitivity", "specificity")
BASELINE = "youden"  # the default rule before 2026-12-06


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_outer", help="bench_outer's --out")
    parser.add_argument("--arm", default="default", help="the job arm whose sweeps are refitted")
    parser.add_argument("--rules", nargs="+", default=list(THRESHOLD_RULES), choices=list(THRESHOLD_RULES))
    parser.add_argument("--bootstrap", type=int, default=500, help="draws for the stated intervals")
    parser.add_argument("--paired-draws", type=int, default=2000, help="draws of the paired patient bootstrap")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    sweeps = job_sweeps(args.out, args.arm)
    print(f"splits: {', '.join(str(split_seed(s)) for s in sweeps)}")
    print(f"{'rule':16s} {'split':>5s} {'thr':>6s} | cross-fit  bal   sens   spec | holdout  bal   sens   spec"
          f" | stated sens [95%]     spec [95%]      | in?  sens>=bound")
    rows: dict[str, list[dict[str, Any]]] = {rule: [] for rule in args.rules}
    for sweep in sweeps:
        for rule, row in score_rules(sweep, args.rules, args.bootstrap).items():
            rows[rule].append(row)
            print(_line(rule, row), flush=True)
    print(f"\nmean over {len(sweeps)} split(s)")
    print(f"{'rule':16s} {'thr':>6s} | cross-fit  bal   sens   spec | holdout  bal   sens   spec | "
          "inside the stated interval: sens / spec; at or above its low end: sens / spec; sens >= bound (splits)")
    for rule, got in rows.items():
        mean = {k: float(np.mean([r[k] for r in got])) for k in got[0] if isinstance(got[0][k], float)}
        print(f"{rule:16s} {mean['threshold']:6.3f} |          "
              + " ".join(f"{mean['cf_' + k]:6.3f}" for k in SHOWN) + " |        "
              + " ".join(f"{mean['ho_' + k]:6.3f}" for k in SHOWN)
              + " | " + " / ".join(str(sum(r[k] for r in got)) for k in ("sens_in", "spec_in"))
              + "; " + " / ".join(str(sum(r[k] for r in got)) for k in ("sens_held", "spec_held"))
              + f"; {sum(r['above_bound'] for r in got)} of {len(got)}")
    if BASELINE in rows:
        print(f"\nbalanced accuracy against {BASELINE!r}: the mean over the splits of the difference [95% paired "
              f"patient-bootstrap interval, {args.paired_draws} draws]")
        print(f"{'rule':16s} {'cross-fit':>24s} {'holdout':>24s}")
        base = rows[BASELINE]
        for rule, got in rows.items():
            if rule == BASELINE:
                continue
            cells = [interval_text(*paired_difference(
                [Paired(r[part + "_y"], r[part + "_groups"], r[part + "_decision"], b[part + "_decision"])
                 for r, b in zip(got, base)], balanced_accuracy, n_boot=args.paired_draws)) for part in ("cf", "ho")]
            print(f"{rule:16s} " + " ".join(f"{c:>24s}" for c in cells), flush=True)


def score_rules(sweep: Path, rules: list[str], n_boot: int) -> dict[str, dict[str, Any]]:
    """Per rule: its threshold, the pool's cross-fitted and the holdout's balanced accuracy, sensitivity and
    specificity, and whether the holdout's fall inside the stated intervals."""
    settings = EnsembleSettings(n_boot=50)  # the members as the default job picks them; its metrics are not used
    members = fit_ensemble(sweep, settings).members
    fit_on, _ = as_shipped(oof_predictions(members), members, settings.fold_noise_share)
    holdout = holdout_predictions(members)
    out = {}
    for rule in rules:
        def make_pipeline() -> EnsemblePipeline:
            return EnsemblePipeline(method=settings.method, calibration=settings.calibration, threshold_rule=rule,
                                    n_splits=settings.n_splits, seed=settings.seed)

        crossfit = cross_fit(make_pipeline, fit_on, n_splits=settings.n_splits, seed=settings.seed, rule=rule)
        stated = bootstrap_metrics(fit_on.y, crossfit["calibrated"], fit_on.groups, crossfit["threshold"],
                                   n_boot=n_boot)
        final = make_pipeline().fit(fit_on.margins, fit_on.y, fit_on.groups)
        seen = bootstrap_metrics(holdout.y, final.predict_proba(holdout.margins), holdout.groups, final.threshold_,
                                 n_boot=1)
        promise = sensitivity_bound(fit_on.y, final.threshold_proba(fit_on.margins, fit_on.y, fit_on.groups),
                                    final.threshold_, rule=rule)
        row: dict[str, Any] = {"split": split_seed(sweep), "threshold": float(final.threshold_)}
        row.update(cf_y=fit_on.y, cf_groups=fit_on.groups,
                   cf_decision=(crossfit["calibrated"] >= crossfit["threshold"]).astype(int),
                   ho_y=holdout.y, ho_groups=holdout.groups, ho_decision=final.predict(holdout.margins))
        for k in SHOWN:
            row["cf_" + k] = float(stated[k]["value"])
            row["ho_" + k] = float(seen[k]["value"])
        for k in ("sensitivity", "specificity"):
            row[k + "_ci"] = (stated[k]["ci_low"], stated[k]["ci_high"])
            row[k[:4] + "_in"] = bool(stated[k]["ci_low"] <= seen[k]["value"] <= stated[k]["ci_high"])
            row[k[:4] + "_held"] = bool(seen[k]["value"] >= stated[k]["ci_low"])  # no worse than the stated low end
        row["bound"] = float(promise["sensitivity_lower_bound"])
        row["above_bound"] = bool(seen["sensitivity"]["value"] >= row["bound"])
        out[rule] = row
    return out


def _line(rule: str, r: dict[str, Any]) -> str:
    (slo, shi), (plo, phi) = r["sensitivity_ci"], r["specificity_ci"]
    return (f"{rule:16s} {r['split']:5d} {r['threshold']:6.3f} |          "
            + " ".join(f"{r['cf_' + k]:6.3f}" for k in SHOWN) + " |        "
            + " ".join(f"{r['ho_' + k]:6.3f}" for k in SHOWN)
            + f" | {r['cf_sensitivity']:.3f} [{slo:.2f}, {shi:.2f}]  {r['cf_specificity']:.3f} [{plo:.2f}, {phi:.2f}]"
            f" | {'y' if r['sens_in'] else 'n'}{'y' if r['spec_in'] else 'n'}   "
            f"{'y' if r['above_bound'] else 'n'} ({r['bound']:.3f})")


if __name__ == "__main__":
    main()
