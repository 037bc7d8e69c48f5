"""`lungsweep export`: the ONNX model agrees with the ensemble folder; manifest; single trials; TorchScript.

The sweep, ensemble and exported folders are the session's (conftest.py).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tests_support import new_images, reference_proba

from ensemble import ArtifactError, EnsembleError, EnsembleModel, ExportedModel, export_model


def test_onnx_model_agrees_with_the_ensemble_folder(ens_dir, model_dir, tmp_path):
    reference = EnsembleModel.load(ens_dir)
    exported = ExportedModel.load(model_dir)
    assert exported.image_sizes == [32, 40]
    images = new_images(tmp_path / "new", exported.image_sizes)
    expected = reference_proba(reference, images)
    got = exported.predict_proba(images)
    assert np.max(np.abs(got - expected)) <= 1e-4
    # dynamic batch: one image at a time gives the same numbers
    one_by_one = [exported.predict_proba({s: a[k : k + 1] for s, a in images.items()})[0] for k in range(len(got))]
    np.testing.assert_allclose(one_by_one, got, atol=1e-6)

    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["parity"]["max_abs_diff"] <= 1e-4 and manifest["parity"]["source"] == "holdout images"
    assert manifest["threshold"] == pytest.approx(reference.threshold)
    assert manifest["classes"] == reference.classes and manifest["positive"] == "CT_COVID"
    assert set(manifest["files"]) == {"model.onnx", "metrics.json", "report.html"}
    assert {"value", "ci_low", "ci_high"} <= set(manifest["metrics"]["auc"])
    assert manifest["preprocessing"]["members"]["b40"]["image_size"] == 40
    assert manifest["provenance"]["data_fingerprint"] and manifest["provenance"]["exported_with"]["onnxruntime"]
    assert manifest["ensemble"]["tta"] is True and manifest["ensemble"]["members"] == ["a32", "b40", "c32"]
    # what an image costs: three one-model members, each run on the image and its mirror (TTA)
    assert manifest["cost"]["networks"] == 3 and manifest["cost"]["forward_passes_per_image"] == 6
    assert manifest["cost"]["ms_per_image"] > 0 and "CPU core" in manifest["cost"]["measured_on"]

    import onnx

    graph = onnx.load(str(model_dir / "model.onnx"))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["image_32", "image_40"]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis


def test_single_trial_export_and_torchscript(sweep_dir, tmp_path):
    manifest = export_model(sweep_dir, tmp_path / "best", trial="b40", fmt="torchscript", n_boot=50)
    assert manifest["kind"] == "single" and manifest["threshold"] == 0.5
    assert "trial b40 (rank 2 of the sweep) on its holdout split" in manifest["metrics"]["data"]
    assert manifest["ensemble"]["members"] == ["b40"] and manifest["model_file"] == "model.torchscript"
    assert manifest["provenance"]["members"][0]["checkpoint"] == str((sweep_dir / "trial_b40" / "best").resolve())
    exported = ExportedModel.load(tmp_path / "best")
    images = new_images(tmp_path / "new", [40])
    reference = EnsembleModel.load(sweep_dir / "trial_b40" / "best")
    np.testing.assert_allclose(exported.predict_proba(images), reference_proba(reference, images), atol=1e-4)

    # a `lungsweep train` run folder exports its best checkpoint
    run = export_model(sweep_dir / "trial_a32", tmp_path / "run", n_boot=50)
    assert run["ensemble"]["members"] == ["trial_a32"] and run["provenance"]["run"].endswith("trial_a32")
    assert run["provenance"]["members"][0]["checkpoint"] == str((sweep_dir / "trial_a32" / "best").resolve())
    whole_run = EnsembleModel.load(sweep_dir / "trial_a32")  # the run folder loads its best/, as predict does
    assert whole_run.members[0].folder == sweep_dir / "trial_a32" / "best"

    with pytest.raises(EnsembleError, match="trial 'nope' is not in .*; trials there: a32, b40, c32"):
        export_model(sweep_dir, tmp_path / "x", trial="nope")
    assert not (tmp_path / "x").exists()


def test_a_member_record_without_its_holdout(ens_dir, tmp_path):
    """A member whose checkpoint.json was edited (no stored predictions): its ENS_DIR still exports, since the
    ensemble's own holdout_predictions.csv names the parity images; that member alone gets one named error that
    says which folder, and nothing written."""
    damaged = tmp_path / "ens"
    shutil.copytree(ens_dir, damaged)
    first = json.loads((damaged / "ensemble.json").read_text())["provenance"]["members"][0]["trial_id"]
    meta_file = damaged / "members" / first / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    del meta["predictions"]
    meta_file.write_text(json.dumps(meta))
    manifest = export_model(damaged, tmp_path / "ens_model", n_boot=50)
    assert manifest["parity"]["source"] == "holdout images" and manifest["parity"]["images"] > 0
    with pytest.raises(EnsembleError, match=f"members/{first}: its record holds no stored holdout predictions"):
        export_model(damaged / "members" / first, tmp_path / "model", n_boot=50)
    assert not (tmp_path / "model").exists()


def test_a_zero_weight_member_alone_at_its_size(ens_dir, tmp_path):
    """A greedy ensemble that gives no weight to its one 40 px member (b40): the graph leaves b40 out and takes
    32 px images only, while the in-process reference still runs every member, so the parity images are
    decoded at 40 px too; the export agrees with the reference and says which member it left out."""
    from ensemble.fit.combine import make_combiner

    greedy = make_combiner("greedy")
    greedy.n_members_, greedy.best_iter_ = 3, 2
    greedy.weights_, greedy.selected_ = np.array([0.5, 0.0, 0.5]), np.array([0, 2])
    greedy.scores_ = np.array([0.6, 0.5])
    folder = tmp_path / "ens"
    shutil.copytree(ens_dir, folder)
    record = json.loads((folder / "ensemble.json").read_text())
    assert record["members"] == ["a32", "b40", "c32"]
    record["pipeline"]["combiner"] = greedy.to_dict()
    (folder / "ensemble.json").write_text(json.dumps(record))

    manifest = export_model(folder, tmp_path / "model", n_boot=50)
    assert manifest["ensemble"]["members"] == ["a32", "c32"]
    assert manifest["ensemble"]["left_out_with_zero_weight"] == ["b40"]
    assert [i["image_size"] for i in manifest["inputs"]] == [32]
    assert manifest["parity"]["source"] == "holdout images" and manifest["parity"]["max_abs_diff"] <= 1e-4
    images = new_images(tmp_path / "new", [32, 40])
    expected = reference_proba(EnsembleModel.load(folder), images)
    np.testing.assert_allclose(ExportedModel.load(tmp_path / "model").predict_proba(images), expected, atol=1e-4)


def test_a_damaged_scored_predictions_file_is_named(ens_dir, tmp_path):
    """holdout_predictions.csv without its id column: one named error from reading the folder, naming the file."""
    damaged = tmp_path / "ens"
    shutil.copytree(ens_dir, damaged)
    (damaged / "holdout_predictions.csv").write_text("group,label\na,1\n")
    with pytest.raises(EnsembleError, match=r"holdout_predictions.csv has no 'id' column; run `lungsweep ensemble`"):
        export_model(damaged, tmp_path / "model", n_boot=50)
    assert not (tmp_path / "model").exists()
