"""One Tune trial: a trainers.train run whose epochs are reported to Tune with their checkpoints."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from trainers import TrainConfig, train

__all__ = ["train_trial", "InjectedFault"]

log = logging.getLogger(__name__)


class InjectedFault(RuntimeError):
    """Raised on purpose (fail_first_attempt_at_epoch) to exercise Tune's retries."""


def train_trial(sampled: dict[str, Any], *, base: dict[str, Any], fail_at_epoch: int | None = None) -> None:
    """Tune's function trainable. `sampled` is the searcher's config; `base` the fixed part.

    Resumes from Tune's checkpoint after a crash or a restored sweep. Trainer state
    lives in a scratch folder on the worker; what persists is what Tune stores.
    """
    cfg = TrainConfig.from_dict({**base, **sampled}, source="trial config")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # into the trial's log file
    node_id = ray.get_runtime_context().get_node_id()
    restored = tune.get_checkpoint()
    scratch = Path(tempfile.mkdtemp(prefix="lungsweep-trial-"))
    try:
        def report(epoch_report) -> None:
            if fail_at_epoch is not None and restored is None and epoch_report.epoch == fail_at_epoch:
                raise InjectedFault(f"injected fault at epoch {epoch_report.epoch} (first attempt)")
            metrics = {**epoch_report.metrics, "trainer_stop": epoch_report.stopping or "", "node_id": node_id}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(epoch_report.checkpoint_dir)))

        if restored is None:
            train(cfg, scratch / "run", on_epoch=report)
        else:
            with restored.as_directory() as folder:
                train(cfg, scratch / "run", on_epoch=report, resume_from=folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
