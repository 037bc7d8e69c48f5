"""Sweeps across processes: a killed driver resumed, and a lost Ray node.

Each test starts its own Ray processes and kills them by process id when it ends.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import secrets
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
from tests_support import free_port, kill_tree, sweep_yaml

from search import load_results
from search.record import SWEEP_FILE

pytestmark = pytest.mark.slow  # starts Ray Tune sweeps in processes of their own: not in the fast tier

RAY = str(Path(sys.executable).with_name("ray"))
HEAD, SECOND = "127.0.0.2", "127.0.0.3"  # one loopback address per node


def finished_trials(run_dir: Path) -> set[str]:
    """Trials Tune's saved experiment state already calls TERMINATED."""
    done: set[str] = set()
    for state in run_dir.glob("experiment_state-*.json"):
        try:
            trials = json.loads(state.read_text())["trial_data"]
        except (json.JSONDecodeError, KeyError, OSError):
            continue  # being rewritten right now
        for trial_json, _ in trials:
            trial = json.loads(trial_json)
            if trial.get("status") == "TERMINATED":
                done.add(trial["trial_id"])
    return done


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path, synthetic_data, isolated_cache):
    config = sweep_yaml(tmp_path / "s.yaml", synthetic_data, num_samples=5, max_concurrent=1,
                        asha={"max_epochs": 3, "grace_period": 3, "reduction_factor": 2})
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "lungsweep", "launch", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "LUNGSWEEP_CACHE": str(isolated_cache)}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(finished_trials(out)) < 2:
            assert driver.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no two trials finished in time"
            time.sleep(0.5)
    finally:
        kill_tree(driver.pid)  # SIGKILL: the driver and every Ray process under it
    before = finished_trials(out)
    progress = {t: (out / f"trial_{t}" / "progress.csv").read_text() for t in before}

    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming the sweep" in resumed.stdout
    # Tune logs this when it cannot load its snapshot, then starts the sweep over (search/snapshot.py)
    assert "Failed to restore the run state" not in resumed.stderr, resumed.stderr[-3000:]
    table = load_results(out)
    assert len(table) == 5 and set(table.status) == {"completed"}
    for trial_id, text in progress.items():
        assert (out / f"trial_{trial_id}" / "progress.csv").read_text() == text, f"{trial_id} was run again"
    study = restored_study(out)
    assert_study_kept_its_trials(study, table, startup_trials=2)


def restored_study(run_dir: Path) -> optuna.Study:
    """The Optuna study as the sweep's searcher saved it (what a further resume would continue)."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = ConcurrencyLimiter(OptunaSearch(), max_concurrent=1)
    searcher.restore_from_dir(str(run_dir))
    return searcher.searcher._ot_study


def assert_study_kept_its_trials(study: optuna.Study, table, *, startup_trials: int) -> None:
    """TPE's study holds every finished trial once, and its random start-up phase ran once, not per resume."""
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == len(table), f"{len(trials)} study trials for {len(table)} sweep trials"
    assert sorted(t.number for t in trials) == list(range(len(table))), "the study's numbering restarted"
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    # each sweep trial's config is one study trial's parameters
    assert sorted(table["config/lr"]) == sorted(t.params["lr"] for t in trials)
    # a proposal is random while fewer than startup_trials trials have finished: after a resume that
    # forgot them, the proposals would be random again
    random_phase = [t for t in trials
                    if sum(u.datetime_complete < t.datetime_start for u in trials) < startup_trials]
    assert len(random_phase) == startup_trials, [(t.number, t.datetime_start) for t in trials]


def reports(run_dir: Path) -> dict[str, list[dict]]:
    """Every trial's reported results so far (Tune's result.json), a torn last line skipped."""
    found: dict[str, list[dict]] = {}
    for log in run_dir.glob("trial_*/result.json"):
        rows = []
        for line in log.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        found[log.parent.name.removeprefix("trial_")] = rows
    return found


def test_a_node_that_joins_late_runs_trials_and_its_loss_costs_no_trial(tmp_path, isolated_cache):
    """A worker that joins after launch (an autoscaled one) checks storage and decodes in its
    first trial; killing its raylet mid-trial retries that trial on the head from its last checkpoint."""
    from tests_support import make_dataset

    data = make_dataset(tmp_path / "data", groups_per_class=100, per_group=3, seed=5)  # epochs of seconds
    port = free_port()
    address = f"{HEAD}:{port}"
    env = {
        **os.environ,
        "LUNGSWEEP_CACHE": str(isolated_cache),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's token authentication: one secret shared by the two nodes and the driver
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        # the head declares a silent node dead after ~2 s, not Ray's default half a minute
        "RAY_health_check_period_ms": "500",
        "RAY_health_check_timeout_ms": "500",
        "RAY_health_check_failure_threshold": "4",
    }
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    # Ray puts unix sockets in its temp dir, and socket paths must stay under ~100 characters
    short = Path(tempfile.mkdtemp(prefix="lsray-", dir="/tmp"))
    nodes, driver = [], None
    out = tmp_path / "sweep"
    try:
        nodes.append(subprocess.Popen(
            [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
             f"--temp-dir={short / 'head'}", f"--node-ip-address={HEAD}", *common],
            env=env, stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT,
        ))
        _wait(lambda: _active_nodes(address, env) == 1)
        config = sweep_yaml(tmp_path / "s.yaml", data, num_samples=4, max_concurrent=2, keep_checkpoints=1,
                            asha={"max_epochs": 10, "grace_period": 10, "reduction_factor": 2})
        driver = subprocess.Popen(
            [sys.executable, "-m", "lungsweep", "launch", "--config", str(config), "--out", str(out),
             "--address", address],
            env=env, stdout=(tmp_path / "driver.log").open("w"), stderr=subprocess.STDOUT,
        )
        # the sweep has started (its record is written after launch prepared the nodes alive then)
        _wait(lambda: (out / SWEEP_FILE).is_file(), timeout=240)
        nodes.append(subprocess.Popen(
            [RAY, "start", f"--address={address}", f"--temp-dir={short / 'second'}",
             f"--node-ip-address={SECOND}", *common],
            env=env, stdout=(tmp_path / "second.log").open("w"), stderr=subprocess.STDOUT,
        ))

        def on_second_node() -> tuple[str, int] | None:
            for trial_id, rows in reports(out).items():
                if rows and rows[-1]["node_ip"] == SECOND and rows[-1]["training_iteration"] < 9:
                    return trial_id, rows[-1]["training_iteration"]
            assert driver.poll() is None, "the sweep ended before a trial ran on the second node"
            return None

        _wait(lambda: on_second_node() is not None, timeout=240)
        lost_trial, reported_before = on_second_node()
        raylets = [p for p in psutil.Process(nodes[1].pid).children(recursive=True) if p.name() == "raylet"]
        assert len(raylets) == 1, [p.name() for p in psutil.Process(nodes[1].pid).children(recursive=True)]
        raylets[0].kill()  # the node is lost mid-trial: its raylet and, with it, the trial's worker

        assert driver.wait(timeout=400) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        if driver is not None:
            kill_tree(driver.pid)
        for proc in reversed(nodes):
            kill_tree(proc.pid)
        shutil.rmtree(short, ignore_errors=True)
    table = load_results(out)
    assert len(table) == 4 and set(table.status) == {"completed"}, table[["trial_id", "status", "epochs"]]
    rows = reports(out)[lost_trial]
    before = [r["epoch"] for r in rows if r["node_ip"] == SECOND]
    after = [r["epoch"] for r in rows if r["node_ip"] == HEAD]
    assert after, f"trial {lost_trial} was not retried on the head"
    # retried from its last checkpoint: the first epoch on the head continues what the lost node reported
    assert before[0] == 1 and before[-1] >= reported_before >= 1
    assert after == list(range(before[-1] + 1, 11)), (before, after)


def _active_nodes(address: str, env: dict) -> int:
    status = subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True)
    if status.returncode != 0:
        return 0
    active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return sum(1 for line in active.splitlines() if "node_" in line)


def _wait(ready, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail("Ray node did not come up in time")
        time.sleep(1.0)
