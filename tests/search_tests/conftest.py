"""Ray for the sweep tests: real local Ray processes, stopped by process id at the end."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest
import ray


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill a process and every descendant, by process id."""
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = parent.children(recursive=True) + [parent]
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def kill_children() -> None:
    """Whatever this test process started and left behind (Ray's daemons and workers)."""
    me = psutil.Process()
    for child in me.children(recursive=True):
        kill_tree(child.pid)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.getbasetemp() / "image-cache"  # the same cache the trainers tests use
    os.environ["LUNGSWEEP_CACHE"] = str(cache)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"LUNGSWEEP_CACHE": str(cache)}},
    )
    yield
    ray.shutdown()
    kill_children()


def sweep_yaml(path: Path, data: Path, **overrides: object) -> Path:
    import yaml

    raw = {
        "metric": "val_loss",  # continuous, so ASHA's cut-offs are never ties
        "mode": "min",
        "num_samples": 6,
        "max_concurrent": 2,
        "startup_trials": 2,
        "keep_checkpoints": 1,
        "asha": {"max_epochs": 4, "grace_period": 1, "reduction_factor": 2},
        "train": {
            "data": str(data), "model": "test_resnet", "image_size": 32, "val_fraction": 0.2,
            "holdout_fraction": 0.2, "patience": None, "num_threads": 1, "warmup_epochs": 0.5,
        },
        "space": {
            "lr": {"loguniform": [1e-4, 0.3]},
            "batch_size": {"choice": [8, 16]},
            "optimizer": {"choice": ["adamw", "sgd"]},
            "momentum": {"uniform": [0.8, 0.95], "when": {"optimizer": "sgd"}},
        },
    }
    raw.update(overrides)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
