"""Exported models are refused when altered, truncated or incomplete; pickles and wrong folders are refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tests_support import lungsweep
from trainers import LungsweepError

from ensemble import (
    ArtifactError, EnsembleError, EnsembleModel, EnsembleSettings, ExportedModel, build_ensemble, export_model,
)


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
    with pytest.raises(ArtifactError, match=r"manifest\.json lacks key\(s\) \['threshold', 'files'\]"):
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


def test_wrong_folders_get_a_message_that_says_what_to_give(ens_dir, sweep_dir, tmp_path):
    with pytest.raises(ArtifactError, match=r"is an ensemble folder \(ENS_DIR\), not an exported model; run `lungsweep export"):
        ExportedModel.load(ens_dir)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="exists and is not a MODEL_DIR"):
        export_model(ens_dir, precious)
    with pytest.raises(EnsembleError, match="exists and is not an ensemble folder"):
        build_ensemble(sweep_dir, precious, EnsembleSettings())
    assert (precious / "notes.txt").read_text() == "keep me"


def test_the_torch_loader_names_the_folders_it_cannot_load(ens_dir, sweep_dir, model_dir, tmp_path):
    # EnsembleModel.load tells the kind through kind_of, as predict, explain and export do
    with pytest.raises(EnsembleError, match=r"is a sweep folder \(RUN_DIR of `lungsweep launch`\), which holds no torch"):
        EnsembleModel.load(sweep_dir)
    with pytest.raises(EnsembleError, match=r"is an exported model \(MODEL_DIR\), which holds no torch ensemble"):
        EnsembleModel.load(model_dir)
    with pytest.raises(LungsweepError, match="none of the folders lungsweep writes"):
        EnsembleModel.load(tmp_path)
    with pytest.raises(ArtifactError, match=r"is an ensemble folder \(ENS_DIR\); --trial is for a sweep folder"):
        export_model(ens_dir, tmp_path / "m", trial="best")


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


def test_no_pickle_on_any_load_path_in_the_source():
    root = Path(__file__).resolve().parents[3]
    loads = []
    for path in sorted(p for pkg in ("trainers", "search", "ensemble", "lungsweep") for p in (root / pkg).rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for call in ("torch.load(", "pickle.load(", "pickle.loads(", "jit.load(", "allow_pickle=True"):
                if call in code:
                    loads.append((path.relative_to(root).as_posix(), call, "weights_only=True" in code))
    assert loads == [
        ("ensemble/runtime/exported.py", "jit.load(", False),  # TorchScript's restricted loader, after the sha256 check
        ("trainers/models/pretrained.py", "torch.load(", True),  # third-party .pth state dicts only
    ]
