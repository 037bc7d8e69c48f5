"""A trial worker's death is one trial's failure: the sweep goes on and the trial resumes from its last fold.

Two real deaths in one sweep, each while its trial trains its second fold: a SIGKILL of the
trial's worker process, and Ray's memory monitor killing it (this test holds memory until the
monitor, set to a threshold just above what the machine uses, picks the trial's worker). Ray
reports the second as OutOfMemoryError, which Tune alone would raise for the whole sweep
(search/memory_kills.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from tests_support import kill_tree, make_dataset, sweep_yaml, trial_workers

from search import load_results
from search.record import read_sweep_count

pytestmark = pytest.mark.slow  # starts a Ray Tune sweep and kills its workers: not in the fast tier

TRIALS = [{"lr": 0.01, "batch_size": 16, "optimizer": "adamw"},
          {"lr": 0.003, "batch_size": 8, "optimizer": "adamw"}]


def folds_reported(trial: Path) -> list[int]:
    """The folds a trial has reported, in order, over every attempt (result.json, one line a report)."""
    try:
        lines = (trial / "result.json").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line)["folds_done"] for line in lines if line.strip().endswith("}")]


def wait_for(what: str, until, deadline: float, driver: subprocess.Popen, log: Path) -> None:
    while not until():
        assert driver.poll() is None, f"the sweep ended before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"never saw {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def trial_with(out: Path, lr: float) -> Path | None:
    """The folder of the trial whose config has this learning rate (Tune writes params.json as it starts)."""
    for folder in out.glob("trial_*"):
        try:
            if json.loads((folder / "params.json").read_text()).get("lr") == lr:
                return folder
        except (OSError, ValueError):
            pass
    return None


def kill_during_second_fold(out: Path, lr: float, driver: subprocess.Popen, log: Path, kill) -> Path:
    """Wait until the trial with this lr (one runs at a time) has reported its first fold, then kill its worker."""
    deadline = time.monotonic() + 240
    trial = {}

    def first_fold_done() -> bool:
        trial["dir"] = trial_with(out, lr)
        return trial["dir"] is not None and folds_reported(trial["dir"]) == [1]

    wait_for(f"the first fold of the trial with lr {lr}", first_fold_done, deadline, driver, log)
    workers = trial_workers(driver.pid)
    assert len(workers) == 1, f"one trial at a time, one worker each (reuse_actors false): {workers}"
    victim = workers[0]
    victim.suspend()  # frozen inside fold 2, however fast the fold and however long the kill takes to come
    assert folds_reported(trial["dir"]) == [1], "the worker was stopped after its second fold"
    kill(victim)
    return trial["dir"]


def test_a_killed_or_memory_killed_trial_worker_costs_one_fold_and_the_sweep_goes_on(tmp_path, isolated_cache):
    # one trial at a time, every fold run; each worker is frozen inside its second fold, then killed
    data = make_dataset(tmp_path / "data", groups_per_class=100, per_group=2, seed=3)
    config = sweep_yaml(tmp_path / "s.yaml", data, metric="val_auc", mode="max", cv_folds=3, num_samples=2,
                        max_concurrent=1, max_failures=3, first_trials=TRIALS,
                        asha={"max_epochs": 2, "grace_period": 3, "reduction_factor": 2})
    out = tmp_path / "sweep"
    # Ray's monitor kills a worker once the node's use (its own measure, which counts more than psutil's
    # "used") passes the threshold: 60% of the node, well above what the sweep uses, reached by the ballast
    env = {**os.environ, "LUNGSWEEP_CACHE": str(isolated_cache), "RAY_memory_monitor_refresh_ms": "100",
           "RAY_memory_usage_threshold": "0.6"}
    log = tmp_path / "driver.log"
    with log.open("w") as sink:
        driver = subprocess.Popen([sys.executable, "-m", "lungsweep", "launch", "--config", str(config), "--out",
                                   str(out)], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        def sigkill(worker: psutil.Process) -> None:
            worker.kill()
            worker.wait(10)
            assert "memory monitor" not in log.read_text(), "the monitor, not this SIGKILL, killed the worker"

        def hold_memory_until_killed(worker: psutil.Process) -> None:
            ballast = []  # touched pages, 512 MB at a time, until the monitor kills a worker (not this process)
            try:
                while worker.is_running() and psutil.virtual_memory().available > 3 * 2**30:
                    ballast.append(np.ones(2**29 // 8))
            finally:
                ballast.clear()  # at once: the trial's retry starts a new worker, which the monitor would kill too
            if worker.is_running():  # never left frozen
                worker.kill()
                raise AssertionError("the memory monitor never killed the frozen trial worker")

        killed = kill_during_second_fold(out, TRIALS[0]["lr"], driver, log, sigkill)
        memory_killed = kill_during_second_fold(out, TRIALS[1]["lr"], driver, log, hold_memory_until_killed)
        driver.wait(timeout=300)
    finally:
        kill_tree(driver.pid)
    text = log.read_text()
    assert driver.returncode == 0, text[-4000:]
    assert "Ray's memory monitor killed this trial's worker" in text, "the second death was not the monitor's"
    assert "Caught unexpected exception" not in text
    table = load_results(out)
    assert len(table) == 2 and set(table.status) == {"completed"}, table[["trial_id", "status", "epochs"]]
    # each killed trial reported fold 1 once, then went on from its checkpoint: the kill cost its running fold
    for trial in (killed, memory_killed):
        assert folds_reported(trial) == [1, 2, 3], (trial.name, folds_reported(trial))
    count = read_sweep_count(out)
    assert count.complete and count.usable == 2 and text.rstrip().endswith("sweep complete: 2 of 2 trials gave a model")
