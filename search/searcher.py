"""Ray's OptunaSearch, telling Optuna which trials were stopped early.

Ray's OptunaSearch tells Optuna every trial that ends with a metric as COMPLETE, so a
trial that ASHA (or the time budget) stopped after one fold of five enters TPE's model
as if its one-fold AUC were a finished five-fold one. Here such a trial is told as
PRUNED: Optuna keeps the values reported at every fold or epoch (the last one too, which
Tune does not pass on when ASHA stops the trial on it), and TPE ranks a pruned trial by
its last value at the step it reached, below the finished ones.
"""
from __future__ import annotations

import warnings
from typing import Any

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

__all__ = ["OptunaSearchWithPruning", "ran_to_the_end"]


def ran_to_the_end(result: dict[str, Any], cv_folds: int) -> bool:
    """A k-fold trial that trained every fold; a single-split trial that its trainer stopped itself
    (its last epoch, or patience), not one that the scheduler or the budget cut short."""
    if cv_folds > 1:
        return int(result.get("folds_done", 0)) >= cv_folds
    return bool(result.get("trainer_stop"))


class OptunaSearchWithPruning(OptunaSearch):
    """OptunaSearch that tells a trial stopped before its end as PRUNED, not COMPLETE."""

    def __init__(self, *args: Any, cv_folds: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cv_folds = cv_folds  # a plain int: the searcher's state is saved with every snapshot

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error or not result or trial_id in self._completed_trials or ran_to_the_end(result, self._cv_folds):
            super().on_trial_complete(trial_id, result, error)
            return
        ot_trial = self._ot_trials[trial_id]
        value, step = result.get(self.metric), result.get("training_iteration")
        if value is not None and step is not None:
            # Tune does not pass the searcher the result that made ASHA stop the trial: report it here
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a step already reported keeps its value
                ot_trial.report(float(value), int(step))
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)  # valued at its last reported step
        self._completed_trials.add(trial_id)
