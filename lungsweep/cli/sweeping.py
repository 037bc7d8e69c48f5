"""`lungsweep launch` and `lungsweep results`: a sweep, run or resumed, and its ranked trials."""
from __future__ import annotations

import argparse

import search
import search.storage

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_launch(sub)
    _add_results(sub)


def _add_launch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("launch", help="run (or resume) a hyperparameter sweep with Ray Tune, Optuna TPE and ASHA")
    p.add_argument("--data", help="dataset folder (overrides train.data in the sweep config)")
    p.add_argument("--out", required=True, help="RUN_DIR of the sweep; an existing one is resumed")
    p.add_argument("--config", help="sweep.yaml, or a bundled sweep: default (used when omitted) or quick")
    p.add_argument("--num-samples", type=int, help="number of trials")
    p.add_argument("--max-concurrent", type=int, help="trials running at once")
    p.add_argument("--time-budget", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--address", help="join a Ray cluster: auto, or ray://HEAD:10001; default: a local Ray")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    p.add_argument("--smoke-test", action="store_true", help="shrink everything to run in about a minute")
    p.set_defaults(run=_run_launch)


def _run_launch(args: argparse.Namespace) -> int:
    cfg = search.load_sweep_config(args.config, {
        "data": args.data, "num_samples": args.num_samples, "max_concurrent": args.max_concurrent,
        "time_budget_s": args.time_budget,
    })
    if args.smoke_test:
        cfg = search.smoke_test(cfg)
    if args.address is None:  # on a cluster the data may live on the workers only: they check it there
        search.check_data(cfg)
    table = search.launch(cfg, args.out, address=args.address, resume=args.resume)
    return 0 if table.attrs["count"].complete else 1  # launch's last line says what is missing


def _add_results(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="rank the trials of a sweep; save results.csv/.parquet and best_config.yaml")
    p.add_argument("run_dir", help="the --out folder of a launch")
    p.add_argument("--top", type=int, default=20, help="rows to print (all are saved)")
    p.set_defaults(run=_run_results)


def _run_results(args: argparse.Namespace) -> int:
    cfg = search.read_sweep(args.run_dir)
    table = search.load_results(args.run_dir)
    count = search.save_results(table, args.run_dir, cfg)
    print(search.format_table(table, cfg.reported_metric, top=args.top))
    print(f"saved {search.storage.join(args.run_dir, search.RESULTS_CSV)}, {search.RESULTS_PARQUET}, "
          f"{search.BEST_CONFIG} and {search.SWEEP_COUNT}")
    print(count.line())
    return 0
