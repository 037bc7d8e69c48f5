"""`lungsweep run`: the whole job (sweep -> ensemble -> export -> predict), resumable; lungsweep.job runs it."""
from __future__ import annotations

import argparse
from pathlib import Path

import ensemble
from lungsweep.job import MainJob, run_main_job

from ._common import CALIBRATIONS, METHODS, add_bag_models, add_max_networks, add_threshold_rule, members_arg

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_run(sub)


def _add_run(sub: argparse._SubParsersAction) -> None:
    default = ensemble.EnsembleSettings()
    p = sub.add_parser("run", help="the whole job: sweep -> ensemble -> export -> predict, resumable")
    dataset = p.add_mutually_exclusive_group(required=True)
    dataset.add_argument("--data", help="dataset folder with one sub-folder per class")
    dataset.add_argument("--manifest", help="CSV with path,label[,group] (paths relative to its folder) instead "
                                            "of --data")
    p.add_argument("--out", required=True, help="folder for sweep/, ensemble/, model/ and predictions.csv "
                                                "(outside the data folder)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--quick", action="store_true", help="the bundled quick sweep (about 9 min on 2 CPU cores)")
    how.add_argument("--config", help="sweep.yaml or a bundled sweep name (default: the bundled default sweep)")
    p.add_argument("--members", type=members_arg, default=default.members,
                   help=f"ensemble members: the top N complete trials, or 'all' trials that trained a model "
                        f"(default {default.members})")
    p.add_argument("--method", choices=METHODS, metavar="METHOD", default=default.method,
                   help="how members are combined: %(choices)s (default %(default)s)")
    p.add_argument("--calibration", choices=CALIBRATIONS, metavar="CALIBRATION", default=default.calibration,
                   help="how probabilities are calibrated: %(choices)s (default %(default)s)")
    add_max_networks(p, default="a sweep.yaml's max_networks, else no budget")
    add_bag_models(p)
    add_threshold_rule(p)
    p.add_argument("--address", help="join a Ray cluster: auto, or ray://HEAD:10001; default: a local Ray")
    p.set_defaults(run=_run_main_job)


def _run_main_job(args: argparse.Namespace) -> int:
    job = MainJob(out=Path(args.out), data=args.data, manifest=args.manifest,
                  config="quick" if args.quick else args.config,
                  members=args.members, method=args.method, calibration=args.calibration, address=args.address,
                  max_networks=args.max_networks, bag_models=args.bag_models,
                  threshold_rule=args.threshold_rule)
    outcome = run_main_job(job)
    print(outcome.summary)
    return 0 if outcome.complete else 1  # the summary's last line says what is missing and how to run the rest
