"""How many networks should the exported ensemble hold? Budgets and what ships, per outer split.

Reads the job folders bench/jobs/bench_outer.py wrote for an arm (OUT/ARM/seedN/job/sweep) and refits
the default ensemble's pipeline (mean, temperature, the default threshold rule) on the members each
variant keeps, from their stored predictions: nothing is retrained. Two ways to spend a budget:

- bags: whole bags in rank order while their fold models fit the budget (`--max-networks`,
  ensemble.fit.budget.within_budget); a bag's prediction is the mean of its fold models;
- first fold: each config's first fold model alone, the top configs by rank, one network each.
  bench_members' configs-or-folds table found a bag's later folds add nothing on the holdout
  inside an ensemble of 12 configs. The calibrator is fitted on the same out-of-fold margins,
  which are one fold model's margins: what a single fold model ships, by construction.

Each variant is scored on the split's untouched holdout as it would ship: AUC, ECE, log-loss,
balanced accuracy at its threshold, and the networks it runs per image. Last, each variant's
difference from the old default (every fold of every bag: "bags, all"), averaged over the splits,
with its 95% paired patient-bootstrap interval (bench.ensembling.paired): the differences behind
the default are small against one holdout's noise, and this says how small.

    .venv/bin/python -m bench.ensembling.bench_budget --out runs/bench_outer --arm default
    .venv/bin/python -m bench.ensembling.bench_budget --arm wide --versus default --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import log_loss

from bench.ensembling.bench_members import job_sweeps, split_seed
from bench.ensembling.paired import Paired, auc, balanced_accuracy, interval_text, neg_log_loss, paired_difference
from ensemble import EnsemblePipeline, EnsembleSettings, bootstrap_metrics, holdout_predictions, oof_predictions
from ensemble import pick_members
from ensemble.fit.bag_spread import as_shipped
from ensemble.fit.budget import networks, within_budget

BUDGETS = (5, 10, 15, 20, 30)
SHOWN = ("auc", "ece", "log_loss", "balanced_accuracy")
BASELINE = "bags, all"  # the default before 2026-12-06: every fold model of every bag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_outer", help="bench_outer's --out")
    parser.add_argument("--arm", default="default", help="the job arm whose sweeps are refitted")
    parser.add_argument("--seeds", nargs="+", type=int, help="only these outer splits (default: every finished one)")
    parser.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    parser.add_argument("--bootstrap", type=int, default=2000, help="draws of the paired patient bootstrap")
    parser.add_argument("--versus", metavar="ARM",
                        help="also refit this arm's sweeps on the same splits, and print each variant's difference "
                             "between the two arms (same holdout images: paired)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    sweeps = [s for s in job_sweeps(args.out, args.arm) if args.seeds is None or split_seed(s) in args.seeds]
    print(f"splits: {', '.join(str(split_seed(s)) for s in sweeps)}")
    rows = arm_rows(args.arm, sweeps, args.budgets)
    print(f"\nagainst {BASELINE!r}: the mean over the splits of the difference [95% paired patient-bootstrap "
          f"interval, {args.bootstrap} draws]")
    _print_differences(rows, {name: rows[BASELINE] for name in rows if name != BASELINE}, args.bootstrap)
    if args.versus:
        others = {split_seed(s): s for s in job_sweeps(args.out, args.versus)}
        missing = [split_seed(s) for s in sweeps if split_seed(s) not in others]
        if missing:
            raise SystemExit(f"arm {args.versus} has no job on split(s) {missing}")
        other = arm_rows(args.versus, [others[split_seed(s)] for s in sweeps], args.budgets)
        print(f"\n{args.arm} against {args.versus}, variant by variant: the mean over the splits of the difference "
              f"[95% paired patient-bootstrap interval, {args.bootstrap} draws]")
        _print_differences({n: r for n, r in rows.items() if n in other}, other, args.bootstrap)


def arm_rows(arm: str, sweeps: list[Path], budgets: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Each variant's scores on every split (variants some split cannot make are left out), printed per split
    and as means."""
    print(f"\n{arm}\n{'variant':22s} {'split':>5s} {'nets':>5s} " + " ".join(f"{k[:8]:>8s}" for k in SHOWN))
    rows: dict[str, list[dict[str, Any]]] = {}
    for sweep in sweeps:
        for name, row in score_variants(sweep, budgets).items():
            rows.setdefault(name, []).append(row)
            print(f"{name:22s} {split_seed(sweep):5d} {row['networks']:5d} "
                  + " ".join(f"{row[k]:8.3f}" for k in SHOWN), flush=True)
    rows = {name: got for name, got in rows.items() if len(got) == len(sweeps)}
    print(f"\n{arm}: mean over {len(sweeps)} split(s)")
    print(f"{'variant':22s} {'nets':>5s} " + " ".join(f"{k[:8]:>8s}" for k in SHOWN))
    for name, got in rows.items():
        print(f"{name:22s} {np.mean([r['networks'] for r in got]):5.1f} "
              + " ".join(f"{np.mean([r[k] for r in got]):8.3f}" for k in SHOWN))
    return rows


def _print_differences(rows: dict[str, list[dict[str, Any]]], against: dict[str, list[dict[str, Any]]],
                       n_boot: int) -> None:
    print(f"{'variant':22s} {'AUC':>24s} {'-log-loss':>24s} {'balanced acc':>24s}")
    for name, base in against.items():
        assert all(r["ids"] == b["ids"] for r, b in zip(rows[name], base)), "paired on different holdout images"
        cells = []
        for metric, key in ((auc, "p"), (neg_log_loss, "p"), (balanced_accuracy, "decision")):
            paired = [Paired(r["y"], r["groups"], r[key], b[key]) for r, b in zip(rows[name], base)]
            cells.append(interval_text(*paired_difference(paired, metric, n_boot=n_boot)))
        print(f"{name:22s} " + " ".join(f"{c:>24s}" for c in cells), flush=True)


def score_variants(sweep: Path, budgets: list[int]) -> dict[str, dict[str, Any]]:
    settings = EnsembleSettings()
    ranked = pick_members(sweep, top=settings.members)  # every bag, in rank order, as the default job takes them
    out = {"bags, all": _score(ranked, settings, first_fold=False)}
    out["first fold, all"] = _score(ranked, settings, first_fold=True)
    for budget in budgets:
        if budget < sum(networks(m) for m in ranked):
            out[f"bags, <= {budget}"] = _score(within_budget(ranked, budget), settings, first_fold=False)
        if budget < len(ranked):
            out[f"first fold, <= {budget}"] = _score(ranked[:budget], settings, first_fold=True)
    return out


def _score(members: list, settings: EnsembleSettings, *, first_fold: bool) -> dict[str, Any]:
    """The default pipeline fitted on these members' out-of-fold margins, scored on the holdout as it ships."""
    fit_on, _ = as_shipped(oof_predictions(members), members, settings.fold_noise_share)
    pipe = EnsemblePipeline(method=settings.method, calibration=settings.calibration,
                            threshold_rule=settings.threshold_rule, n_splits=settings.n_splits, seed=settings.seed)
    pipe.fit(fit_on.margins, fit_on.y, fit_on.groups)
    holdout = holdout_predictions(members)
    margins = _first_fold_margins(members, holdout.ids) if first_fold else holdout.margins
    p = pipe.predict_proba(margins)
    scored = bootstrap_metrics(holdout.y, p, holdout.groups, pipe.threshold_, n_boot=1)
    return {"networks": len(members) if first_fold else sum(networks(m) for m in members),
            "ids": holdout.ids, "y": holdout.y, "groups": holdout.groups, "p": p,
            "decision": (p >= pipe.threshold_).astype(int),
            "auc": scored["auc"]["value"], "ece": scored["ece"]["value"],
            "balanced_accuracy": scored["balanced_accuracy"]["value"],
            "log_loss": float(log_loss(holdout.y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1]))}


def _first_fold_margins(members: list, ids: list[str]) -> np.ndarray:
    """(images, members): each member's first fold model's holdout margin (bag.json `fold_holdout`)."""
    columns = []
    for m in members:
        folds = m.meta["fold_holdout"]
        first = folds[min(folds, key=int)]
        columns.append([first[i] for i in ids])
    return np.array(columns, dtype=np.float64).T


if __name__ == "__main__":
    main()
