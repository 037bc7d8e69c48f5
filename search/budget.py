"""Whether the sweep's time budget ran out: a trial the budget never drew is expected, not missing.

Tune's time budget (its TimeoutStopper) counts the driver's time from step to step, across
resumes, and stops drawing trials when it is spent; it records nothing of that. `BudgetClock`
counts the same way, its figure saved with every snapshot (a Tune callback's state), so the
sweep can tell a budget that ran out from trials that were lost.
"""
from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

__all__ = ["BudgetClock", "budget_spent", "forget"]

_last_spent: list[float] = []  # the figure of the sweep that last ended in this driver (a restored clock is a copy)


class BudgetClock(Callback):
    """The driver's seconds from each step to the next, summed across resumes."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._last: float | None = None

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if self._last is not None:
            self.spent += now - self._last
        self._last = now

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        _last_spent[:] = [self.spent]

    def get_state(self) -> dict[str, Any]:
        return {"spent": self.spent}

    def set_state(self, state: dict[str, Any]) -> None:
        self.spent, self._last = float(state.get("spent", 0.0)), None  # the time between drivers is not counted


def budget_spent(time_budget_s: float | None, *, slack_s: float = 5.0) -> bool:
    """Whether the sweep that just ended in this driver used its time budget (within one step's slack)."""
    if time_budget_s is None or not _last_spent:
        return False
    return _last_spent[0] >= time_budget_s - slack_s


def forget() -> None:
    """Before a launch: an earlier sweep in this process must not answer for this one."""
    _last_spent.clear()
