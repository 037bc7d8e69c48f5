"""Export and predict on a tiny real ensemble: two members trained here, at two image sizes.

The members are trained by trainers.train (real torch) and listed in a results table
as a sweep would list them, so `build_ensemble` and `export_model` read exactly what
they read after `lungsweep launch` (the Ray path is covered by test_end_to_end.py).
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tests_support import make_dataset, tiny_config

from ensemble.artifact import ArtifactError, ExportedModel
from ensemble.build import EnsembleSettings, build_ensemble
from ensemble.calibration import CALIBRATORS
from ensemble.errors import EnsembleError
from ensemble.export import export_model
from ensemble.graph import EnsembleGraph, GraphMember
from ensemble.members import holdout_predictions, pick_members
from ensemble.model import EnsembleModel
from ensemble.pipeline import EnsemblePipeline
from trainers import decode_image, train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A sweep folder with three trained trials: 32 px (two seeds) and 40 px."""
    root = tmp_path_factory.mktemp("export")
    data = make_dataset(root / "train", groups_per_class=12, per_group=2, seed=4)
    sweep = root / "sweep"
    rows = []
    for rank, (trial, size, seed) in enumerate([("a32", 32, 0), ("b40", 40, 1), ("c32", 32, 2)], start=1):
        cfg = tiny_config(data, image_size=size, seed=seed, epochs=4, num_threads=1, holdout_fraction=0.3)
        result = train(cfg, sweep / f"trial_{trial}")
        rows.append({"rank": rank, "trial_id": trial, "status": "completed",
                     "best_metric": result.best_metrics["val_auc"], "checkpoint": str(sweep / f"trial_{trial}" / "best")})
    pd.DataFrame(rows).to_parquet(sweep / "results.parquet")
    return sweep


@pytest.fixture(scope="module")
def ens_dir(sweep_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ens") / "ens"
    build_ensemble(sweep_dir, out, EnsembleSettings(method="mean", calibration="temperature", members=3,
                                                     tta=True, n_splits=3, n_boot=50))
    return out


@pytest.fixture(scope="module")
def model_dir(ens_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "model"
    export_model(ens_dir, out)
    return out


def new_images(root: Path, sizes: list[int], n: int = 9) -> dict[int, np.ndarray]:
    folder = make_dataset(root, groups_per_class=3, per_group=2, seed=21)
    paths = sorted(folder.rglob("*.*"))[:n]
    return {s: np.stack([decode_image(p, s) for p in paths]) for s in sizes}


def reference_proba(model: EnsembleModel, images: dict[int, np.ndarray]) -> np.ndarray:
    return model.predict_proba(model.margins_for_images(images, device=CPU))


@pytest.mark.parametrize("method", ["mean", "greedy", "stack"])
@pytest.mark.parametrize("calibration", sorted(CALIBRATORS))
def test_graph_computes_what_the_pipeline_computes(sweep_dir, tmp_path, method, calibration):
    members = pick_members(sweep_dir, top=3)
    preds = holdout_predictions(members)
    pipe = EnsemblePipeline(method=method, calibration=calibration, n_splits=3).fit(preds.margins, preds.y, preds.groups)
    loaded = EnsembleModel.load  # members as the ensemble folder would load them
    refs = [loaded(m.checkpoint).members[0] for m in members]
    model = EnsembleModel(members=refs, pipeline=pipe, tta=method == "stack", classes=["a", "b"], positive="a",
                          manifest={})
    graph = EnsembleGraph([GraphMember(r.trial_id, r.model, r.prep) for r in refs], pipe, tta=model.tta)
    images = new_images(tmp_path / "new", sorted({r.prep.image_size for r in refs}))
    with torch.no_grad():  # a member the combiner gives no weight is left out, with its input if it was alone
        got = graph.eval()(*(torch.from_numpy(images[s]).unsqueeze(1) for s in graph.image_sizes)).numpy()
    np.testing.assert_allclose(got, reference_proba(model, images), atol=1e-6)


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
    exported = ExportedModel.load(tmp_path / "best")
    images = new_images(tmp_path / "new", [40])
    reference = EnsembleModel.load(sweep_dir / "trial_b40" / "best")
    np.testing.assert_allclose(exported.predict_proba(images), reference_proba(reference, images), atol=1e-4)

    # a `lungsweep train` run folder exports its best checkpoint
    run = export_model(sweep_dir / "trial_a32", tmp_path / "run", n_boot=50)
    assert run["ensemble"]["members"] == ["trial_a32"] and run["provenance"]["run"].endswith("trial_a32")

    with pytest.raises(EnsembleError, match="trial 'nope' is not in .*; trials there: a32, b40, c32"):
        export_model(sweep_dir, tmp_path / "x", trial="nope")
    assert not (tmp_path / "x").exists()


def copy_of(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "copy"))


def test_altered_truncated_or_incomplete_artifacts_are_refused(model_dir, tmp_path):
    altered = copy_of(model_dir, tmp_path / "1")
    data = bytearray((altered / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (altered / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.onnx does not match its sha256"):
        ExportedModel.load(altered)

    truncated = copy_of(model_dir, tmp_path / "2")
    (truncated / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"model\.onnx is 1000 bytes, the manifest says \d+: the file is truncated"):
        ExportedModel.load(truncated)

    incomplete = copy_of(model_dir, tmp_path / "3")
    manifest = json.loads((incomplete / "manifest.json").read_text())
    del manifest["threshold"], manifest["files"]
    (incomplete / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"manifest\.json lacks the key\(s\) \['threshold', 'files'\]"):
        ExportedModel.load(incomplete)

    garbled = copy_of(model_dir, tmp_path / "5")
    manifest = json.loads((garbled / "manifest.json").read_text())
    del manifest["inputs"][0]["image_size"]
    (garbled / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"manifest\.json has a malformed entry \(KeyError\('image_size'\)\)"):
        ExportedModel.load(garbled)

    missing = copy_of(model_dir, tmp_path / "4")
    (missing / "metrics.json").unlink()
    with pytest.raises(ArtifactError, match=r"metrics\.json is missing"):
        ExportedModel.load(missing)


def lungsweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lungsweep", *args], capture_output=True, text=True)


def test_wrong_folders_get_a_message_that_says_what_to_give(ens_dir, sweep_dir, tmp_path):
    with pytest.raises(ArtifactError, match="is an ensemble or checkpoint folder, not an exported model; run `lungsweep export"):
        ExportedModel.load(ens_dir)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="exists and is not a MODEL_DIR"):
        export_model(ens_dir, precious)
    with pytest.raises(EnsembleError, match="exists and is not an ensemble folder"):
        build_ensemble(sweep_dir, precious, EnsembleSettings())
    assert (precious / "notes.txt").read_text() == "keep me"


def test_pickles_are_refused_as_models(sweep_dir, tmp_path):
    model, _ = torch.nn.Linear(2, 2), None
    pickled = tmp_path / "model.pth"
    torch.save(model, pickled)
    image = next((sweep_dir.parent / "train" / "CT_COVID").iterdir())
    for command in (["predict", str(pickled), str(image)], ["evaluate", str(pickled), "--data", str(tmp_path)],
                    ["export", str(pickled), "--out", str(tmp_path / "m")]):
        done = lungsweep(*command)
        assert done.returncode == 2, done.stderr
        assert f"{pickled} is a pickle file (.pth); lungsweep never loads pickles" in done.stderr


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
    images = exported.stack([exported.decode(r["path"]) for r in good])
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
    from ensemble.evaluate import evaluate

    folder = make_dataset(tmp_path / "new", groups_per_class=4, per_group=2, seed=9)
    from_model = evaluate(model_dir, folder, n_boot=50)
    from_ens = evaluate(ens_dir, folder, n_boot=50)
    assert set(from_model) == set(from_ens)
    for key in ("auc", "brier", "accuracy"):
        assert from_model[key]["value"] == pytest.approx(from_ens[key]["value"], abs=1e-4)


def test_no_pickle_on_any_load_path_in_the_source():
    root = Path(__file__).resolve().parents[2]
    loads = []
    for path in sorted(p for pkg in ("trainers", "search", "ensemble", "lungsweep") for p in (root / pkg).rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for call in ("torch.load(", "pickle.load(", "pickle.loads(", "jit.load(", "allow_pickle=True"):
                if call in code:
                    loads.append((path.relative_to(root).as_posix(), call, "weights_only=True" in code))
    assert loads == [
        ("ensemble/artifact.py", "jit.load(", False),  # TorchScript's restricted loader, after the sha256 check
        ("trainers/pretrained.py", "torch.load(", True),  # third-party .pth state dicts only
    ]
