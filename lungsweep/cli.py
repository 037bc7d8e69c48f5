"""`lungsweep SUBCOMMAND ...`: one console script, one small function per subcommand."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["main"]

log = logging.getLogger("lungsweep")


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
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="start from ImageNet weights (installed offline for efficientnet_lite0/1/2)")
    p.add_argument("--pretrained-file", help="weights file (safetensors or a .pth state dict)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--skip-bad", action="store_true", default=None, help="leave undecodable images out")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from trainers import merge_config, train

    overrides = {
        "data": args.data, "manifest": args.manifest, "model": args.model, "image_size": args.image_size,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "positive": args.positive, "pretrained": args.pretrained, "pretrained_file": args.pretrained_file,
        "device": args.device, "skip_bad": args.skip_bad,
    }
    cfg = merge_config(args.config, overrides)
    result = train(cfg, args.out, resume=args.resume)
    best = result.best_metrics
    print(
        f"best epoch {result.best_epoch}/{result.epochs_run}: val_auc {best.get('val_auc', float('nan')):.4f}  "
        f"val_accuracy {best.get('val_accuracy', float('nan')):.4f}  -> {Path(args.out) / 'best'}"
    )
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_train]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lungsweep", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    from trainers.errors import LungsweepError

    try:
        return args.run(args)
    except LungsweepError as e:
        print(f"lungsweep {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lungsweep {args.command}: interrupted; finished checkpoints are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
