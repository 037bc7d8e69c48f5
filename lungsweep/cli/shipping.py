"""`lungsweep export` and `lungsweep predict`: one verified MODEL_DIR, and that model run on new images."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ensemble
from trainers.errors import DataError

from ._common import unreadable

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_export(sub)
    _add_predict(sub)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write an ensemble, a sweep's best trial or one model as one verified MODEL_DIR")
    p.add_argument("source", help="ENS_DIR from `lungsweep ensemble`, RUN_DIR of a sweep (with --trial), "
                                  "or a `lungsweep train` run / checkpoint folder")
    p.add_argument("--trial", help="with a RUN_DIR: best (default) or a trial id")
    p.add_argument("--out", required=True, help="MODEL_DIR to write (model, manifest.json, metrics)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                   help="onnx (default; onnxruntime, any language) or torchscript (deprecated by PyTorch)")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for a single trial's metric intervals")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    manifest = ensemble.export_model(args.source, args.out, trial=args.trial, fmt=args.format, n_boot=args.bootstrap)
    members, parity = manifest["ensemble"]["members"], manifest["parity"]
    print(
        f"exported {len(members)} member(s) {', '.join(members)} to {Path(args.out) / manifest['model_file']}; "
        f"threshold {manifest['threshold']:.4f}; parity on {parity['images']} {parity['source']}: "
        f"max |dp| {parity['max_abs_diff']:.1e}"
    )
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run a MODEL_DIR on image files or folders; one CSV row per image")
    p.add_argument("model_dir", help="MODEL_DIR from `lungsweep export`")
    p.add_argument("files", nargs="*", help="image files (or folders) to predict")
    p.add_argument("--data", action="append", default=[], help="a folder of images, searched recursively")
    p.add_argument("--out", help="CSV to write (path,probability,label,error); default: standard output")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    if not args.files and not args.data:
        raise DataError("nothing to predict: give image files, or a folder with --data")
    model = ensemble.ExportedModel.load(args.model_dir, threads=args.threads)
    paths = ensemble.find_images([*args.data, *args.files])
    summary = ensemble.predict(model, paths, out=args.out, stream=None if args.out else sys.stdout,
                      batch_size=args.batch_size, progress=True)
    where = args.out or "standard output"
    print(
        f"predicted {summary.predicted} image(s), {summary.positive} {model.positive} at threshold "
        f"{model.threshold:.4f}; wrote {where}", file=sys.stderr,
    )
    return unreadable(summary.bad, "rows with an error, no probability")
