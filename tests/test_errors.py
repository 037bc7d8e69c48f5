"""Every user mistake is one named line on stderr, exit code 2, no traceback.

Table-driven: each case builds its inputs in a temporary folder, runs the command line
as a user does, and names the words the error must contain (the culprit and the remedy).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
from tests_support import free_port, sweep_yaml


def lungsweep(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """The console script's entry point, in this process (an interpreter start-up per case would cost
    ~10 s; test_cli runs the installed command): (exit code, stderr). An uncaught exception, which a
    user would see as a traceback, fails the test here."""
    from lungsweep.cli import main

    capsys.readouterr()
    code = main(["-q", *args])
    return code, capsys.readouterr().err


# --- the inputs of each case -----------------------------------------------------------------


def out_is_a_file(tmp: Path, data: Path) -> list[str]:
    (tmp / "taken").write_text("not a folder")
    return ["train", "--data", str(data), "--out", str(tmp / "taken")]


def train_as_a_list(tmp: Path, data: Path) -> list[str]:
    config = sweep_yaml(tmp / "s.yaml", data, train=[{"data": str(data)}, {"model": "test_resnet"}])
    return ["launch", "--config", str(config), "--out", str(tmp / "sweep")]


def unreachable_address(tmp: Path, data: Path) -> list[str]:
    config = sweep_yaml(tmp / "s.yaml", data)
    return ["launch", "--config", str(config), "--out", str(tmp / "sweep"), "--address", f"127.0.0.1:{free_port()}"]


def bad_study_storage(tmp: Path, data: Path) -> list[str]:
    config = sweep_yaml(tmp / "s.yaml", data, study_storage="nosuchdb://user@host/study")
    return ["launch", "--config", str(config), "--out", str(tmp / "sweep")]


def model_dir(tmp: Path, files: dict) -> Path:
    from ensemble import MODEL_FORMAT
    from ensemble.folders.model_dir import MANIFEST, REQUIRED_KEYS

    folder = tmp / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx")
    manifest = {k: {} for k in REQUIRED_KEYS}
    manifest.update(format=MODEL_FORMAT, model_file="model.onnx", model_format="onnx", files=files)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    (tmp / "x.png").write_bytes(b"")
    return folder


def manifest_entry_without_sha(tmp: Path, data: Path) -> list[str]:
    return ["predict", str(model_dir(tmp, {"model.onnx": {"bytes": 4}})), str(tmp / "x.png")]


def ensemble_dir(tmp: Path, text: str) -> Path:
    folder = tmp / "ens"
    folder.mkdir()
    (folder / "ensemble.json").write_text(text)
    return folder


def ensemble_json_without_pipeline(tmp: Path, data: Path) -> list[str]:
    folder = ensemble_dir(tmp, json.dumps({"members": [], "tta": False, "classes": ["a", "b"], "positive": "a"}))
    return ["export", str(folder), "--out", str(tmp / "model")]


def ensemble_json_not_json(tmp: Path, data: Path) -> list[str]:
    return ["export", str(ensemble_dir(tmp, '{"members": [')), "--out", str(tmp / "model")]


def sweep_with_checkpoint(tmp: Path, drop: str) -> Path:
    """A RUN_DIR with one finished trial whose checkpoint.json lacks `drop`."""
    from trainers.checkpoint import FORMAT_VERSION, META, REQUIRED_META

    run = tmp / "sweep"
    checkpoint = run / "trial_a" / "checkpoint_000000"
    checkpoint.mkdir(parents=True)
    meta = {k: {} for k in REQUIRED_META}
    meta.update(format_version=FORMAT_VERSION, split={"seed": 0, "sha256": "x"},
                predictions={"val": {}, "holdout": {}})
    del meta[drop]
    (checkpoint / META).write_text(json.dumps(meta))
    pd.DataFrame([{"rank": 1, "trial_id": "a", "status": "completed", "epochs": 2, "best_epoch": 2,
                   "best_metric": 0.9, "checkpoint": str(checkpoint)}]).to_parquet(run / "results.parquet")
    return run


def checkpoint_without_split(tmp: Path, data: Path) -> list[str]:
    return ["ensemble", str(sweep_with_checkpoint(tmp, "split")), "--out", str(tmp / "ens")]


def checkpoint_without_predictions(tmp: Path, data: Path) -> list[str]:
    return ["ensemble", str(sweep_with_checkpoint(tmp, "predictions")), "--out", str(tmp / "ens")]


def members(n: str, command: str = "ensemble") -> Callable[[Path, Path], list[str]]:
    def case(tmp: Path, data: Path) -> list[str]:
        if command == "run":  # named before the sweep starts, not after it
            return ["run", "--data", str(data), "--out", str(tmp / "job"), "--members", n]
        return ["ensemble", str(tmp / "no-sweep-needed"), "--out", str(tmp / "ens"), "--members", n]
    return case


def train_file_value_overridden(tmp: Path, data: Path) -> list[str]:
    (tmp / "c.yaml").write_text(f"data: {data}\nepochs: 0\n")
    return ["train", "--config", str(tmp / "c.yaml"), "--epochs", "2", "--out", str(tmp / "run")]


def sweep_file_value_overridden(tmp: Path, data: Path) -> list[str]:
    config = sweep_yaml(tmp / "s.yaml", data, num_samples=0)
    return ["launch", "--config", str(config), "--num-samples", "2", "--out", str(tmp / "sweep")]


def max_networks_zero(tmp: Path, data: Path) -> list[str]:
    return ["ensemble", str(tmp / "no-sweep-needed"), "--out", str(tmp / "ens"), "--max-networks", "0"]


def reuse_actors_not_a_bool(tmp: Path, data: Path) -> list[str]:
    config = sweep_yaml(tmp / "s.yaml", data, reuse_actors="yes")
    return ["launch", "--config", str(config), "--out", str(tmp / "sweep")]


def uri_without_sweep(tmp: Path, data: Path) -> list[str]:
    return ["ensemble", f"file://{tmp}/bucket/nowhere", "--out", str(tmp / "ens")]


def uri_of_unknown_scheme(tmp: Path, data: Path) -> list[str]:
    return ["export", "nosuchfs://bucket/sweep", "--trial", "best", "--out", str(tmp / "model")]


CASES = [
    ("train", out_is_a_file, r"--out .*taken is an existing file, not a folder"),
    ("launch", train_as_a_list, r"'train' must be a mapping .* got a list"),
    ("ensemble", max_networks_zero, r"--max-networks must be a whole number of at least 1 .*got 0"),
    ("launch", reuse_actors_not_a_bool, r"s\.yaml: 'reuse_actors' must be bool, got 'yes'"),
    ("launch", unreachable_address, r"cannot reach a Ray cluster at --address '127\.0\.0\.1:\d+'.*ray start --head"),
    ("launch", bad_study_storage, r"study_storage 'nosuchdb://user@host/study' cannot be opened"),
    ("predict", manifest_entry_without_sha, r"manifest\.json: the entry for 'model\.onnx' lacks 'bytes' or 'sha256'"),
    ("export", ensemble_json_without_pipeline, r"ensemble\.json lacks key\(s\) \['pipeline'\].*lungsweep ensemble"),
    ("export", ensemble_json_not_json, r"ensemble\.json is damaged \(not valid JSON"),
    ("ensemble", checkpoint_without_split, r"checkpoint\.json lacks 'split'.*run the sweep again"),
    ("ensemble", checkpoint_without_predictions, r"checkpoint\.json lacks 'predictions'"),
    ("ensemble", members("0"), r"--members must be a whole number of at least 1 or 'all', got 0"),
    ("ensemble", members("-3"), r"--members must be a whole number of at least 1 or 'all', got -3"),
    ("ensemble", members("five"), r"--members must be a whole number of at least 1 or 'all', got 'five'"),
    ("run", members("0", "run"), r"--members must be a whole number of at least 1 or 'all', got 0"),
    ("train", train_file_value_overridden, r"c\.yaml: 'epochs' must be at least 1, got 0 .*flag overrides 'epochs'"),
    ("launch", sweep_file_value_overridden, r"s\.yaml: 'num_samples' must be at least 1, got 0 .*flag overrides"),
    ("ensemble", uri_without_sweep, r"file://.*/bucket/nowhere holds no sweep .*RUN_DIR"),
    ("export", uri_of_unknown_scheme, r"cannot read the sweep at nosuchfs://bucket/sweep .*credentials"),
]


@pytest.mark.parametrize("command, build, message", CASES, ids=[c[1].__name__ if c[1].__name__ != "case"
                                                                    else f"members-{i}" for i, c in enumerate(CASES)])
def test_a_mistake_is_one_named_error_line(tmp_path, synthetic_data, capsys, command, build, message):
    import re

    code, stderr = lungsweep(capsys, *build(tmp_path, synthetic_data))
    lines = stderr.strip().splitlines()
    assert code == 2, stderr[-3000:]
    errors = [line for line in lines if line.startswith(f"lungsweep {command}: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], stderr[-3000:]
    assert re.search(message, errors[0]), errors[0]


# --- settings that change the split cannot be searched; a config may come through a pipe ------------------


def searched_split_seed(tmp: Path, data: Path) -> list[str]:
    space = {"lr": {"loguniform": [1e-4, 0.3]}, "split_seed": {"choice": [0, 1, 2]}}
    return ["launch", "--config", str(sweep_yaml(tmp / "s.yaml", data, space=space)), "--out", str(tmp / "sweep")]


def first_trial_sets_val_fraction(tmp: Path, data: Path) -> list[str]:
    config = sweep_yaml(tmp / "s.yaml", data, first_trials=[{"lr": 0.01, "val_fraction": 0.3}])
    return ["launch", "--config", str(config), "--out", str(tmp / "sweep")]


def pipe(tmp: Path, text: str) -> Path:
    """A FIFO fed by a writer thread, as the shell's --config <(printf ...) hands over /dev/fd/63."""
    import os
    import threading

    fifo = tmp / "63"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as fh:
            fh.write(text)

    threading.Thread(target=write, daemon=True).start()
    return fifo


def train_config_in_a_pipe(tmp: Path, data: Path) -> list[str]:
    return ["train", "--config", str(pipe(tmp, f"data: {data}\nepochs: many\n")), "--out", str(tmp / "run")]


def sweep_config_in_a_pipe(tmp: Path, data: Path) -> list[str]:
    text = sweep_yaml(tmp / "s.yaml", data, num_samples=0).read_text()
    return ["launch", "--config", str(pipe(tmp, text)), "--out", str(tmp / "sweep")]


def config_is_a_folder(tmp: Path, data: Path) -> list[str]:
    return ["train", "--config", str(tmp), "--out", str(tmp / "run")]


def config_missing(tmp: Path, data: Path) -> list[str]:
    return ["launch", "--config", str(tmp / "nowhere.yaml"), "--out", str(tmp / "sweep")]


SPLIT_AND_PIPE_CASES = [
    ("launch", searched_split_seed, r"s\.yaml: space\.split_seed: 'split_seed' cannot be searched .*trials must "
                                    r"share one split .*same out-of-fold set .*same holdout; set it once under train:"),
    ("launch", first_trial_sets_val_fraction, r"first_trials\[0\]\.val_fraction: 'val_fraction' cannot be searched "
                                              r".*set it once under train: instead"),
    ("train", train_config_in_a_pipe, r"/63: 'epochs' must be int, got 'many'"),
    ("launch", sweep_config_in_a_pipe, r"/63: 'num_samples' must be at least 1, got 0"),
    ("train", config_is_a_folder, r"config file .* is a folder; give the YAML file itself"),
    ("launch", config_missing, r"config file .*nowhere\.yaml does not exist"),
]


@pytest.mark.parametrize("command, build, message", SPLIT_AND_PIPE_CASES,
                         ids=[c[1].__name__ for c in SPLIT_AND_PIPE_CASES])
def test_a_split_or_config_path_mistake_is_one_named_error_line(tmp_path, synthetic_data, capsys, command, build,
                                                                 message):
    test_a_mistake_is_one_named_error_line(tmp_path, synthetic_data, capsys, command, build, message)


def test_a_searched_split_setting_is_refused_before_ray_starts(tmp_path, synthetic_data, capsys, monkeypatch):
    import ray

    def no_ray(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started for a sweep config that must be refused first")

    monkeypatch.setattr(ray, "init", no_ray)
    code, stderr = lungsweep(capsys, *searched_split_seed(tmp_path, synthetic_data))
    assert code == 2 and "split_seed" in stderr.strip().splitlines()[-1]
    assert not (tmp_path / "sweep").exists(), "nothing written for a refused sweep"


def test_a_config_in_a_pipe_is_read(tmp_path, synthetic_data):
    from search import load_sweep_config
    from trainers import merge_config

    (tmp_path / "a").mkdir()
    assert merge_config(pipe(tmp_path / "a", f"data: {synthetic_data}\nepochs: 3\n")).epochs == 3
    (tmp_path / "b").mkdir()
    sweep = sweep_yaml(tmp_path / "s.yaml", synthetic_data, num_samples=5).read_text()
    assert load_sweep_config(pipe(tmp_path / "b", sweep)).num_samples == 5


# --- the main job and the commands that write beside the data: named before Ray starts, nothing written ------


def data_copy(tmp: Path) -> Path:
    """A small class-folder dataset of this case's own (a regression must not write into the shared one)."""
    from tests_support import two_class_folder

    return two_class_folder(tmp, ("CT_COVID", "CT_NonCOVID"))


def run_out_in_a_class_folder(tmp: Path, data: Path) -> list[str]:
    folder = data_copy(tmp)
    return ["run", "--data", str(folder), "--out", str(folder / "CT_COVID" / "job")]


def run_out_is_the_data(tmp: Path, data: Path) -> list[str]:
    folder = data_copy(tmp)
    return ["run", "--data", str(folder), "--out", str(folder)]


def train_out_in_the_data(tmp: Path, data: Path) -> list[str]:
    folder = data_copy(tmp)
    return ["train", "--data", str(folder), "--out", str(folder / "run")]


def launch_out_in_the_data(tmp: Path, data: Path) -> list[str]:
    folder = data_copy(tmp)
    return ["launch", "--data", str(folder), "--out", str(folder / "sweep")]


def audit_html_in_the_data(tmp: Path, data: Path) -> list[str]:
    folder = data_copy(tmp)
    return ["audit", str(folder), "--html", str(folder / "reports" / "audit.html")]


def audit_out_is_a_folder(tmp: Path, data: Path) -> list[str]:
    (tmp / "reports").mkdir()
    return ["audit", str(data), "--out", str(tmp / "reports")]


def audit_html_is_a_folder(tmp: Path, data: Path) -> list[str]:
    (tmp / "reports").mkdir()
    return ["audit", str(data), "--html", str(tmp / "reports")]


def run_data_missing(tmp: Path, data: Path) -> list[str]:
    return ["run", "--data", str(tmp / "nowhere"), "--out", str(tmp / "job")]


def launch_data_missing(tmp: Path, data: Path) -> list[str]:
    return ["launch", "--data", str(tmp / "nowhere"), "--out", str(tmp / "sweep")]


def launch_one_class(tmp: Path, data: Path) -> list[str]:
    return ["launch", "--data", str(run_one_class(tmp, data)[2]), "--out", str(tmp / "sweep")]


def run_manifest_missing(tmp: Path, data: Path) -> list[str]:
    return ["run", "--manifest", str(tmp / "nowhere.csv"), "--out", str(tmp / "job")]


def run_one_class(tmp: Path, data: Path) -> list[str]:
    folder = data_copy(tmp)
    for image in (folder / "CT_NonCOVID").iterdir():
        image.unlink()
    (folder / "CT_NonCOVID").rmdir()
    return ["run", "--data", str(folder), "--out", str(tmp / "job")]


def run_no_images(tmp: Path, data: Path) -> list[str]:
    (tmp / "empty" / "CT_COVID").mkdir(parents=True)
    (tmp / "empty" / "CT_NonCOVID").mkdir()
    return ["run", "--data", str(tmp / "empty"), "--out", str(tmp / "job")]


def run_more_folds_than_groups(tmp: Path, data: Path) -> list[str]:
    config = sweep_yaml(tmp / "s.yaml", data, cv_folds=20)
    return ["run", "--config", str(config), "--data", str(data), "--out", str(tmp / "job")]


def run_single_split(tmp: Path, data: Path) -> list[str]:
    config = sweep_yaml(tmp / "s.yaml", data)  # no cv_folds: one validation split, no out-of-fold predictions
    return ["run", "--config", str(config), "--data", str(data), "--out", str(tmp / "job")]


INSIDE_DATA = r"is inside the data folder .*: what lungsweep \w+ writes there would be taken for a class folder"
BEFORE_RAY_CASES = [
    ("run", run_out_in_a_class_folder, r"--out .*/two/CT_COVID/job " + INSIDE_DATA + r".*give a path outside it"),
    ("run", run_out_is_the_data, r"--out .*/two " + INSIDE_DATA),
    ("train", train_out_in_the_data, r"--out .*/two/run " + INSIDE_DATA),
    ("launch", launch_out_in_the_data, r"--out .*/two/sweep " + INSIDE_DATA),
    ("audit", audit_html_in_the_data, r"--html .*/two/reports/audit\.html " + INSIDE_DATA),
    ("audit", audit_out_is_a_folder, r"--out .*/reports is a folder, but --out names the audit\.json file to write; "
                                     r"give a file path, e\.g\. .*/reports/audit\.json"),
    ("audit", audit_html_is_a_folder, r"--html .*/reports is a folder, but --html names the audit\.html file"),
    ("run", run_data_missing, r"data folder .*/nowhere does not exist"),
    ("launch", launch_data_missing, r"data folder .*/nowhere does not exist"),
    ("launch", launch_one_class, r"/two holds one class only \(CT_COVID\)"),
    ("run", run_manifest_missing, r"manifest .*/nowhere\.csv does not exist"),
    ("run", run_one_class, r"/two holds one class only \(CT_COVID\)"),
    ("run", run_no_images, r"class folder .*/empty/CT_COVID holds no PNG or JPEG images"),
    ("run", run_more_folds_than_groups, r"cannot make 20 cross-validation folds: class 'CT_\w+' has only \d+ "
                                        r"group\(s\) outside the holdout.*use cv_folds <= \d+"),
    ("run", run_single_split, r"s\.yaml: cv_folds is 1, but the main job .* out-of-fold predictions of group k-fold "
                              r"bags, so it needs cv_folds >= 2 .*`lungsweep launch` .*`lungsweep ensemble`"),
]


def files_under(*folders: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for folder in folders for p in folder.rglob("*")}


@pytest.mark.parametrize("command, build, message", BEFORE_RAY_CASES, ids=[c[1].__name__ for c in BEFORE_RAY_CASES])
def test_a_bad_input_is_named_before_ray_starts_and_writes_nothing(tmp_path, synthetic_data, capsys, monkeypatch,
                                                                    command, build, message):
    import ray

    def no_ray(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started for an input that must be refused first")

    monkeypatch.setattr(ray, "init", no_ray)
    argv = build(tmp_path, synthetic_data)
    before = files_under(tmp_path, synthetic_data)
    test_a_mistake_is_one_named_error_line(tmp_path, synthetic_data, capsys, command, build=lambda *_: argv,
                                           message=message)
    assert files_under(tmp_path, synthetic_data) == before, "nothing is written for a refused command"


# --- files the data check must describe rightly ------------------------------------------------


def with_a_truncated_dicom(tmp: Path, data: Path) -> list[str]:
    """A DICOM file cut short (150 bytes: preamble and 'DICM' intact) among good images."""
    import shutil

    from pydicom.data import get_testdata_file

    root = tmp / "data"
    shutil.copytree(data, root)
    (root / "CT_COVID" / "cut.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes()[:150])
    return ["train", "--data", str(root), "--out", str(tmp / "run")]


@pytest.mark.parametrize("command, build, message", [
    ("train", with_a_truncated_dicom, r"cut\.dcm: DICOM file is truncated: it ends after 150 bytes.*copy it again"),
], ids=["truncated_dicom"])
def test_a_damaged_file_is_named_for_what_it_is(tmp_path, synthetic_data, capsys, command, build, message):
    test_a_mistake_is_one_named_error_line(tmp_path, synthetic_data, capsys, command, build, message)


def test_two_scans_alike_only_as_thumbnails_are_not_called_one_image_labelled_twice(tmp_path, synthetic_data,
                                                                                    capsys):
    """Two different scans, one per class, whose 64 px hash decodes coincide: `lungsweep audit` reports no error
    (they stay a near-duplicate pair), where it once refused them as identical pixels."""
    import shutil

    import numpy as np
    from PIL import Image

    from trainers import decode_image

    root = tmp_path / "data"
    shutil.copytree(synthetic_data, root)
    scan = np.random.default_rng(3).normal(90, 25, size=(256, 256)).clip(0, 255).astype(np.uint8)
    other = scan.copy()
    other[100:104:2, 60:64:2] += 1  # four pixels one level brighter: averaged away at 64 px
    Image.fromarray(scan).save(root / "CT_COVID" / "twin%0.png")
    Image.fromarray(other).save(root / "CT_NonCOVID" / "twin%0.png")
    a, b = root / "CT_COVID" / "twin%0.png", root / "CT_NonCOVID" / "twin%0.png"
    np.testing.assert_array_equal(decode_image(a, 64), decode_image(b, 64))
    code, stderr = lungsweep(capsys, "audit", str(root), "--out", str(tmp_path / "audit.json"))
    report = json.loads((tmp_path / "audit.json").read_text())
    assert code == 0 and not report["errors"] and report["cross_class_duplicates"] == [], stderr
