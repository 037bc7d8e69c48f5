"""The sweep's status line leads with what the results table ranks by."""
from __future__ import annotations

from types import SimpleNamespace

from search.progress import SweepProgress


def report(progress: SweepProgress, trial_id: str, value: float, iteration: int) -> None:
    # Tune calls on_trial_result with its Trial objects; the line reads only these fields of them
    trial = SimpleNamespace(trial_id=trial_id, status="RUNNING", last_result={})
    progress.on_trial_result(iteration, [trial], trial, {"oof_auc": value, "val_loss": value,
                                                         "training_iteration": iteration})


def test_a_k_fold_sweep_leads_with_each_bags_latest_pooled_metric():
    progress = SweepProgress(metric="oof_auc", mode="max", num_samples=2, max_t=5, unit="fold")
    report(progress, "a", 0.90, 1)  # one fold: a small sample that happened to score high
    report(progress, "b", 0.84, 3)
    report(progress, "a", 0.80, 3)  # a's pooled figure over three folds
    assert progress.best() == (0.84, "b", 3)
    assert "best oof_auc 0.8400 (trial b, fold 3)" in progress.status_line([])
    report(progress, "c", 0.95, 2)  # a higher figure over fewer folds does not lead, as in the results table
    assert progress.best() == (0.84, "b", 3)
    report(progress, "c", 0.86, 3)
    assert progress.best() == (0.86, "c", 3)


def test_a_single_split_sweep_leads_with_each_trials_best_epoch():
    progress = SweepProgress(metric="val_loss", mode="min", num_samples=2, max_t=5)
    report(progress, "a", 0.40, 2)
    report(progress, "a", 0.55, 3)  # overfitting later: the trial's best epoch still counts
    report(progress, "b", 0.45, 3)
    assert progress.best() == (0.40, "a", 2)
    assert "best val_loss 0.4000 (trial a, epoch 2)" in progress.status_line([])
