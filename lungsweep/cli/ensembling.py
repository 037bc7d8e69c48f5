"""`lungsweep ensemble` and `lungsweep evaluate`: a sweep's members fitted into one calibrated ensemble, and any
model scored on a labelled folder."""
from __future__ import annotations

import argparse

import ensemble

from ._common import CALIBRATIONS, METHODS, add_bag_models, add_max_networks, add_threshold_rule, members_arg

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_ensemble(sub)
    _add_evaluate(sub)


def _add_ensemble(sub: argparse._SubParsersAction) -> None:
    default = ensemble.EnsembleSettings()
    p = sub.add_parser("ensemble", help="combine a sweep's best checkpoints, calibrate, report cross-fitted metrics")
    p.add_argument("run_dir", help="the --out folder of a launch, or its URI (s3://, gs://, file://)")
    p.add_argument("--out", required=True,
                   help="ENS_DIR to write: the members, the fitted ensemble, its metrics and report.html")
    p.add_argument("--method", choices=METHODS, metavar="METHOD", default=default.method,
                   help="how members are combined: %(choices)s (default %(default)s)")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--members", type=members_arg, default=default.members,
                      help=f"the top N finished trials (in a k-fold sweep, trials that finished every fold), or "
                           f"'all': every trial that trained a model, with the bags ASHA stopped early (--method "
                           f"mean) (default {default.members})")
    pick.add_argument("--trials", help="comma-separated trial ids instead of the top N")
    p.add_argument("--calibration", choices=CALIBRATIONS, metavar="CALIBRATION", default=default.calibration,
                   help="how probabilities are calibrated: %(choices)s (default %(default)s)")
    add_max_networks(p)
    add_bag_models(p)
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average each member over flips")
    add_threshold_rule(p)
    p.add_argument("--target-sensitivity", type=float,
                   help="threshold meeting this sensitivity with 95%% confidence (default: --threshold-rule)")
    p.add_argument("--folds", type=int, default=default.n_splits, help="cross-fitting folds over holdout groups")
    p.add_argument("--fold-noise-share", type=float, default=default.fold_noise_share,
                   help="k-fold bags: fit the calibrator for the bag's mean margin, assuming this share of a fold "
                        "model's margin variance is fold-to-fold disagreement (measured 0.26 on 3-fold bags; "
                        "default %(default)s fits the out-of-fold margins as they are, which the outer-split bench "
                        "found as well calibrated)")
    p.add_argument("--bootstrap", type=int, default=default.n_boot,
                   help="bootstrap resamples for the intervals (of patient groups when every class "
                        "has enough, else of images)")
    p.set_defaults(run=_run_ensemble)


def _run_ensemble(args: argparse.Namespace) -> int:
    settings = ensemble.EnsembleSettings(
        method=args.method, calibration=args.calibration, members=args.members,
        trials=tuple(t.strip() for t in args.trials.split(",")) if args.trials else (),
        tta=args.tta, target_sensitivity=args.target_sensitivity, threshold_rule=args.threshold_rule, n_splits=args.folds, n_boot=args.bootstrap,
        fold_noise_share=args.fold_noise_share, max_networks=args.max_networks,
        bag_models=args.bag_models,
    )
    metrics = ensemble.build_ensemble(args.run_dir, args.out, settings)
    print(ensemble.format_metrics(metrics))
    print(f"{metrics['fitted_on']['scored_on']}; wrote {args.out}/ (open {ensemble.REPORT_HTML})")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a model (MODEL_DIR, ENS_DIR or checkpoint) on a labelled image folder")
    p.add_argument("model_dir", help="MODEL_DIR from `lungsweep export`, ENS_DIR from `lungsweep ensemble`, "
                                     "or a checkpoint folder (e.g. RUN/best)")
    p.add_argument("--data", required=True, help="folder with one sub-folder per class, named as in training")
    p.add_argument("--out", help="where to write metrics.json")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap resamples for the intervals (of patient groups when every class "
                        "has enough, else of images)")
    p.add_argument("--group-regex", help="how to read patient groups from file names (default: the name up to its "
                                         "page/slice indices)")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    metrics = ensemble.evaluate(args.model_dir, args.data, out=args.out, n_boot=args.bootstrap, group_regex=args.group_regex)
    print(ensemble.format_metrics(metrics))
    if args.out:
        print(f"wrote {args.out}")
    return 0
