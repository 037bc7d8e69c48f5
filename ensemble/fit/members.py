"""Ensemble candidates: the sweep's ranked trials, their checkpoints or bags, and their stored predictions.

A member is a trial's best checkpoint (single-split sweep) or its bag of fold models
(k-fold sweep, `cv_folds` > 1). Reads only what `lungsweep launch` / `results` wrote
(through search.record: the results table, the sweep record and the trial folders); never
imports Ray. What it read of the sweep comes back as search.record's `SweepFolder`, for the report.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import expit, log_expit, logit, logsumexp

from search.record import USABLE_STATUSES, SweepFolder, read_sweep_folder, trial_checkpoint
from trainers import LungsweepError, read_meta
from trainers.bag import fold_checkpoints, is_bag, read_bag, with_folds
from trainers.checkpoint import META

from ..errors import EnsembleError
from .settings import EnsembleSettings

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ALL", "Member", "StoredPredictions", "check_compatible", "check_member_count", "fill_unscored",
    "holdout_predictions", "load_member_meta", "mean_spread", "oof_predictions", "pick_members", "pick_trials",
    "read_candidates", "select_members",
    "split_predictions",
]

log = logging.getLogger(__name__)

# --members all: every trial that trained a model, in a k-fold sweep also the bags ASHA stopped before their
# last fold (each a model of its own config: on the outer splits averaging more configs was the lever that showed)
ALL = "all"
MIN_SHARED_IMAGES = 20  # fewer images scored by every member say too little about the mean's spread


@dataclass(frozen=True)
class Member:
    trial_id: str
    checkpoint: Path  # the trial's best checkpoint folder, or its bag folder (bag.json + fold_<k>/)
    meta: dict[str, Any]  # checkpoint.json, or bag.json
    rank: int
    metric: float

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    @property
    def is_bag(self) -> bool:
        return "oof" in self.meta

    @property
    def stopped_early(self) -> bool:
        """A bag that trained fewer folds than it was asked for (ASHA or the time budget stopped it): its
        out-of-fold predictions cover only its folds' part of the pool, whatever it ships."""
        return self.is_bag and len(self.folds(trained=True)) < self.meta["cv_folds"]

    def folds(self, *, trained: bool = False) -> list[int | None]:
        """A bag's fold ids: those it ships, or (`trained`) every fold it trained; [None] for a checkpoint."""
        if not self.is_bag:
            return [None]
        return self.meta.get("trained_folds", self.meta["folds_done"]) if trained else self.meta["folds_done"]

    def model_folders(self, *, trained: bool = False) -> list[Path]:
        """The checkpoint folder(s) of `folds(trained=...)`: one, or the bag's fold models."""
        if not self.is_bag:
            return [self.checkpoint]
        return fold_checkpoints(self.checkpoint, {**self.meta, "folds_done": self.folds(trained=trained)})

    def stored(self, split: str) -> dict[str, dict[str, Any]]:
        """Its stored predictions on one split ("holdout", "val" or a bag's "oof"), {sample id: {logit, label,
        group}}: {} for a split it never had (a sweep without a holdout); a named error where its record lacks
        them."""
        if self.is_bag:
            rows = self.meta.get("oof" if split == "val" else split)
        elif split == "oof":
            raise EnsembleError(f"trial {self.trial_id} is not a k-fold bag: it has no out-of-fold predictions")
        else:
            rows = (self.meta.get("predictions") or {}).get(split)
        if not isinstance(rows, dict):
            raise EnsembleError(
                f"{self.checkpoint}: its record holds no stored {split} predictions; it was written by another "
                "lungsweep version or edited: run the sweep again, or leave this trial out with --trials"
            )
        return rows

    def shipping(self, bag_models: str) -> Member:
        """This member as it ships (EnsembleSettings.bag_models): a bag narrowed to its first fold model for
        "first" (trainers.bag.with_folds: its holdout is that model's, its out-of-fold predictions stay whole)."""
        if bag_models == "all" or not self.is_bag:
            return self
        return replace(self, meta=with_folds(self.meta, [min(self.meta["folds_done"])]))


@dataclass(frozen=True)
class StoredPredictions:
    ids: list[str]
    y: np.ndarray  # 1 for the positive class
    groups: np.ndarray
    margins: np.ndarray  # (n_samples, n_members) logit margins
    # (n_samples, n_members): which margins a member's own models made; None: all of them. A bag stopped before
    # its last fold scored only its folds' part of the pool; the rest of its column is filled (fill_unscored).
    scored: np.ndarray | None = None

    def member_rows(self, j: int) -> np.ndarray:
        """The rows member j scored itself (every row, but for a stopped bag out of fold)."""
        return np.ones(len(self.y), dtype=bool) if self.scored is None else self.scored[:, j]


# what a checkpoint's meta must hold for the ensemble step, beyond what read_meta checks (read_bag checks a bag's)
CHECKPOINT_MEMBER_KEYS = ("split", "predictions")


def load_member_meta(folder: Path) -> dict[str, Any]:
    """A bag's record (read_bag), else a checkpoint's meta with the split and stored predictions ensembling reads."""
    if is_bag(folder):
        return read_bag(folder)
    meta = read_meta(folder)
    missing = [k for k in CHECKPOINT_MEMBER_KEYS if k not in meta]
    if missing:
        raise EnsembleError(
            f"{folder / META} lacks {', '.join(map(repr, missing))}: it was written by another lungsweep version or "
            "edited; run the sweep again (or leave this trial out with --trials)"
        )
    return meta


def check_member_count(top: Any) -> int | str:
    """--members: a whole number of at least 1, or "all" (checked before any sweep or fit starts)."""
    if top == ALL:
        return ALL
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise EnsembleError(f"--members must be a whole number of at least 1 or {ALL!r}, got {top!r}; "
                            "e.g. --members 5")
    return top


def pick_members(run_dir: str | Path, *, top: int | str | None = None,
                 trials: list[str] | None = None) -> list[Member]:
    """The top `top` usable trials by the sweep's metric (default: EnsembleSettings.members), every one
    (`top="all"`), or exactly the `trials` named.

    In a k-fold sweep a top N counts only trials that finished every fold: a bag stopped by
    ASHA after one fold has out-of-fold predictions for part of the pool only. "all" takes
    those bags too, with the folds they finished (oof_predictions marks what they scored).
    """
    return select_members(run_dir, top=top, trials=trials)[0]


def select_members(
    run_dir: str | Path, *, top: int | str | None = None, trials: list[str] | None = None,
) -> tuple[list[Member], SweepFolder]:
    """pick_members, and the sweep as it was read to pick them (for the report)."""
    picked, sweep = pick_trials(run_dir, top=top, trials=trials)
    members = [Member(p.trial_id, p.checkpoint, load_member_meta(p.checkpoint), p.rank, p.metric) for p in picked]
    check_compatible(members)
    return members, sweep


@dataclass(frozen=True)
class Pick:
    """A trial picked from the sweep's results table, before its record is read."""

    trial_id: str
    checkpoint: Path  # its best checkpoint folder, or its bag folder, found (a mirror fetches it)
    rank: int
    metric: float


def pick_trials(
    run_dir: str | Path, *, top: int | str | None = None, trials: list[str] | None = None,
) -> tuple[list[Pick], SweepFolder]:
    """The trials pick_members takes, with their checkpoint folders found, and the sweep as it was read."""
    if not trials:
        top = check_member_count(EnsembleSettings().members if top is None else top)  # before reading anything
    sweep = read_candidates(run_dir)
    run_dir, table = sweep.run_dir, sweep.table
    usable = ("completed",) if sweep.cross_validated and top != ALL else USABLE_STATUSES
    if trials:
        unknown = [t for t in trials if t not in set(table.trial_id)]
        if unknown:
            raise EnsembleError(
                f"trial {unknown[0]!r} is not in {run_dir}; trials there: {', '.join(table.trial_id)}"
            )
        chosen = table.set_index("trial_id").loc[trials].reset_index()
        bad = chosen[~chosen.status.isin(usable) | chosen.checkpoint.isna()]
        if len(bad):
            row = bad.iloc[0]
            why = " (a k-fold trial must finish every fold)" if usable == ("completed",) else ""
            raise EnsembleError(f"trial {row.trial_id} has no usable checkpoint (status {row.status}){why}")
    else:
        candidates = table[table.status.isin(usable) & table.checkpoint.notna()]
        chosen = candidates if top == ALL else candidates.head(top)
        if top != ALL and 0 < len(chosen) < top:
            what = "finished every fold" if usable == ("completed",) else "finished"
            log.warning("asked for %d members, but only %d trial(s) of %s %s: using those", top, len(chosen),
                        run_dir, what)
    if chosen.empty:
        what = "finished every fold of its bag" if usable == ("completed",) else "finished with a checkpoint"
        raise EnsembleError(f"{run_dir} has no trial that {what}, so there is nothing to ensemble; "
                            "let the sweep run longer (or resume it) and run `lungsweep results` again")
    picked = []
    for row in chosen.itertuples():
        folder = trial_checkpoint(run_dir, row.trial_id, row.checkpoint)
        if folder is None:
            raise EnsembleError(
                f"checkpoint {row.checkpoint} of trial {row.trial_id} is missing (neither in {run_dir} nor at that "
                f"path): restore it, or leave the trial out by naming the others with --trials"
            )
        picked.append(Pick(row.trial_id, folder, int(row.rank), float(row.best_metric)))
    return picked, sweep


def read_candidates(run_dir: str | Path) -> SweepFolder:
    """The sweep's ranked results (a named EnsembleError without them) and its record, where readable; a sweep
    at a URI is read from a local mirror (SweepFolder.run_dir), which fetches the checkpoints picked."""
    try:
        return read_sweep_folder(run_dir)
    except LungsweepError as e:  # search.record's message names the missing file and the command that writes it
        raise EnsembleError(str(e)) from e


def check_compatible(members: list[Member]) -> None:
    """Members must come from the same data and the same split, or their holdouts mean different things."""
    first = members[0]
    key = "partition_sha256" if first.is_bag else "sha256"
    for m in members[1:]:
        if m.meta["data_fingerprint"] != first.meta["data_fingerprint"]:
            raise EnsembleError(
                f"trial {m.trial_id} was trained on other data than trial {first.trial_id} "
                "(data fingerprints differ); ensemble trials of one sweep on one dataset"
            )
        if m.is_bag != first.is_bag or m.meta["split"].get(key) != first.meta["split"].get(key):
            raise EnsembleError(
                f"trial {m.trial_id} has another train/validation/holdout split than trial {first.trial_id} "
                f"(split_seed {m.meta['split']['seed']} vs {first.meta['split']['seed']}, cv_folds "
                f"{m.meta['split'].get('cv_folds', 1)} vs {first.meta['split'].get('cv_folds', 1)}); "
                "members must share one split so that none trained on another's holdout"
            )


def holdout_predictions(members: list[Member]) -> StoredPredictions:
    """The members' stored holdout margins (a bag's: the mean over its folds), aligned by sample id."""
    if not members[0].stored("holdout"):
        raise EnsembleError(
            f"trial {members[0].trial_id} has no holdout predictions: the sweep ran with holdout_fraction 0; "
            "ensembling and calibration need a holdout split"
        )
    return split_predictions(members, split="holdout")


def oof_predictions(members: list[Member]) -> StoredPredictions:
    """The bags' out-of-fold margins over the whole development pool, aligned by sample id.

    A bag stopped before its last fold scored its folds' part of the pool only; the rest of its
    column is filled (fill_unscored) so that the mean of the members there is the mean of those
    that scored the image, at the spread the mean of all of them shows where all scored.
    """
    not_bags = [m.trial_id for m in members if not m.is_bag]
    if not_bags:
        raise EnsembleError(f"trial {not_bags[0]} is not a k-fold bag: it has no out-of-fold predictions")
    widest = max(len(m.meta["oof"]) for m in members)
    complete = [m for m in members if len(m.meta["oof"]) == widest]
    if len(complete) == len(members):
        return split_predictions(members, split="oof")
    ids = sorted(complete[0].meta["oof"])
    first = complete[0].meta["oof"]
    margins = np.array([[m.meta["oof"].get(i, {}).get("logit", np.nan) for m in members] for i in ids],
                       dtype=np.float64)
    scored = ~np.isnan(margins)
    strays = [m.trial_id for m in members if not set(m.meta["oof"]) <= set(ids)]
    if strays:
        raise EnsembleError(f"trial {strays[0]} predicted another out-of-fold set than trial {complete[0].trial_id}")
    return StoredPredictions(ids=ids, y=np.array([first[i]["label"] for i in ids], dtype=np.int64),
                             groups=np.array([first[i].get("group", i) for i in ids]),
                             margins=fill_unscored(margins, scored), scored=scored)


def fill_unscored(margins: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Each margin a member did not make (a stopped bag's, off its folds), filled so that the members' mean
    probability on that image is what the mean of all of them would be.

    That is the mean of the members that made one, moved toward the pool's centre by mean_spread: the mean
    of more, more different models is narrower, and the calibrator must fit the mean that ships.
    """
    filled = margins.copy()
    partial = ~scored.all(axis=1)
    if not partial.any():
        return filled
    made = _pooled(margins, scored)
    centre = made.mean()
    target = expit(centre + mean_spread(margins, scored) * (made - centre))
    n = scored.shape[1]
    for i in np.flatnonzero(partial):
        known = scored[i]
        missing = (n * target[i] - expit(margins[i, known]).sum()) / (~known).sum()
        filled[i, ~known] = logit(np.clip(missing, 1e-6, 1 - 1e-6))
    return filled


def mean_spread(margins: np.ndarray, scored: np.ndarray) -> float:
    """How wide the mean of every member is against the mean of the members that scored every image, measured
    on the images every member scored (sd ratio; 1 when there are fewer than MIN_SHARED_IMAGES of them)."""
    shared, always = scored.all(axis=1), scored.all(axis=0)
    if shared.sum() < MIN_SHARED_IMAGES or always.all() or not always.any():
        return 1.0
    every = _pooled(margins[shared], scored[shared])
    steady = _pooled(margins[shared][:, always], scored[shared][:, always])
    return float(every.std() / steady.std()) if steady.std() > 0 else 1.0


def _pooled(margins: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Per image, the logit of the mean probability of the members that scored it: combine.pooled_margin with
    equal weights over each row's scored members (the weights' sum cancels in the difference)."""
    made = np.where(scored, margins, 0.0)  # unscored entries get weight 0; 0 keeps them finite
    return logsumexp(log_expit(made), b=scored, axis=1) - logsumexp(log_expit(-made), b=scored, axis=1)


def split_predictions(members: list[Member], *, split: str) -> StoredPredictions:
    """The members' stored margins on one split ("holdout", "val" or a bag's "oof"), aligned by sample id."""
    first = members[0].stored(split)
    ids = sorted(first)
    columns = []
    for m in members:
        preds = m.stored(split)
        if set(preds) != set(ids):
            raise EnsembleError(f"trial {m.trial_id} predicted another {split} set than trial {members[0].trial_id}")
        columns.append([preds[i]["logit"] for i in ids])
    return StoredPredictions(
        ids=ids,
        y=np.array([first[i]["label"] for i in ids], dtype=np.int64),
        groups=np.array([first[i].get("group", i) for i in ids]),
        margins=np.array(columns, dtype=np.float64).T.reshape(len(ids), len(members)),
    )
