"""The sweep record and the results tables at a URI (file:// here; s3:// and gs:// go the same pyarrow.fs way)."""
from __future__ import annotations

import pandas as pd
from tests_support import sweep_yaml

from search import load_sweep_config
from search.record import is_sweep, read_record, read_results, read_sweep, read_sweep_id, write_sweep
from search.results import save_results


def test_the_record_and_results_round_trip_through_a_uri(tmp_path, synthetic_data):
    cfg = load_sweep_config(sweep_yaml(tmp_path / "s.yaml", synthetic_data))
    uri = f"file://{tmp_path}/bucket/sweep"
    assert not is_sweep(uri)
    write_sweep(uri, cfg, "ab" * 16)
    assert is_sweep(uri) and (tmp_path / "bucket" / "sweep" / "lungsweep_sweep.json").is_file()
    assert read_sweep(uri) == cfg and read_sweep_id(uri) == "ab" * 16 and read_record(uri)["seed"] == cfg.seed
    table = pd.DataFrame([
        {"rank": 2, "trial_id": "b", "status": "completed", "epochs": 4, "best_epoch": 3, "best_metric": 0.5,
         "checkpoint": "x", "config/lr": 0.01},
        {"rank": 1, "trial_id": "a", "status": "completed", "epochs": 4, "best_epoch": 2, "best_metric": 0.4,
         "checkpoint": "y", "config/lr": 0.02},
    ])
    save_results(table.sort_values("rank"), uri, cfg)
    back = read_results(uri)
    assert list(back.trial_id) == ["a", "b"] and back.best_metric.tolist() == [0.4, 0.5]
    for name in ("results.csv", "results.parquet", "best_config.yaml"):
        assert (tmp_path / "bucket" / "sweep" / name).is_file(), name
    assert "lr: 0.02" in (tmp_path / "bucket" / "sweep" / "best_config.yaml").read_text()


def test_a_sweep_with_uri_storage_writes_its_record_and_results_there(tmp_path, synthetic_data, isolated_cache):
    import os
    import subprocess
    import sys

    from tests_support import kill_children

    from search import load_results

    config = sweep_yaml(tmp_path / "s.yaml", synthetic_data, num_samples=2, max_concurrent=1,
                        storage=f"file://{tmp_path}/bucket", asha={"max_epochs": 1, "grace_period": 1,
                                                                    "reduction_factor": 2})
    env = {**os.environ, "LUNGSWEEP_CACHE": str(isolated_cache)}
    try:
        done = subprocess.run([sys.executable, "-m", "lungsweep", "launch", "--config", str(config), "--out", "sweep"],
                              env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        kill_children()  # the driver stops its Ray; anything left is killed by process id
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"file://{tmp_path}/bucket/sweep"
    assert read_sweep_id(uri) and read_sweep(uri).num_samples == 2
    assert len(read_results(uri)) == 2 and set(load_results(uri).status) == {"completed"}
    assert not (tmp_path / "sweep").exists(), "nothing is written beside the working directory"
