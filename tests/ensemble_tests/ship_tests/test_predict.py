"""`lungsweep predict` and `evaluate` on an exported model."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from tests_support import lungsweep, make_dataset

from ensemble import ExportedModel, decode_for, stack_for


def test_predict_streams_a_folder_and_reports_bad_images(model_dir, tmp_path):
    folder = make_dataset(tmp_path / "new", groups_per_class=4, per_group=2, seed=8)
    (folder / "CT_COVID" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "preds.csv"
    done = lungsweep("predict", str(model_dir), "--data", str(folder), "--out", str(out), "--batch-size", "5")
    assert done.returncode == 1, done.stderr
    assert "1 image(s) could not be read" in done.stderr and "broken.png" in done.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 17
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("broken.png") and bad[0]["probability"] == ""

    good = [r for r in rows if not r["error"]]
    exported = ExportedModel.load(model_dir)
    images = stack_for(exported, [decode_for(exported, r["path"]) for r in good])
    expected = exported.predict_proba(images)
    np.testing.assert_allclose([float(r["probability"]) for r in good], expected, atol=1e-6)
    labels = ["CT_COVID" if p >= exported.threshold else "CT_NonCOVID" for p in expected]
    assert [r["label"] for r in good] == labels
    positives = [r for r in good if "/CT_COVID/" in r["path"]]
    assert np.mean([float(r["probability"]) for r in positives]) > np.mean(
        [float(r["probability"]) for r in good if r not in positives])

    done = lungsweep("predict", str(model_dir), str(tmp_path / "typo.png"))
    assert done.returncode == 2 and "typo.png is neither an image file nor a folder" in done.stderr


def test_evaluate_reads_model_dir_with_the_ensemble_folders_keys(ens_dir, model_dir, tmp_path):
    from ensemble import evaluate

    folder = make_dataset(tmp_path / "new", groups_per_class=4, per_group=2, seed=9)
    from_model = evaluate(model_dir, folder, n_boot=50)
    from_ens = evaluate(ens_dir, folder, n_boot=50)
    assert set(from_model) == set(from_ens)
    for key in ("auc", "brier", "accuracy"):
        assert from_model[key]["value"] == pytest.approx(from_ens[key]["value"], abs=1e-4)
