"""One Tune trial: a trainers.train run whose epochs are reported to Tune with their checkpoints."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from trainers import TrainConfig, train, train_bag

from . import storage
from .record import SWEEP_FILE

__all__ = ["train_trial", "InjectedFault"]

log = logging.getLogger(__name__)


class InjectedFault(RuntimeError):
    """Raised on purpose (fail_first_attempt_at_epoch) to exercise Tune's retries."""


def train_trial(sampled: dict[str, Any], *, base: dict[str, Any], run_dir: str | None = None,
                fail_at_epoch: int | None = None) -> None:
    """Tune's function trainable. `sampled` is the searcher's config; `base` the fixed part.

    Resumes from Tune's checkpoint after a crash or a restored sweep. Trainer state
    lives in a scratch folder on the worker; what persists is what Tune stores.
    Every trial checks that its node sees the run folder (one stat): launch checked only the
    nodes alive then, so the first trial on an autoscaled worker is where a missing mount
    shows. That trial also decodes the node's image cache, under its file lock (trainers.data.images).
    """
    cfg = TrainConfig.from_dict({**base, **sampled}, source="trial config")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # into the trial's log file
    if run_dir is not None and not storage.exists(storage.join(run_dir, SWEEP_FILE)):
        raise storage.not_shared(run_dir, f"node {ray.util.get_node_ip_address()}")
    node_id = ray.get_runtime_context().get_node_id()
    restored = tune.get_checkpoint()
    scratch = Path(tempfile.mkdtemp(prefix="lungsweep-trial-"))
    try:
        if cfg.cv_folds > 1:
            _train_bag_trial(cfg, scratch, restored, node_id)
            return

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


def _train_bag_trial(cfg: TrainConfig, scratch: Path, restored: Any, node_id: str) -> None:
    """k-fold: one report per fold, with the pooled out-of-fold metrics and the bag so far as checkpoint.

    The checkpoint holds bag.json and the finished folds' models (not their training
    runs), so a restored trial continues with the next fold.
    """
    bag_dir = scratch / "bag"
    if restored is not None:
        with restored.as_directory() as folder:
            shutil.copytree(folder, bag_dir)

    def report(fold_report) -> None:
        metrics = {**fold_report.metrics, "fold": fold_report.fold, "node_id": node_id, "trainer_stop": ""}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(fold_report.bag_dir)))

    train_bag(cfg, bag_dir, work_dir=scratch / "runs", on_fold=report, resume=restored is not None)
