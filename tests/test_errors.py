"""Every user mistake of issue 14 is one named line on stderr, exit code 2, no traceback.

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
    from ensemble.artifact import MANIFEST, MODEL_FORMAT, REQUIRED_KEYS

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


def uri_without_sweep(tmp: Path, data: Path) -> list[str]:
    return ["ensemble", f"file://{tmp}/bucket/nowhere", "--out", str(tmp / "ens")]


def uri_of_unknown_scheme(tmp: Path, data: Path) -> list[str]:
    return ["export", "nosuchfs://bucket/sweep", "--trial", "best", "--out", str(tmp / "model")]


CASES = [
    ("train", out_is_a_file, r"--out .*taken is an existing file, not a folder"),
    ("launch", train_as_a_list, r"'train' must be a mapping .* got a list"),
    ("launch", unreachable_address, r"cannot reach a Ray cluster at --address '127\.0\.0\.1:\d+'.*ray start --head"),
    ("launch", bad_study_storage, r"study_storage 'nosuchdb://user@host/study' cannot be opened"),
    ("predict", manifest_entry_without_sha, r"manifest\.json: the entry for 'model\.onnx' lacks 'bytes' or 'sha256'"),
    ("export", ensemble_json_without_pipeline, r"ensemble\.json lacks key\(s\) \['pipeline'\].*lungsweep ensemble"),
    ("export", ensemble_json_not_json, r"ensemble\.json is damaged \(not valid JSON"),
    ("ensemble", checkpoint_without_split, r"checkpoint\.json lacks 'split'.*run the sweep again"),
    ("ensemble", checkpoint_without_predictions, r"checkpoint\.json lacks 'predictions'"),
    ("ensemble", members("0"), r"--members must be a whole number of at least 1, got 0"),
    ("ensemble", members("-3"), r"--members must be a whole number of at least 1, got -3"),
    ("run", members("0", "run"), r"--members must be a whole number of at least 1, got 0"),
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
