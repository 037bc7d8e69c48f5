"""A live one-line view of the sweep: trials running / finished / stopped, and the best so far."""
from __future__ import annotations

import math
import sys
import time
from typing import Any

from ray.tune import Callback

__all__ = ["SweepProgress"]


class SweepProgress(Callback):
    """Prints a status line when something changes (at most every `interval` seconds) and at the end.

    The best it shows is what results rank by: with epochs, a trial's best report; with folds
    (unit "fold"), a trial's latest report, the pooled out-of-fold metric over the folds done,
    since an early fold's higher figure is a smaller sample, not a better bag; and, as in
    `results.rank_trials`, the bag with more folds done leads.
    """

    def __init__(self, *, metric: str, mode: str, num_samples: int, max_t: int, unit: str = "epoch",
                 interval: float = 5.0, heartbeat: float = 30.0) -> None:
        self.metric, self.mode = metric, mode
        self.num_samples, self.max_t, self.unit = num_samples, max_t, unit
        self.interval, self.heartbeat = interval, heartbeat
        self._reports: dict[str, tuple[float, int]] = {}  # trial id -> (value, iteration) that ranks it
        self._last_print = 0.0
        self._start = time.monotonic()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and not math.isnan(value):
            kept = self._reports.get(trial.trial_id)
            if self.unit == "fold" or kept is None or self._better(value, kept[0]):
                self._reports[trial.trial_id] = (float(value), int(result.get("training_iteration", 0)))
        self._maybe_print(trials)

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def best(self) -> tuple[float, str, int] | None:
        """(value, trial id, epoch or fold) of the leading trial, or None before any report."""
        leader = None
        for trial_id, (value, iteration) in self._reports.items():
            if leader is None or self._leads((value, iteration), (leader[0], leader[2])):
                leader = (value, trial_id, iteration)
        return leader

    def _leads(self, a: tuple[float, int], b: tuple[float, int]) -> bool:
        if self.unit == "fold" and a[1] != b[1]:
            return a[1] > b[1]
        return self._better(a[0], b[0])

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # A k-fold trial reports once per fold (minutes apart on a CPU): keep a heartbeat meanwhile.
        if time.monotonic() - self._last_print >= self.heartbeat:
            self._maybe_print(trials, force=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._maybe_print(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._maybe_print(trials, force=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._maybe_print(trials, force=True)

    def status_line(self, trials: list) -> str:
        counts: dict[str, int] = {}
        stopped = 0
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
            last = t.last_result or {}
            if t.status == "TERMINATED" and not last.get("trainer_stop") and last.get("training_iteration", 0) < self.max_t:
                stopped += 1
        finished = counts.get("TERMINATED", 0)
        leader = self.best()
        best = (
            f"best {self.metric} {leader[0]:.4f} (trial {leader[1]}, {self.unit} {leader[2]})"
            if leader else f"best {self.metric} -"
        )
        elapsed = time.monotonic() - self._start
        return (
            f"[sweep {elapsed:6.0f}s] {len(trials)}/{self.num_samples} trials: {counts.get('RUNNING', 0)} running, "
            f"{counts.get('PENDING', 0)} pending, {finished} finished ({stopped} stopped early by ASHA or the budget), "
            f"{counts.get('ERROR', 0)} errored | {best}"
        )

    def _maybe_print(self, trials: list, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_print >= self.interval:
            self._last_print = now
            print(self.status_line(trials), file=sys.stderr, flush=True)
