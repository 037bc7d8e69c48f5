"""`lungsweep train` and `lungsweep audit`: one model, and whether its data is fit to train on."""
from __future__ import annotations

import argparse
from pathlib import Path

import trainers
from trainers import audit

from ._common import window_arg

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_train(sub)
    _add_audit(sub)


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
    p.add_argument("--window", type=window_arg,
                   help="DICOM/NIfTI window: auto, lung, mediastinum, none or WIDTH,LEVEL (HU), e.g. 1500,-600")
    p.add_argument("--slices", help="DICOM series / NIfTI volumes: middle, all or 'every N'")
    p.add_argument("--tensorboard", metavar="DIR", help="also write each epoch's metrics as TensorBoard events to DIR "
                                                        "(open with: tensorboard --logdir DIR)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    overrides = {
        "data": args.data, "manifest": args.manifest, "model": args.model, "image_size": args.image_size,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "positive": args.positive, "group_regex": args.group_regex, "pretrained_file": args.pretrained_file,
        "pretrained": True if args.pretrained_file and args.pretrained is None else args.pretrained,
        "device": args.device, "skip_bad": args.skip_bad, "window": args.window, "slices": args.slices,
        "cv_folds": args.cv_folds, "tensorboard": args.tensorboard,
    }
    cfg = trainers.merge_config(args.config, overrides)
    # refuse to train over a run or a bag before the data is read or anything is written
    if cfg.cv_folds > 1:
        trainers.existing_bag(args.out, resume=args.resume)
    else:
        trainers.resume_point(args.out, resume=args.resume)
    data = trainers.prepare_data(cfg)
    audit.audit_into(args.out, cfg, data.found)  # once, at the door: the run says how honest its groups are
    if cfg.cv_folds > 1:
        bag = trainers.train_bag(cfg, args.out, resume=args.resume, data=data)
        print(f"bag of {bag.folds_done} fold models: out-of-fold auc {bag.metrics.get('oof_auc', float('nan')):.4f}  "
              f"accuracy {bag.metrics.get('oof_accuracy', float('nan')):.4f} -> {args.out}")
        return 0
    result = trainers.train(cfg, args.out, resume=args.resume, data=data)
    best = result.best_metrics
    print(
        f"best epoch {result.best_epoch}/{result.epochs_run}: val_auc {best.get('val_auc', float('nan')):.4f}  "
        f"val_accuracy {best.get('val_accuracy', float('nan')):.4f}  -> {Path(args.out) / trainers.BEST}"
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
    cfg = trainers.merge_config(None, {"data": args.data, "manifest": args.manifest, "group_regex": args.group_regex,
                              "positive": args.positive})
    report = audit.audit_config(cfg)
    audit.write_audit(report, json_path=args.out, html_path=args.html)
    print(audit.format_audit(report))
    for path in (args.out, args.html):
        if path:
            print(f"wrote {path}")
    return 1 if report["errors"] else 0
