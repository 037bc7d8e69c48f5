"""`lungsweep explain`: where the model looks, as Grad-CAM overlays and the share of each map on the border."""
from __future__ import annotations

import argparse
from pathlib import Path

import ensemble

from ._common import EXPLAIN_TARGETS, unreadable

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_explain(sub)


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="where the model looks: Grad-CAM overlays and the share of each map on the "
                                       "image's border")
    p.add_argument("source", help="ENS_DIR from `lungsweep ensemble`, a bag, or a checkpoint / `lungsweep train` run "
                                  "folder (torch weights: an exported MODEL_DIR has none)")
    p.add_argument("images", nargs="*", help="image files or folders (searched recursively); under class folders "
                                             "named as in training, the summary is also per class and per outcome")
    p.add_argument("--out", required=True, help="folder for overlays/, explanations.csv, summary.json, summary.csv")
    p.add_argument("--target", choices=EXPLAIN_TARGETS, metavar="TARGET", default="decision",
                   help="whose evidence is mapped: %(choices)s (default %(default)s: the class decided at the "
                        "model's threshold)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(run=_run_explain)


def _run_explain(args: argparse.Namespace) -> int:
    if not args.images:
        raise ensemble.ExplainError("nothing to explain: give image files or folders after SOURCE")
    model = ensemble.load_explainable(args.source, device=args.device)
    result = ensemble.explain(model, ensemble.samples_of(ensemble.find_images(args.images), model), args.out, target=args.target,
                     batch_size=args.batch_size, source=args.source)
    print(ensemble.format_summary(result.summary))
    print(f"explained {result.explained} image(s); wrote {Path(args.out) / 'explanations.csv'}, summary.json, "
          f"summary.csv and overlays/")
    return unreadable(result.bad, "rows with an error, no map")
