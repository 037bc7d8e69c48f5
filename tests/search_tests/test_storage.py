"""A sweep at a URI: file://, and s3:// on a local S3 server (moto); gs:// goes the same pyarrow.fs way."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest
from tests_support import child_pids, free_port, kill_children, kill_tree, sweep_yaml

from search import load_sweep_config
from search.record import is_sweep, read_record, read_results, read_sweep, read_sweep_id, write_sweep
from search.results import save_results
from trainers.errors import LungsweepError

pytestmark = pytest.mark.slow  # starts Ray Tune sweeps on local and S3 storage: not in the fast tier


def test_the_record_and_results_round_trip_through_a_uri(tmp_path, synthetic_data):
    cfg = load_sweep_config(sweep_yaml(tmp_path / "s.yaml", synthetic_data))
    uri = f"file://{tmp_path}/bucket/sweep"
    with pytest.raises(LungsweepError, match="holds no sweep"):  # a URI is read only as a sweep
        is_sweep(uri)
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


@pytest.fixture
def bucket(tmp_path, monkeypatch) -> str:
    """A bucket on a local S3 server (moto's server mode, installed with the test extra), reached the way
    an S3-compatible store (MinIO, Ceph) is: endpoint_override and scheme in the URI. Without moto, a
    file:// folder (the same pyarrow.fs path, less the S3 client)."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        yield f"file://{tmp_path}/bucket"
        return
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        uri = f"s3://lungsweep-test/sweeps?endpoint_override=127.0.0.1:{port}&scheme=http"
        deadline = time.monotonic() + 60
        while True:
            try:
                fs, _ = pyarrow.fs.FileSystem.from_uri(uri + "&allow_bucket_creation=true")
                fs.create_dir("lungsweep-test")
                break
            except OSError:
                assert time.monotonic() < deadline, "the local S3 server did not start"
                time.sleep(0.5)
        yield uri
    finally:
        kill_tree(proc.pid)


def test_a_sweep_at_a_uri_is_launched_ranked_ensembled_and_exported_from_there(tmp_path, synthetic_data,
                                                                              isolated_cache, bucket):
    from ensemble import EnsembleSettings, build_ensemble, export_model
    from search import load_results, storage
    from search.record import MIRROR_ORIGIN, local_sweep

    config = sweep_yaml(tmp_path / "s.yaml", synthetic_data, num_samples=2, max_concurrent=1, storage=bucket,
                        asha={"max_epochs": 1, "grace_period": 1, "reduction_factor": 2})
    env = {**os.environ, "LUNGSWEEP_CACHE": str(isolated_cache)}
    servers = child_pids()  # the S3 server
    try:
        done = subprocess.run([sys.executable, "-m", "lungsweep", "launch", "--config", str(config), "--out", "sweep"],
                              env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        ranked = subprocess.run([sys.executable, "-m", "lungsweep", "results", str(storage.join(bucket, "sweep"))],
                                env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        kill_children(spare=servers)  # the driver stops its Ray; anything left is killed by process id
    assert done.returncode == 0, done.stderr[-3000:]
    uri = str(storage.join(bucket, "sweep"))
    assert ranked.returncode == 0 and f"saved {storage.join(uri, 'results.csv')}" in ranked.stdout, ranked.stderr
    assert read_sweep_id(uri) and read_sweep(uri).num_samples == 2
    assert len(read_results(uri)) == 2 and set(load_results(uri).status) == {"completed"}
    assert not (tmp_path / "sweep").exists(), "nothing is written beside the working directory"

    # the ensemble step and export --trial read the sweep at its URI: a local mirror, checkpoints on demand
    metrics = build_ensemble(uri, tmp_path / "ens", EnsembleSettings(method="mean", members=1, n_splits=2, n_boot=20))
    assert 0.0 <= metrics["auc"]["value"] <= 1.0 and len(metrics["members"]) == 1
    mirror = local_sweep(uri)
    assert mirror.is_relative_to(isolated_cache) and (mirror / MIRROR_ORIGIN).read_text() == uri
    fetched = sorted(p.parents[1].name for p in mirror.glob("trial_*/checkpoint_*/checkpoint.json"))
    best = load_results(uri).iloc[0]
    assert fetched == [f"trial_{best.trial_id}"], "only the chosen member's checkpoint is fetched"
    assert json.loads((tmp_path / "ens" / "ensemble.json").read_text())["provenance"]["sweep"] == uri
    manifest = export_model(uri, tmp_path / "model", trial="best", n_boot=20)
    assert manifest["provenance"]["sweep"] == uri and manifest["ensemble"]["members"] == [best.trial_id]
    assert manifest["parity"]["max_abs_diff"] < 1e-4


def test_a_trial_on_a_node_that_cannot_see_the_run_folder_fails_naming_the_node(tmp_path, synthetic_data):
    """What the first trial on a late-joining node checks (launch only checked the nodes alive then)."""
    from search.storage import StorageError
    from search.trainable import train_trial
    from trainers import TrainConfig

    base = TrainConfig(data=str(synthetic_data), model="test_resnet", image_size=32).to_dict()
    with pytest.raises(StorageError, match=r"run folder .*elsewhere is not visible from node .*shared storage"):
        train_trial({}, base=base, run_dir=str(tmp_path / "elsewhere"))
