"""A `lungsweep train` run folder: its names, what is written there, and the one resume rule.

RUN_DIR/
    config.yaml     the merged TrainConfig the run was started with
    best/           checkpoint folder of the best epoch (trainers.checkpoint)
    last/           checkpoint folder of the last epoch, with the training state to resume
    history.csv     one row per epoch: losses, validation metrics, learning rate, timings
    metrics.json    the best epoch's metrics, epochs run and why training stopped
    skipped.yaml    images left out (skip_bad, unreadable DICOM/NIfTI), each with its reason
    audit.json      the data audit, written by the command that started the run (trainers.audit)

`check_resumable` is the resume rule of a run and of a bag (trainers.bag) alike.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .atomic import atomic_write_text, recover_dir
from .checkpoint import META, STATE_JSON
from .config import TrainConfig
from .errors import CheckpointError

__all__ = [
    "BEST", "CONFIG_YAML", "HISTORY_CSV", "LAST", "METRICS_JSON", "RESUMABLE_CHANGES", "SKIPPED_YAML",
    "check_resumable", "model_folder", "read_history", "resume_point", "write_config", "write_history", "write_metrics",
    "write_skipped",
]

CONFIG_YAML = "config.yaml"
BEST = "best"
LAST = "last"
HISTORY_CSV = "history.csv"
METRICS_JSON = "metrics.json"
SKIPPED_YAML = "skipped.yaml"

# Settings that say how a run is carried out, not what it learns: the only ones that may differ
# when a run or a bag is resumed. `epochs` is not one: the cosine schedule and every fold of a
# bag are shaped by it, so a resumed run with another count would not be the run it says it is.
# `patience` is: it only decides when a single run stops (a fold never stops early).
RESUMABLE_CHANGES = frozenset({"patience", "progress", "device", "num_threads", "eval_batch_size", "cache_dir",
                               "tensorboard"})


def check_resumable(record: Mapping[str, Any], cfg: TrainConfig, fingerprint: str, where: str | Path) -> None:
    """Refuse to resume `where` (a checkpoint or a bag, whose record is `record`) with other data or settings.

    Keys the record lacks (written before a setting existed) are not compared.
    """
    if record["data_fingerprint"] != fingerprint:
        raise CheckpointError(f"cannot resume {where}: it was trained on other data (fingerprint differs)")
    before, now = record["config"], cfg.to_dict()
    changed = sorted(k for k in before if k not in RESUMABLE_CHANGES and before[k] != now.get(k))
    if changed:
        k = changed[0]
        raise CheckpointError(
            f"cannot resume {where}: config key {k!r} was {before[k]!r}, now {now.get(k)!r}; "
            "resume with the same config or start a new run folder"
        )


def model_folder(path: str | Path) -> Path:
    """The folder a run's model is in: best/ of a `lungsweep train` run, else `path` itself (a checkpoint
    or bag folder, or a folder that is none of these, for its loader to name)."""
    path = Path(path)
    return path / BEST if not (path / META).is_file() and (path / BEST / META).is_file() else path


def resume_point(out_dir: str | Path, *, resume: bool, resume_from: str | Path | None = None) -> Path | None:
    """The checkpoint a run continues from (`resume_from`, or RUN_DIR/last when resuming), or None for a new run.

    A folder that already holds a run is never trained over without --resume.
    """
    out_dir = Path(out_dir)
    last, best = recover_dir(out_dir / LAST), recover_dir(out_dir / BEST)
    if resume_from is None and resume and (last / STATE_JSON).exists():
        resume_from = last
    if resume_from is None and (last.exists() or best.exists()):
        raise CheckpointError(f"{out_dir} already holds a run; pass --resume to continue it, or choose another --out")
    return None if resume_from is None else Path(resume_from)


def write_config(out_dir: Path, cfg: TrainConfig) -> None:
    atomic_write_text(out_dir / CONFIG_YAML, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def write_skipped(out_dir: Path, skipped: Sequence[tuple[str, str]]) -> None:
    atomic_write_text(out_dir / SKIPPED_YAML,
                      yaml.safe_dump([{"id": i, "reason": r} for i, r in skipped], sort_keys=False))


def write_history(out_dir: Path, history: list[dict[str, float]]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))  # a run resumed on another device adds or drops gpu_*
    lines = [",".join(keys)] + [",".join(f"{row.get(k, math.nan):.6g}" for k in keys) for row in history]
    atomic_write_text(out_dir / HISTORY_CSV, "\n".join(lines) + "\n")


def read_history(out_dir: str | Path) -> list[dict[str, float]]:
    """history.csv as one dict per epoch (a missing value is nan)."""
    lines = (Path(out_dir) / HISTORY_CSV).read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")))) for line in lines[1:] if line]


def write_metrics(out_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(out_dir / METRICS_JSON, json.dumps(summary, indent=1, default=float))
