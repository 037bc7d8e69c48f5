"""A sweep killed (SIGKILL, the whole process tree) after every reported epoch still finishes every trial.

Tune deletes surplus checkpoints before its experiment snapshot records the
newer one, so a hard crash could leave a trial whose recorded checkpoint is gone.
"""
from __future__ import annotations

import pytest

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow.fs
from tests_support import kill_tree, make_dataset, sweep_yaml

from search import load_results
from search.record import read_sweep_id
from search.recovery import reported_checkpoints

pytestmark = pytest.mark.slow  # starts Ray Tune sweeps and kills them: not in the fast tier


def reported_epochs(run_dir: Path) -> int:
    """Results Tune has logged so far, over every trial (each one epoch with its checkpoint)."""
    total = 0
    for log in run_dir.glob("trial_*/result.json"):
        try:
            total += sum(1 for line in log.read_text().splitlines() if line.strip())
        except OSError:
            pass
    return total


def keep_best_and_newest(run_dir: Path) -> None:
    """What keep_checkpoints 1 leaves right after a new checkpoint is registered (the best by val_loss and
    the newest), done in the crash window: the snapshot on disk still names the checkpoint the trial was
    restored from when this driver started, which is gone unless it is the best."""
    fs = pyarrow.fs.LocalFileSystem()
    for trial in run_dir.glob("trial_*"):
        reported = reported_checkpoints(fs, str(trial))
        if len(reported) < 2:
            continue
        best = min(reported, key=lambda r: r[1]["val_loss"])[0]
        for name, _ in reported[:-1]:
            if name != best:
                shutil.rmtree(trial / name)


def test_reported_checkpoints_are_the_existing_folders_in_order_with_their_metrics(tmp_path):
    for name in ("checkpoint_000000", "checkpoint_000002", "checkpoint_000003"):
        (tmp_path / name).mkdir()
    lines = [{"checkpoint_dir_name": f"checkpoint_00000{i}", "training_iteration": i + 1, "val_loss": 1.0 - i / 10}
             for i in range(4)]
    lines[3] = {**lines[2], "val_loss": 0.5}  # a restored trial reports checkpoint_000002 again: the last wins
    text = "\n".join(json.dumps(r) for r in lines) + '\n{"checkpoint_dir_name": "checkpoint_000003", "val'
    (tmp_path / "result.json").write_text(text)  # the last line torn by the kill
    found = reported_checkpoints(pyarrow.fs.LocalFileSystem(), str(tmp_path))
    assert [(name, m["val_loss"]) for name, m in found] == [("checkpoint_000000", 1.0), ("checkpoint_000002", 0.5)]
    assert reported_checkpoints(pyarrow.fs.LocalFileSystem(), str(tmp_path / "nowhere")) == []


def test_proposals_no_trial_carries_are_failed_and_the_carried_one_is_left_running(tmp_path):
    from search.recovery import _fail_orphans

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    carried, lost = study.ask(), study.ask()
    carried.suggest_float("lr", 1e-4, 1e-1, log=True)
    lost.suggest_float("lr", 1e-4, 1e-1, log=True)
    study.ask()  # killed before its parameters were drawn
    assert _fail_orphans(url, "s", [{"lr": carried.params["lr"], "batch_size": 8}]) == [1, 2]
    assert [t.state.name for t in study.get_trials()] == ["RUNNING", "FAIL", "FAIL"]
    assert _fail_orphans(url, "s", [{"lr": carried.params["lr"]}]) == []  # nothing left to fail


def test_a_sweep_killed_after_every_epoch_finishes_every_trial(tmp_path, isolated_cache):
    # epochs of a few seconds (600 images), so that the kill lands before the next epoch is reported
    data = make_dataset(tmp_path / "data", groups_per_class=100, per_group=3, seed=3)
    # keep_checkpoints 2 as in the issue; val_loss: a worse epoch deletes an older checkpoint at once
    config = sweep_yaml(tmp_path / "s.yaml", data, num_samples=2, max_concurrent=1, keep_checkpoints=2,
                        asha={"max_epochs": 4, "grace_period": 4, "reduction_factor": 2},
                        study_storage=str(tmp_path / "study.db"))
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "lungsweep", "launch", "--config", str(config), "--out", str(out)]
    # Tune snapshots only when forced (every keep_checkpoints checkpoints of a trial), never on a timer:
    # each driver is killed one epoch after it started, with its start-up snapshot still on disk
    env = {**os.environ, "LUNGSWEEP_CACHE": str(isolated_cache), "TUNE_GLOBAL_CHECKPOINT_S": "3600"}
    kills, logs = 0, []
    deadline = time.monotonic() + 480
    while True:
        log = tmp_path / f"driver-{len(logs)}.log"
        logs.append(log)
        seen = reported_epochs(out)
        with log.open("w") as sink:
            driver = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            while driver.poll() is None and reported_epochs(out) == seen:
                assert time.monotonic() < deadline, f"the sweep did not finish in time after {kills} kills"
                time.sleep(0.05)
        finally:
            if driver.poll() is None:
                kill_tree(driver.pid)  # SIGKILL right after an epoch was reported: the driver and every Ray process
                kills += 1
                if kills % 2:  # every other kill: certainly in the window; the others: as Tune left it
                    keep_best_and_newest(out)
        if driver.returncode == 0 and "best_val_loss" in log.read_text():
            break  # finished on its own: the results table was printed
        assert kills <= 14, f"still not done after {kills} kills; last log:\n{log.read_text()[-3000:]}"
    text = "\n".join(p.read_text() for p in logs)
    # a trial can run an epoch or two ahead of the driver, so a kill may land after its next report
    assert kills >= 3, "the sweep was killed at too few points to test anything"
    assert "does not exist on storage anymore" not in text and "Error handling checkpoint" not in text
    assert "were deleted before the crash; resuming from checkpoint_" in text, "no resume met a deleted checkpoint"
    table = load_results(out)
    assert len(table) == 2 and set(table.status) == {"completed"}, table[["trial_id", "status", "epochs"]]
    assert set(table.epochs) == {4}
    # one Optuna study, named after the sweep's id, reused by every resume
    sweep_id = read_sweep_id(out)
    assert sweep_id and optuna.get_all_study_names(f"sqlite:///{tmp_path / 'study.db'}") == [
        f"lungsweep-sweep-{sweep_id[:8]}"]
    # the study in the database holds both trials, each finished once, whatever the kills interrupted;
    # a proposal asked just before a kill, which Tune never recorded, is failed on resume, not left running
    study = optuna.load_study(study_name=f"lungsweep-sweep-{sweep_id[:8]}", storage=f"sqlite:///{tmp_path / 'study.db'}")
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    assert states.count("COMPLETE") == 2 and set(states) <= {"COMPLETE", "FAIL"}, states
    orphans = [n for listed in re.findall(r"proposal\(s\) ([\d, ]+) were asked", text) for n in listed.split(", ")]
    assert states.count("FAIL") == len(orphans), (states, orphans)
    fs = pyarrow.fs.LocalFileSystem()
    for trial_id, checkpoint in zip(table.trial_id, table.checkpoint):
        assert Path(checkpoint).is_dir(), f"trial {trial_id}'s best checkpoint {checkpoint} is missing"
        assert reported_checkpoints(fs, str(out / f"trial_{trial_id}")), trial_id
