"""`lungsweep run` killed at each landmark of its folders ends, when run again, as a clean run does.

The kills land on file-system landmarks, not at random times, so each window is hit on
every run: tuner.pkl without Tune's run state (the first seconds), the first experiment
state, each trial's first checkpoint, the results table, inside the ensemble stage and
inside the export. One chain of drivers: each is SIGKILLed (with every Ray process) at the
next landmark, the last runs to the end; its metrics.json must match a clean run's number
for number (fixed configs, one trial at a time, no ASHA stop: the job is deterministic).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest
from tests_support import kill_tree, make_dataset, sweep_yaml, trial_workers

from search.record import RESULTS_PARQUET

pytestmark = pytest.mark.slow  # runs the main job again and again, killing it: not in the fast tier

TRIALS = [{"lr": 0.01, "batch_size": 16, "optimizer": "adamw"},
          {"lr": 0.003, "batch_size": 8, "optimizer": "sgd", "momentum": 0.9}]


def _experiment_states(sweep: Path) -> list[Path]:
    return list(sweep.glob("experiment_state-*.json"))


def _trials_with_a_checkpoint(sweep: Path) -> int:
    return sum(1 for t in sweep.glob("trial_*") if any(t.glob("checkpoint_*")))


# (name, reached(out, driver log text)): in the order a run meets them
LANDMARKS: list[tuple[str, Callable[[Path, str], bool]]] = [
    ("tuner.pkl, no run state", lambda out, log: (out / "sweep/tuner.pkl").is_file()
     and not _experiment_states(out / "sweep")),
    ("the first experiment state", lambda out, log: bool(_experiment_states(out / "sweep"))),
    ("the first trial's first checkpoint", lambda out, log: _trials_with_a_checkpoint(out / "sweep") >= 1),
    ("the second trial's first checkpoint", lambda out, log: _trials_with_a_checkpoint(out / "sweep") >= 2),
    ("the results table", lambda out, log: (out / "sweep" / RESULTS_PARQUET).is_file()),
    ("inside the ensemble stage", lambda out, log: "[2/4] ensemble" in log),
    ("inside the export", lambda out, log: "exporting " in log),
]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("kills")
    data = make_dataset(root / "data", groups_per_class=10, per_group=2, seed=5)
    # every trial given, one at a time, every fold run (grace period = the folds): nothing left to chance
    config = sweep_yaml(root / "s.yaml", data, metric="val_auc", mode="max", cv_folds=3, num_samples=2,
                        max_concurrent=1, asha={"max_epochs": 1, "grace_period": 3, "reduction_factor": 2},
                        first_trials=TRIALS)
    env = {**os.environ, "LUNGSWEEP_CACHE": str(root / "cache")}
    return {"root": root, "data": data, "config": config, "env": env}


def _command(setting: dict, out: Path, config: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "lungsweep", "run", "--config", str(config or setting["config"]), "--data",
            str(setting["data"]), "--out", str(out)]


def _run_to_the_end(setting: dict, out: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(_command(setting, out), capture_output=True, text=True, env=setting["env"], timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _numbers(x: Any, names: dict[str, str], path: str = "") -> dict[str, float]:
    """Every number in a JSON document by its path, trial ids named by their trial's config (ids differ by run)."""
    if isinstance(x, dict):
        return {k: v for key, value in x.items() for k, v in _numbers(value, names, f"{path}/{names.get(key, key)}").items()}
    if isinstance(x, list):
        return {k: v for i, value in enumerate(x) for k, v in _numbers(value, names, f"{path}[{i}]").items()}
    return {path: float(x)} if isinstance(x, (int, float)) and not isinstance(x, bool) else {}


def _metrics(out: Path) -> dict[str, float]:
    table = pd.read_parquet(out / "sweep" / RESULTS_PARQUET)
    names = {row["trial_id"]: f"trial lr={row['config/lr']}" for _, row in table.iterrows()}
    return _numbers(json.loads((out / "ensemble/metrics.json").read_text()), names)


def _configs(out: Path) -> list[tuple]:
    table = pd.read_parquet(out / "sweep" / RESULTS_PARQUET)
    columns = sorted(c for c in table.columns if c.startswith("config/"))
    return sorted(tuple(str(row[c]) for c in columns) for _, row in table.iterrows())


def test_a_job_killed_at_every_landmark_ends_as_a_clean_run_does(setting):
    clean = setting["root"] / "clean"
    _run_to_the_end(setting, clean)

    out, logs = setting["root"] / "killed", []
    for name, reached in LANDMARKS:
        log = setting["root"] / f"driver-{len(logs)}.log"
        logs.append(log)
        with log.open("w") as sink:
            driver = subprocess.Popen(_command(setting, out), env=setting["env"], stdout=sink,
                                      stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        try:
            while driver.poll() is None and not reached(out, log.read_text()):
                assert time.monotonic() < deadline, f"never reached {name}:\n{log.read_text()[-3000:]}"
                time.sleep(0.01)
        finally:
            kill_tree(driver.pid)  # the driver and every Ray process it started
        assert driver.returncode != 0, f"the job ended before it was killed at {name}"
    rerun = _run_to_the_end(setting, out)

    text = "\n".join(p.read_text() for p in logs)
    # the first rerun met tuner.pkl without run state, and said it started over rather than "resuming"
    assert "stopped before Tune saved its first state: starting it again" in Path(logs[1]).read_text()
    assert "resuming the sweep" in text and "Failed to restore the run state" not in text + rerun.stderr
    assert rerun.stdout.rstrip().splitlines()[-1] == "sweep complete: 2 of 2 trials gave a model"
    assert _configs(out) == _configs(clean), "the rerun's trials differ from the clean run's"
    table = pd.read_parquet(out / "sweep" / RESULTS_PARQUET)
    assert len(table) == len(TRIALS) and set(table.status) == {"completed"}, table[["trial_id", "status", "epochs"]]

    ran, killed = _metrics(clean), _metrics(out)
    assert ran.keys() == killed.keys()
    # a number undefined in both runs (nan: e.g. a calibration slope on separable data) agrees
    differ = {k: (ran[k], killed[k]) for k in ran
              if not (abs(ran[k] - killed[k]) < 1e-9 or (math.isnan(ran[k]) and math.isnan(killed[k])))}
    assert not differ, f"{len(differ)} of {len(ran)} numbers differ from the clean run's: {list(differ.items())[:8]}"
    for o in (clean, out):
        manifest = json.loads((o / "model/manifest.json").read_text())
        assert manifest["parity"]["max_abs_diff"] < 1e-4
        assert manifest["provenance"]["sweep_count"]["complete"] is True
        assert json.loads((o / "ensemble/metrics.json").read_text())["sweep"]["usable"] == len(TRIALS)
        assert '<p id="sweep-count"><b>sweep complete: 2 of 2 trials gave a model</b>' in (
            o / "ensemble/report.html").read_text()


def test_a_job_whose_trial_fails_for_good_yields_the_rest_says_so_and_a_rerun_finishes_it(setting):
    """max_failures 0 and a trial's worker killed in its second fold: that trial ends in error. The job
    still fits and exports the ensemble of the other bag, says "sweep incomplete" in its last line, the
    report, metrics.json and the manifest, and exits 1; the same command again retries the failed trial
    from its last fold and refits."""
    import yaml

    config = setting["root"] / "no_retries.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(setting["config"].read_text()), "max_failures": 0},
                                     sort_keys=False))
    out = setting["root"] / "short"
    command = _command(setting, out, config)
    log = setting["root"] / "short.log"
    with log.open("w") as sink:
        driver = subprocess.Popen(command, env=setting["env"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        second = None
        while second is None or not list(second.glob("checkpoint_*")):  # the second trial's first fold is in
            assert driver.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            second = next((t for t in (out / "sweep").glob("trial_*")
                           if (t / "params.json").is_file() and json.loads((t / "params.json").read_text())["lr"]
                           == TRIALS[1]["lr"]), None)
            time.sleep(0.05)
        workers = trial_workers(driver.pid)
        assert len(workers) == 1, workers
        workers[0].kill()
        driver.wait(timeout=300)
    finally:
        kill_tree(driver.pid)
    text = log.read_text()
    assert driver.returncode == 1, text[-4000:]
    short = "sweep incomplete: 1 of 2 trials (1 failed after every retry); run the same command again to run the rest"
    assert text.rstrip().splitlines()[-1] == short
    metrics = json.loads((out / "ensemble/metrics.json").read_text())
    assert metrics["sweep"]["complete"] is False and metrics["sweep"]["errored"] == 1
    assert len(json.loads((out / "ensemble/ensemble.json").read_text())["members"]) == 1, "the bag that finished"
    assert json.loads((out / "model/manifest.json").read_text())["provenance"]["sweep_count"]["statement"] == short
    assert f'<p id="sweep-count" class="warning"><b>{short}</b>' in (out / "ensemble/report.html").read_text()

    again = _run_to_the_end(setting, out)  # the same command, now with retries: the failed trial goes on
    assert again.stdout.rstrip().splitlines()[-1] == "sweep complete: 2 of 2 trials gave a model"
    assert "fitting it again" in again.stderr and "export: already in" not in again.stderr
    assert len(json.loads((out / "ensemble/ensemble.json").read_text())["members"]) == 2
    assert json.loads((out / "model/manifest.json").read_text())["provenance"]["sweep_count"]["complete"] is True
