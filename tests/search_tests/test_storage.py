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

    # the ensemble step and export --trial read the sweep at its URI: a local mirror, checkpoints on demand
    from ensemble.build import EnsembleSettings, build_ensemble
    from ensemble.export import export_model
    from search.record import MIRROR_ORIGIN, local_sweep

    metrics = build_ensemble(uri, tmp_path / "ens", EnsembleSettings(method="mean", members=1, n_splits=2, n_boot=20))
    assert 0.0 <= metrics["auc"]["value"] <= 1.0 and len(metrics["members"]) == 1
    mirror = local_sweep(uri)
    assert mirror.is_relative_to(isolated_cache) and (mirror / MIRROR_ORIGIN).read_text() == uri
    fetched = sorted(p.parents[1].name for p in mirror.glob("trial_*/checkpoint_*/checkpoint.json"))
    best = load_results(uri).iloc[0]
    assert fetched == [f"trial_{best.trial_id}"], "only the chosen member's checkpoint is fetched"
    import json

    assert json.loads((tmp_path / "ens" / "ensemble.json").read_text())["provenance"]["sweep"] == uri
    manifest = export_model(uri, tmp_path / "model", trial="best", n_boot=20)
    assert manifest["provenance"]["sweep"] == uri and manifest["ensemble"]["members"] == [best.trial_id]
    assert manifest["parity"]["max_abs_diff"] < 1e-4


def test_a_trial_on_a_node_that_cannot_see_the_run_folder_fails_naming_the_node(tmp_path, synthetic_data):
    """What the first trial on a late-joining node checks (launch only checked the nodes alive then)."""
    import pytest

    from search.storage import StorageError
    from search.trainable import train_trial
    from trainers import TrainConfig

    base = TrainConfig(data=str(synthetic_data), model="test_resnet", image_size=32).to_dict()
    with pytest.raises(StorageError, match=r"run folder .*elsewhere is not visible from node .*shared storage"):
        train_trial({}, base=base, run_dir=str(tmp_path / "elsewhere"))
