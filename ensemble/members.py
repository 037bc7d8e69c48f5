"""Ensemble candidates: the sweep's ranked trials, their best checkpoints and holdout predictions.

Reads only what `lungsweep launch` / `results` wrote (results.parquet and the
checkpoint folders); never imports Ray.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.record import USABLE_STATUSES, read_results, trial_dir
from trainers import LungsweepError, read_meta

from .errors import EnsembleError

__all__ = ["Member", "HoldoutPredictions", "pick_members", "holdout_predictions", "split_predictions", "check_compatible"]


@dataclass(frozen=True)
class Member:
    trial_id: str
    checkpoint: Path  # the trial's best checkpoint folder (model.safetensors + checkpoint.json)
    meta: dict[str, Any]
    rank: int
    metric: float

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]


@dataclass(frozen=True)
class HoldoutPredictions:
    ids: list[str]
    y: np.ndarray  # 1 for the positive class
    groups: np.ndarray
    margins: np.ndarray  # (n_samples, n_members) logit margins


def pick_members(run_dir: str | Path, *, top: int | None = None, trials: list[str] | None = None) -> list[Member]:
    """The top `top` usable trials by the sweep's metric, or exactly the `trials` named."""
    run_dir = Path(run_dir)
    try:
        table = read_results(run_dir)
    except LungsweepError as e:
        raise EnsembleError(str(e)) from e
    if trials:
        unknown = [t for t in trials if t not in set(table.trial_id)]
        if unknown:
            raise EnsembleError(
                f"trial {unknown[0]!r} is not in {run_dir}; trials there: {', '.join(table.trial_id)}"
            )
        chosen = table.set_index("trial_id").loc[trials].reset_index()
        bad = chosen[~chosen.status.isin(USABLE_STATUSES) | chosen.checkpoint.isna()]
        if len(bad):
            row = bad.iloc[0]
            raise EnsembleError(f"trial {row.trial_id} has no usable checkpoint (status {row.status})")
    else:
        chosen = table[table.status.isin(USABLE_STATUSES) & table.checkpoint.notna()].head(top or 5)
    if chosen.empty:
        raise EnsembleError(f"{run_dir} has no finished trial with a checkpoint to ensemble")
    members = []
    for row in chosen.itertuples():
        folder = _local_checkpoint(run_dir, row.trial_id, row.checkpoint)
        members.append(Member(row.trial_id, folder, read_meta(folder), int(row.rank), float(row.best_metric)))
    check_compatible(members)
    return members


def _local_checkpoint(run_dir: Path, trial_id: str, recorded: str) -> Path:
    """The checkpoint folder inside this sweep folder, also when the sweep was moved or copied."""
    inside = trial_dir(run_dir, trial_id) / Path(recorded).name
    for path in (inside, Path(recorded)):
        if path.is_dir():
            return path
    raise EnsembleError(f"checkpoint {recorded} of trial {trial_id} is missing")


def check_compatible(members: list[Member]) -> None:
    """Members must come from the same data and the same split, or their holdouts mean different things."""
    first = members[0]
    for m in members[1:]:
        if m.meta["data_fingerprint"] != first.meta["data_fingerprint"]:
            raise EnsembleError(
                f"trial {m.trial_id} was trained on other data than trial {first.trial_id} "
                "(data fingerprints differ); ensemble trials of one sweep on one dataset"
            )
        if m.meta["split"]["sha256"] != first.meta["split"]["sha256"]:
            raise EnsembleError(
                f"trial {m.trial_id} has another train/validation/holdout split than trial {first.trial_id} "
                f"(split_seed {m.meta['split']['seed']} vs {first.meta['split']['seed']}); "
                "members must share one split so that none trained on another's holdout"
            )


def holdout_predictions(members: list[Member]) -> HoldoutPredictions:
    """The members' stored holdout margins, aligned by sample id."""
    if not members[0].meta["predictions"]["holdout"]:
        raise EnsembleError(
            f"trial {members[0].trial_id} has no holdout predictions: the sweep ran with holdout_fraction 0; "
            "ensembling and calibration need a holdout split"
        )
    return split_predictions(members, split="holdout")


def split_predictions(members: list[Member], *, split: str) -> HoldoutPredictions:
    """The members' stored margins on one split ("holdout" or "val"), aligned by sample id."""
    first = members[0].meta["predictions"][split]
    ids = sorted(first)
    columns = []
    for m in members:
        preds = m.meta["predictions"][split]
        if set(preds) != set(ids):
            raise EnsembleError(f"trial {m.trial_id} predicted another {split} set than trial {members[0].trial_id}")
        columns.append([preds[i]["logit"] for i in ids])
    return HoldoutPredictions(
        ids=ids,
        y=np.array([first[i]["label"] for i in ids], dtype=np.int64),
        groups=np.array([first[i].get("group", i) for i in ids]),
        margins=np.array(columns, dtype=np.float64).T,
    )
