"""The console script, run as a user runs it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tests_support import SHARED_DATA

from trainers import infer_group


def lungsweep(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lungsweep", *args], capture_output=True, text=True, env=env)


def test_train_smoke_on_a_handful_of_real_covid_ct_images(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared COVID-CT data not found at {SHARED_DATA}")
    rows = ["path,label"]
    for label in ("CT_COVID", "CT_NonCOVID"):
        files = sorted((SHARED_DATA / label).iterdir())
        # one image per group, so the handful spans ten patients per class
        by_group: dict[str, str] = {}
        for f in files:
            by_group.setdefault(infer_group(f.name), str(f))
        rows += [f"{path},{label}" for path in sorted(by_group.values())[:10]]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "c.yaml").write_text(
        f"manifest: {tmp_path / 'm.csv'}\nval_fraction: 0.3\nholdout_fraction: 0.0\nprogress: false\n"
    )
    out = tmp_path / "run"
    done = lungsweep("train", "--config", str(tmp_path / "c.yaml"), "--out", str(out),
                     "--model", "test_resnet", "--image-size", "48", "--epochs", "2", "--batch-size", "8")
    assert done.returncode == 0, done.stderr
    assert "best epoch" in done.stdout
    meta = json.loads((out / "best" / "checkpoint.json").read_text())
    assert meta["positive"] == "CT_COVID" and meta["preprocessing"]["image_size"] == 48
    assert (out / "best" / "model.safetensors").stat().st_size > 10_000
    assert len(meta["predictions"]["val"]) >= 4


def test_cli_reports_one_clear_error_line(tmp_path):
    done = lungsweep("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("lungsweep train: error: data folder")
    assert "Traceback" not in done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    done = lungsweep("train", "--config", str(bad), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "unknown key 'epochz'" in done.stderr
