"""What the command modules share: registry names read late, argument types, the unreadable-images tail."""
from __future__ import annotations

import argparse
import functools
import importlib
import sys
from typing import Sequence

import ensemble

__all__ = ["CALIBRATIONS", "EXPLAIN_TARGETS", "METHODS", "add_bag_models", "add_max_networks", "add_threshold_rule", "members_arg",
           "unreadable", "window_arg"]


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



def window_arg(value: str) -> str | list[float]:
    """'lung' stays a name; '1500,-600' becomes [width, level] (TrainConfig validates both)."""
    if "," not in value:
        return value
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--window {value!r} is not WIDTH,LEVEL in numbers, e.g. 1500,-600")


def members_arg(value: str) -> int | str:
    """--members: a count, or 'all'; ensemble.fit.members.check_member_count names anything else."""
    try:
        return int(value)
    except ValueError:
        return value


def unreadable(bad: list[tuple[str, str]], rows: str) -> int:
    """List the images that could not be read (the first 20) on stderr: exit status 1, else 0."""
    if not bad:
        return 0
    print(f"{len(bad)} image(s) could not be read ({rows}):", file=sys.stderr)
    for path, reason in bad[:20]:
        print(f"  {path}: {reason}", file=sys.stderr)
    return 1


def add_bag_models(p: argparse.ArgumentParser) -> None:
    """--bag-models, as `lungsweep ensemble` and `lungsweep run` take it (ensemble.fit.members.Member.shipping)."""
    kinds = ensemble.BAG_MODELS
    p.add_argument("--bag-models", choices=list(kinds), metavar="WHICH", default=ensemble.EnsembleSettings().bag_models,
                   help="what each k-fold bag ships: " + "; ".join(f"{name}: {what}" for name, what in kinds.items())
                        + " (default %(default)s)")


def add_threshold_rule(p: argparse.ArgumentParser) -> None:
    """--threshold-rule, as `lungsweep ensemble` and `lungsweep run` take it (ensemble.fit.threshold)."""
    rules = ensemble.THRESHOLD_RULES
    p.add_argument("--threshold-rule", choices=list(rules), metavar="RULE",
                   default=ensemble.EnsembleSettings().threshold_rule, help="how the decision threshold is chosen on the calibrated probability: "
                        + "; ".join(f"{name}: {what}" for name, what in rules.items()) + " (default %(default)s; "
                        "--target-sensitivity, where given, decides instead)")


def add_max_networks(p: argparse.ArgumentParser, *, default: str = "no budget") -> None:
    """--max-networks, as `lungsweep ensemble` and `lungsweep run` take it (ensemble.fit.budget)."""
    p.add_argument("--max-networks", type=int, default=None,
                   help="the networks the exported model may hold (every member's fold models): members are kept "
                        f"in rank order while they fit; the report plots holdout AUC against networks (default: "
                        f"{default})")
