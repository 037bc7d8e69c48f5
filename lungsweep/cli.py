"""`lungsweep SUBCOMMAND ...`: one console script, one small function per subcommand."""
from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["main"]

log = logging.getLogger("lungsweep")


class _RegistryNames(Sequence[str]):
    """The names of a registry, imported the first time argparse checks a value or prints --help.

    (Give such an argument a metavar: argparse lists the choices of one without it as it is added.)

    The registries live beside torch and scikit-learn code: `lungsweep --help` and the
    other subcommands must not pay for importing them.
    """

    def __init__(self, module: str, attribute: str) -> None:
        self.module, self.attribute = module, attribute

    @functools.cached_property
    def _names(self) -> list[str]:
        return list(getattr(importlib.import_module(self.module), self.attribute))

    def __getitem__(self, index):  # type: ignore[override]
        return self._names[index]

    def __len__(self) -> int:
        return len(self._names)


METHODS = _RegistryNames("ensemble.fit.combine", "COMBINERS")
CALIBRATIONS = _RegistryNames("ensemble.fit.pipeline", "CALIBRATIONS")
EXPLAIN_TARGETS = _RegistryNames("ensemble.explaining.explain", "TARGETS")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one classifier and write a run folder")
    p.add_argument("--data", help="folder with one sub-folder per class (e.g. CT_COVID/, CT_NonCOVID/)")
    p.add_argument("--manifest", help="CSV with path,label[,group] instead of --data")
    p.add_argument("--out", required=True, help="run folder to write (checkpoints, metrics, config)")
    p.add_argument("--config", help="YAML file of training settings; flags override it")
    p.add_argument("--model", help="timm model name, e.g. resnet18, efficientnet_lite0")
    p.add_argument("--image-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--positive", help="name of the positive class folder")
    p.add_argument("--group-regex", help="regex whose first group (or match) names a file's group (patient)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="start from ImageNet weights (installed offline for efficientnet_lite0/1/2)")
    p.add_argument("--pretrained-file", help="weights file (safetensors or a .pth state dict)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--skip-bad", action="store_true", default=None, help="leave undecodable images out")
    p.add_argument("--cv-folds", type=int, help="K > 1: train a bag of K fold models (group k-fold) and report "
                                               "its pooled out-of-fold metrics")
    p.add_argument("--window", type=_window_arg,
                   help="DICOM/NIfTI window: auto, lung, mediastinum, none or WIDTH,LEVEL (HU), e.g. 1500,-600")
    p.add_argument("--slices", help="DICOM series / NIfTI volumes: middle, all or 'every N'")
    p.add_argument("--tensorboard", metavar="DIR", help="also write each epoch's metrics as TensorBoard events to DIR "
                                                        "(open with: tensorboard --logdir DIR)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(run=_run_train)


def _window_arg(value: str) -> str | list[float]:
    """'lung' stays a name; '1500,-600' becomes [width, level] (TrainConfig validates both)."""
    if "," not in value:
        return value
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--window {value!r} is not WIDTH,LEVEL in numbers, e.g. 1500,-600")


def _members_arg(value: str) -> int | str:
    """--members: a count, or 'all'; ensemble.members.check_member_count names anything else."""
    try:
        return int(value)
    except ValueError:
        return value


def _run_train(args: argparse.Namespace) -> int:
    from trainers import merge_config, prepare_data, train, train_bag
    from trainers.audit import audit_into
    from trainers.bag import existing_bag
    from trainers.run_folder import BEST, resume_point

    overrides = {
        "data": args.data, "manifest": args.manifest, "model": args.model, "image_size": args.image_size,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "positive": args.positive, "group_regex": args.group_regex, "pretrained_file": args.pretrained_file,
        "pretrained": True if args.pretrained_file and args.pretrained is None else args.pretrained,
        "device": args.device, "skip_bad": args.skip_bad, "window": args.window, "slices": args.slices,
        "cv_folds": args.cv_folds, "tensorboard": args.tensorboard,
    }
    cfg = merge_config(args.config, overrides)
    # refuse to train over a run or a bag before the data is read or anything is written
    if cfg.cv_folds > 1:
        existing_bag(args.out, resume=args.resume)
    else:
        resume_point(args.out, resume=args.resume)
    data = prepare_data(cfg)
    audit_into(args.out, cfg, data.found)  # once, at the door: the run says how honest its groups are
    if cfg.cv_folds > 1:
        bag = train_bag(cfg, args.out, resume=args.resume, data=data)
        print(f"bag of {bag.folds_done} fold models: out-of-fold auc {bag.metrics.get('oof_auc', float('nan')):.4f}  "
              f"accuracy {bag.metrics.get('oof_accuracy', float('nan')):.4f} -> {args.out}")
        return 0
    result = train(cfg, args.out, resume=args.resume, data=data)
    best = result.best_metrics
    print(
        f"best epoch {result.best_epoch}/{result.epochs_run}: val_auc {best.get('val_auc', float('nan')):.4f}  "
        f"val_accuracy {best.get('val_accuracy', float('nan')):.4f}  -> {Path(args.out) / BEST}"
    )
    return 0


def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="check a dataset's groups: duplicates, straddling copies, a source shortcut")
    p.add_argument("data", nargs="?", help="folder with one sub-folder per class")
    p.add_argument("--manifest", help="CSV with path,label[,group] instead of DATA")
    p.add_argument("--out", help="the audit.json file to write (keys: see trainers/audit/report.py)")
    p.add_argument("--html", help="the self-contained audit.html file to write")
    p.add_argument("--group-regex", help="how to read groups from file names (default: the name up to its page/slice indices)")
    p.add_argument("--positive", help="name of the positive class folder")
    p.set_defaults(run=_run_audit)


def _run_audit(args: argparse.Namespace) -> int:
    from trainers import merge_config
    from trainers.audit import audit_config, format_audit, write_audit

    cfg = merge_config(None, {"data": args.data, "manifest": args.manifest, "group_regex": args.group_regex,
                              "positive": args.positive})
    report = audit_config(cfg)
    write_audit(report, json_path=args.out, html_path=args.html)
    print(format_audit(report))
    for path in (args.out, args.html):
        if path:
            print(f"wrote {path}")
    return 1 if report["errors"] else 0


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
    from search import check_data, launch, load_sweep_config, smoke_test

    cfg = load_sweep_config(args.config, {
        "data": args.data, "num_samples": args.num_samples, "max_concurrent": args.max_concurrent,
        "time_budget_s": args.time_budget,
    })
    if args.smoke_test:
        cfg = smoke_test(cfg)
    if args.address is None:  # on a cluster the data may live on the workers only: they check it there
        check_data(cfg)
    launch(cfg, args.out, address=args.address, resume=args.resume)
    return 0


def _add_results(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="rank the trials of a sweep; save results.csv/.parquet and best_config.yaml")
    p.add_argument("run_dir", help="the --out folder of a launch")
    p.add_argument("--top", type=int, default=20, help="rows to print (all are saved)")
    p.set_defaults(run=_run_results)


def _run_results(args: argparse.Namespace) -> int:
    from search import format_table, load_results, read_sweep, save_results, storage

    cfg = read_sweep(args.run_dir)
    table = load_results(args.run_dir)
    save_results(table, args.run_dir, cfg)
    print(format_table(table, cfg.reported_metric, top=args.top))
    print(f"saved {storage.join(args.run_dir, 'results.csv')}, results.parquet and best_config.yaml")
    return 0


def _add_ensemble(sub: argparse._SubParsersAction) -> None:
    from ensemble import EnsembleSettings

    default = EnsembleSettings()
    p = sub.add_parser("ensemble", help="combine a sweep's best checkpoints, calibrate, report cross-fitted metrics")
    p.add_argument("run_dir", help="the --out folder of a launch, or its URI (s3://, gs://, file://)")
    p.add_argument("--out", required=True,
                   help="ENS_DIR to write: the members, the fitted ensemble, its metrics and report.html")
    p.add_argument("--method", choices=METHODS, metavar="METHOD", default=default.method,
                   help="how members are combined: %(choices)s (default %(default)s)")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--members", type=_members_arg, default=default.members,
                      help=f"the top N finished trials (in a k-fold sweep, trials that finished every fold), or "
                           f"'all': every trial that trained a model, with the bags ASHA stopped early (--method "
                           f"mean) (default {default.members})")
    pick.add_argument("--trials", help="comma-separated trial ids instead of the top N")
    p.add_argument("--calibration", choices=CALIBRATIONS, metavar="CALIBRATION", default=default.calibration,
                   help="how probabilities are calibrated: %(choices)s (default %(default)s)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average each member over flips")
    p.add_argument("--target-sensitivity", type=float, help="threshold meeting this sensitivity (default: Youden's J)")
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
    from ensemble import REPORT_HTML, EnsembleSettings, build_ensemble, format_metrics

    settings = EnsembleSettings(
        method=args.method, calibration=args.calibration, members=args.members,
        trials=tuple(t.strip() for t in args.trials.split(",")) if args.trials else (),
        tta=args.tta, target_sensitivity=args.target_sensitivity, n_splits=args.folds, n_boot=args.bootstrap,
        fold_noise_share=args.fold_noise_share,
    )
    metrics = build_ensemble(args.run_dir, args.out, settings)
    print(format_metrics(metrics))
    print(f"{metrics['fitted_on']['scored_on']}; wrote {args.out}/ (open {REPORT_HTML})")
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
    from ensemble import evaluate, format_metrics

    metrics = evaluate(args.model_dir, args.data, out=args.out, n_boot=args.bootstrap, group_regex=args.group_regex)
    print(format_metrics(metrics))
    if args.out:
        print(f"wrote {args.out}")
    return 0


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
    from ensemble import export_model

    manifest = export_model(args.source, args.out, trial=args.trial, fmt=args.format, n_boot=args.bootstrap)
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
    from ensemble import ExportedModel, find_images, predict
    from trainers.errors import DataError

    if not args.files and not args.data:
        raise DataError("nothing to predict: give image files, or a folder with --data")
    model = ExportedModel.load(args.model_dir, threads=args.threads)
    paths = find_images([*args.data, *args.files])
    summary = predict(model, paths, out=args.out, stream=None if args.out else sys.stdout,
                      batch_size=args.batch_size, progress=True)
    where = args.out or "standard output"
    print(
        f"predicted {summary.predicted} image(s), {summary.positive} {model.positive} at threshold "
        f"{model.threshold:.4f}; wrote {where}", file=sys.stderr,
    )
    return _unreadable(summary.bad, "rows with an error, no probability")


def _unreadable(bad: list[tuple[str, str]], rows: str) -> int:
    """List the images that could not be read (the first 20) on stderr: exit status 1, else 0."""
    if not bad:
        return 0
    print(f"{len(bad)} image(s) could not be read ({rows}):", file=sys.stderr)
    for path, reason in bad[:20]:
        print(f"  {path}: {reason}", file=sys.stderr)
    return 1


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
    from ensemble import ExplainError, explain, find_images, format_summary, load_explainable, samples_of

    if not args.images:
        raise ExplainError("nothing to explain: give image files or folders after SOURCE")
    model = load_explainable(args.source, device=args.device)
    result = explain(model, samples_of(find_images(args.images), model), args.out, target=args.target,
                     batch_size=args.batch_size, source=args.source)
    print(format_summary(result.summary))
    print(f"explained {result.explained} image(s); wrote {Path(args.out) / 'explanations.csv'}, summary.json, "
          f"summary.csv and overlays/")
    return _unreadable(result.bad, "rows with an error, no map")


def _add_run(sub: argparse._SubParsersAction) -> None:
    from ensemble import EnsembleSettings

    default = EnsembleSettings()
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
    p.add_argument("--members", type=_members_arg, default=default.members,
                   help=f"ensemble members: the top N complete trials, or 'all' trials that trained a model "
                        f"(default {default.members})")
    p.add_argument("--method", choices=METHODS, metavar="METHOD", default=default.method,
                   help="how members are combined: %(choices)s (default %(default)s)")
    p.add_argument("--calibration", choices=CALIBRATIONS, metavar="CALIBRATION", default=default.calibration,
                   help="how probabilities are calibrated: %(choices)s (default %(default)s)")
    p.add_argument("--address", help="join a Ray cluster: auto, or ray://HEAD:10001; default: a local Ray")
    p.set_defaults(run=_run_main_job)


def _run_main_job(args: argparse.Namespace) -> int:
    from lungsweep.job import MainJob, run_main_job

    job = MainJob(out=Path(args.out), data=args.data, manifest=args.manifest,
                  config="quick" if args.quick else args.config,
                  members=args.members, method=args.method, calibration=args.calibration, address=args.address)
    summary = run_main_job(job)
    print(summary)
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_run, _add_train, _add_audit, _add_launch, _add_results, _add_ensemble, _add_evaluate, _add_export,
    _add_predict, _add_explain,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lungsweep", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


# subcommands whose --out is a folder they create (the others write one file there)
FOLDER_OUT = ("run", "train", "launch", "ensemble", "export", "explain")
# the files the others write, by option: an existing folder there is named, not a traceback
FILE_OUT = {"audit": {"out": "audit.json", "html": "audit.html"}, "evaluate": {"out": "metrics.json"},
            "predict": {"out": "predictions.csv"}}
# what a subcommand writes beside the class folders it reads (--data, audit's DATA): never inside them,
# where the next command on that data would take it for a class folder or images
BESIDE_DATA = {"run": ("out",), "train": ("out", "tensorboard"), "launch": ("out",), "audit": ("out", "html"),
               "evaluate": ("out",)}


def _check_out_folder(args: argparse.Namespace) -> None:
    """Refuse what would be written in the wrong place, before anything is written."""
    from trainers.errors import ConfigError

    out = getattr(args, "out", None)
    if args.command in FOLDER_OUT and out and "://" not in str(out) and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is an existing file, not a folder; give a folder path (new or existing)")
    for dest, name in FILE_OUT.get(args.command, {}).items():
        path = getattr(args, dest, None)
        if path and Path(path).is_dir():
            raise ConfigError(f"--{dest} {path} is a folder, but --{dest} names the {name} file to write; "
                              f"give a file path, e.g. {Path(path) / name}")
    data = getattr(args, "data", None)
    for dest in BESIDE_DATA.get(args.command, ()) if data else ():
        path = getattr(args, dest, None)
        if path and "://" not in str(path) and _inside(Path(path), Path(data)):
            raise ConfigError(_inside_data(args.command, f"--{dest} {path}", Path(data), Path(path)))


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.expanduser().resolve(), folder.expanduser().resolve()
    return path == folder or folder in path.parents


def _inside_data(command: str, option: str, data: Path, path: Path) -> str:
    data = data.expanduser().resolve()
    elsewhere = data.parent / "runs" / (path.name if path.expanduser().resolve() != data else "")
    return (f"{option} is inside the data folder {data}: what lungsweep {command} writes there would be taken "
            f"for a class folder or images by the next command that reads it; give a path outside it, "
            f"e.g. {elsewhere}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    from trainers.errors import LungsweepError

    try:
        _check_out_folder(args)
        return args.run(args)
    except LungsweepError as e:
        print(f"lungsweep {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lungsweep {args.command}: interrupted; finished checkpoints are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
