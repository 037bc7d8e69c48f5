"""`lungsweep SUBCOMMAND ...`: one console script, one module per stage.

    run          the whole job (run)
    training     train, audit
    sweeping     launch, results
    ensembling   ensemble, evaluate
    shipping     export, predict
    explaining   explain

Each module adds its subcommands' parsers and runs them. They import trainers, search and
ensemble through their faces, whose names load on first use, so `lungsweep --help` and each
subcommand import only what that subcommand runs.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

import ensemble
from trainers import audit
from trainers.errors import ConfigError, LungsweepError

from .. import job
from . import ensembling, explaining, run, shipping, sweeping, training

__all__ = ["main"]

log = logging.getLogger("lungsweep")

# in the order `lungsweep --help` lists them
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    run.add_parsers, training.add_parsers, sweeping.add_parsers, ensembling.add_parsers, shipping.add_parsers,
    explaining.add_parsers,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lungsweep", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


# subcommands whose --out is a folder they create (the others write one file there)
FOLDER_OUT = ("run", "train", "launch", "ensemble", "export", "explain")


def _file_out(command: str) -> dict[str, str]:
    """The files the others write, by option, named by their owners: an existing folder there is named, not a
    traceback. (Read when the command runs: trainers.audit's names load with its report code.)"""
    if command == "audit":
        return {"out": audit.AUDIT_FILE, "html": audit.AUDIT_HTML}
    return {"evaluate": {"out": ensemble.METRICS_JSON}, "predict": {"out": job.PREDICTIONS_CSV}}.get(command, {})

# what a subcommand writes beside the class folders it reads (--data, audit's DATA): never inside them,
# where the next command on that data would take it for a class folder or images
BESIDE_DATA = {"run": ("out",), "train": ("out", "tensorboard"), "launch": ("out",), "audit": ("out", "html"),
               "evaluate": ("out",)}


def _check_out_folder(args: argparse.Namespace) -> None:
    """Refuse what would be written in the wrong place, before anything is written."""
    out = getattr(args, "out", None)
    if args.command in FOLDER_OUT and out and "://" not in str(out) and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is an existing file, not a folder; give a folder path (new or existing)")
    for dest, name in _file_out(args.command).items():
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
