"""The sweep folder's format module: Ray-free, and the one reader of SWEEP_FILE."""
from __future__ import annotations

import subprocess
import sys

import pytest
from tests_support import sweep_yaml

from search import load_sweep_config
from search.record import MIRROR_ORIGIN, read_sweep, trial_checkpoint, trial_dir, trial_status, write_sweep
from trainers import LungsweepError


def test_reading_a_sweep_folder_never_imports_ray():
    code = "import sys, search, search.record, ensemble.fit.members, ensemble.report.page; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_record_round_trips_to_the_same_sweep_config(tmp_path, synthetic_data):
    cfg = load_sweep_config(sweep_yaml(tmp_path / "s.yaml", synthetic_data))
    write_sweep(tmp_path / "sweep", cfg)
    assert read_sweep(tmp_path / "sweep") == cfg
    assert read_sweep(tmp_path / "sweep").base_train_config() == cfg.base_train_config()
    assert trial_dir(tmp_path / "sweep", "ab12") == tmp_path / "sweep" / "trial_ab12"


def test_a_trials_checkpoint_is_found_inside_the_sweep_folder_else_where_it_was_recorded(tmp_path):
    run_dir = tmp_path / "sweep"
    inside = trial_dir(run_dir, "ab12") / "checkpoint_000002"
    inside.mkdir(parents=True)
    assert trial_checkpoint(run_dir, "ab12", "/moved/away/trial_ab12/checkpoint_000002") == inside
    recorded = tmp_path / "elsewhere" / "checkpoint_000003"
    recorded.mkdir(parents=True)
    assert trial_checkpoint(run_dir, "cd34", str(recorded)) == recorded
    assert trial_checkpoint(run_dir, "ef56", str(tmp_path / "gone" / "checkpoint_000001")) is None

    # a mirror of a sweep at a URI (local_sweep) fetches the checkpoint from there, once
    bucket = tmp_path / "bucket" / "sweep"
    (bucket / "trial_ef56" / "checkpoint_000001").mkdir(parents=True)
    (bucket / "trial_ef56" / "checkpoint_000001" / "checkpoint.json").write_text("{}")
    (run_dir / MIRROR_ORIGIN).write_text(bucket.as_uri())
    fetched = trial_checkpoint(run_dir, "ef56", "/on/the/bucket/trial_ef56/checkpoint_000001")
    assert fetched == trial_dir(run_dir, "ef56") / "checkpoint_000001" and (fetched / "checkpoint.json").is_file()


def test_a_missing_or_damaged_record_is_named(tmp_path):
    with pytest.raises(LungsweepError, match="holds no lungsweep sweep"):
        read_sweep(tmp_path)
    (tmp_path / "lungsweep_sweep.json").write_text("{not json")
    with pytest.raises(LungsweepError, match="is damaged"):
        read_sweep(tmp_path)


def test_a_hand_edited_space_entry_is_named_not_a_key_error(tmp_path, synthetic_data):
    import json

    write_sweep(tmp_path, load_sweep_config(sweep_yaml(tmp_path / "s.yaml", synthetic_data)))
    record = json.loads((tmp_path / "lungsweep_sweep.json").read_text())
    del record["space"][0]["kind"]
    (tmp_path / "lungsweep_sweep.json").write_text(json.dumps(record))
    with pytest.raises(LungsweepError, match="lacks 'kind'"):
        read_sweep(tmp_path)


@pytest.mark.parametrize(
    "tune_status, last, status",
    [
        ("ERROR", {}, "error"),
        ("RUNNING", {}, "running"),
        ("TERMINATED", {"trainer_stop": "patience", "training_iteration": 2}, "early-stopped"),
        ("TERMINATED", {"training_iteration": 4}, "completed"),
        ("TERMINATED", {"training_iteration": 1}, "stopped"),
    ],
)
def test_trial_status_rules(tune_status, last, status):
    assert trial_status(tune_status, last, max_epochs=4) == status


def test_the_sweep_id_is_recorded_and_names_the_study(tmp_path, synthetic_data):
    from search.record import SWEEP_FILE, new_sweep_id, read_sweep_id, study_name

    cfg = load_sweep_config(sweep_yaml(tmp_path / "s.yaml", synthetic_data))
    assert read_sweep_id(tmp_path / "sweep") is None
    sweep_id = new_sweep_id()
    write_sweep(tmp_path / "sweep", cfg, sweep_id)
    assert read_sweep_id(tmp_path / "sweep") == sweep_id
    assert f'"sweep_id": "{sweep_id}"' in (tmp_path / "sweep" / SWEEP_FILE).read_text()
    assert read_sweep(tmp_path / "sweep") == cfg  # the id is not a config key
    assert study_name("sweep", sweep_id) == f"lungsweep-sweep-{sweep_id[:8]}"
    assert new_sweep_id() != sweep_id
