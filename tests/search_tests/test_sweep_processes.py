"""Sweeps across processes: a killed driver resumed, and two Ray nodes sharing one sweep.

Each test starts its own Ray processes and kills them by process id when it ends.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests_support import kill_tree, sweep_yaml

from search import load_results

RAY = str(Path(sys.executable).with_name("ray"))


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
    table = load_results(out)
    assert len(table) == 5 and set(table.status) == {"completed"}
    for trial_id, text in progress.items():
        assert (out / f"trial_{trial_id}" / "progress.csv").read_text() == text, f"{trial_id} was run again"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ray_nodes_on_loopback_share_one_sweep(tmp_path, synthetic_data, isolated_cache):
    port = free_port()
    address = f"127.0.0.2:{port}"  # two loopback addresses, one per node
    env = {
        **os.environ,
        "LUNGSWEEP_CACHE": str(isolated_cache),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's token authentication: one secret shared by the two nodes and the driver
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    # Ray puts unix sockets in its temp dir, and socket paths must stay under ~100 characters
    short = Path(tempfile.mkdtemp(prefix="lsray-", dir="/tmp"))
    nodes = []
    try:
        nodes.append(subprocess.Popen(
            [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
             f"--temp-dir={short / 'head'}", "--node-ip-address=127.0.0.2", *common],
            env=env, stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT,
        ))
        _wait(lambda: _active_nodes(address, env) == 1)
        nodes.append(subprocess.Popen(
            [RAY, "start", f"--address={address}", '--resources={"second_node": 1}',
             f"--temp-dir={short / 'second'}", "--node-ip-address=127.0.0.3", *common],
            env=env, stdout=(tmp_path / "second.log").open("w"), stderr=subprocess.STDOUT,
        ))
        _wait(lambda: _active_nodes(address, env) == 2)
        # trials long enough (several seconds) that the second starts while the first runs:
        # with reused workers, a trial that ended at once would hand its worker on instead
        config = sweep_yaml(tmp_path / "s.yaml", synthetic_data, num_samples=4, max_concurrent=2,
                            asha={"max_epochs": 5, "grace_period": 5, "reduction_factor": 2})
        done = subprocess.run(
            [sys.executable, "-m", "lungsweep", "launch", "--config", str(config), "--out", str(tmp_path / "sweep"),
             "--address", address],
            env=env, capture_output=True, text=True, timeout=400,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        table = load_results(tmp_path / "sweep")  # storage: a local folder both nodes see
        assert len(table) == 4 and set(table.status) == {"completed"}
        assert table.node_id.nunique() == 2, "trials ran on both nodes"
    finally:
        for proc in reversed(nodes):
            kill_tree(proc.pid)
        shutil.rmtree(short, ignore_errors=True)


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
