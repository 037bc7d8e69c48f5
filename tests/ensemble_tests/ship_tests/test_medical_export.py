"""DICOM end to end: train on a series folder, export, predict and evaluate with the recorded window and slices."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from medical_support import marked_slice, write_dicom
from tests_support import tiny_config

from ensemble import ExportedModel, evaluate, export_model, find_images, predict
from trainers import discover, load_images, train


@pytest.fixture(scope="module")
def dicom_tree(tmp_path_factory):
    """8 patients per class, one 3-slice CT series each; positives hold a soft-tissue blob, files have no suffix."""
    root = tmp_path_factory.mktemp("dicom") / "train"
    rng = np.random.default_rng(0)
    for c, name in enumerate(("CT_COVID", "CT_NonCOVID")):
        for g in range(8):
            for k in range(3):
                hu = marked_slice(-800.0, 40) + rng.normal(0, 30, (40, 40))
                if c == 0:
                    hu[8:16, 20:30] = 40.0
                write_dicom(root / name / f"pt{g}" / f"IM{k:04d}", hu, patient=f"{name}-{g}",
                            series=f"1.2.3.{c}.{g}", number=k + 1, z=float(k))
    return root


def test_dicom_train_export_predict_evaluate_share_one_decoding(dicom_tree, tmp_path):
    # the generated slices differ only by noise: as near-duplicates they would all merge into one group
    cfg = tiny_config(dicom_tree, window="mediastinum", slices="all", epochs=2, batch_size=8, num_threads=1,
                      merge_duplicates=False)
    train(cfg, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "best" / "checkpoint.json").read_text())
    assert meta["preprocessing"]["window"] == "mediastinum" and meta["preprocessing"]["slices"] == "all"

    export_model(tmp_path / "run", tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["preprocessing"]["window"] == "mediastinum"
    assert manifest["preprocessing"]["slices"] == "all"
    assert manifest["parity"]["source"] == "holdout images", "export re-read the training DICOMs by id and slice"

    model = ExportedModel.load(tmp_path / "model")
    files = find_images([dicom_tree])
    assert len(files) == 48 and all(f.suffix == "" for f in files)
    summary = predict(model, files, out=tmp_path / "p.csv", progress=False)
    assert summary.predicted == 48 and not summary.bad
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))

    ds = discover(data=dicom_tree, slices="all")
    arrays = {s: load_images(ds, s, fingerprint=ds.fingerprint(), progress=False, window="mediastinum").array
              for s in model.image_sizes}
    expected = dict(zip((str(dicom_tree / i) for i in ds.ids), model.predict_proba({s: np.asarray(a) for s, a in arrays.items()})))
    for row in rows:
        assert float(row["probability"]) == pytest.approx(expected[row["path"]], abs=1e-5), row["path"]

    metrics = evaluate(tmp_path / "model", dicom_tree, n_boot=20)
    assert metrics["n"] == 48 and "16 groups" in metrics["data"]
