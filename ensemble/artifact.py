"""MODEL_DIR, the exported artifact: verified before it is run, run without pickle.

    model = ExportedModel.load("runs/model")            # checks manifest keys and every file's sha256
    images = model.decode("scan.png")                   # {image_size: (S, S) uint8}, trainers.decode_image
    p = model.predict_proba(model.stack([images]))      # calibrated P(positive)

MODEL_DIR/manifest.json lists every other file with its sha256 and size; a file
that is missing, truncated or altered is refused before any runtime opens it.
This module owns MODEL_DIR's names and its manifest (`write_manifest`, `read_manifest`);
ensemble.export writes the rest of the folder through them.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainers.data import decode_image_sizes, file_sha256
from trainers.errors import LungsweepError
from trainers.records import read_record_file

__all__ = [
    "ArtifactError", "ExportedModel", "MANIFEST", "MODEL_FORMAT", "REQUIRED_KEYS", "is_model_folder",
    "read_manifest", "refuse_pickle", "verify_files", "write_manifest", "PICKLE_SUFFIXES",
]

MANIFEST = "manifest.json"
MODEL_FORMAT = "lungsweep-model/1"
REQUIRED_KEYS = (
    "format", "model_file", "model_format", "inputs", "output", "classes", "positive", "threshold",
    "preprocessing", "metrics", "provenance", "files",
)
log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


class ArtifactError(LungsweepError, ValueError):
    """MODEL_DIR is missing, incomplete, altered or not ours."""


def refuse_pickle(path: Path) -> None:
    """A PyTorch pickle offered as a model: say why it is not loaded and what to give instead."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ArtifactError(
            f"{path} is a pickle file ({path.suffix}); lungsweep never loads pickles as models, because "
            "unpickling can run arbitrary code. Give a MODEL_DIR written by `lungsweep export` "
            "(ONNX + manifest.json), or a checkpoint folder with model.safetensors"
        )


@dataclass(frozen=True)
class ModelInput:
    name: str
    image_size: int


class ExportedModel:
    """A verified MODEL_DIR with its runtime (onnxruntime, or TorchScript when exported so)."""

    def __init__(self, folder: Path, manifest: dict[str, Any], runner: Any) -> None:
        self.folder, self.manifest, self._run = folder, manifest, runner
        self.inputs = [ModelInput(i["name"], int(i["image_size"])) for i in manifest["inputs"]]
        self.classes: list[str] = list(manifest["classes"])
        self.positive: str = manifest["positive"]
        self.negative = next(c for c in self.classes if c != self.positive)
        self.threshold = float(manifest["threshold"])
        # DICOM / NIfTI reading as trained; a manifest without these keys holds a PNG/JPEG model
        self.window = manifest["preprocessing"].get("window", "auto")
        self.slices: str = manifest["preprocessing"].get("slices", "middle")

    @property
    def image_sizes(self) -> list[int]:
        return [i.image_size for i in self.inputs]

    @classmethod
    def load(cls, folder: str | Path, *, threads: int | None = None) -> ExportedModel:
        folder = Path(folder)
        refuse_pickle(folder)
        manifest = read_manifest(folder)
        verify_files(folder, manifest)
        try:
            model = cls(folder, manifest, runner=None)
        except (KeyError, TypeError, ValueError, StopIteration) as e:
            raise ArtifactError(f"{folder / MANIFEST} has a malformed entry ({e!r}); export the model again") from e
        model_path = folder / manifest["model_file"]
        refuse_pickle(model_path)
        if manifest["model_format"] == "onnx":
            model._run = _OnnxRunner(model_path, threads)
        elif manifest["model_format"] == "torchscript":
            model._run = _TorchScriptRunner(model_path, threads)
        else:
            raise ArtifactError(
                f"{folder / MANIFEST}: unknown model_format {manifest['model_format']!r} (onnx or torchscript)"
            )
        return model

    def decode(self, path: str | Path, frame: int | None = None) -> dict[int, np.ndarray]:
        """One image file (or one slice of a DICOM / NIfTI file) at every input size, by the
        training code's decode_image, with the window recorded at training."""
        return decode_image_sizes(path, self.image_sizes, frame=frame, window=self.window)

    def stack(self, decoded: list[dict[int, np.ndarray]]) -> dict[int, np.ndarray]:
        return {size: np.stack([d[size] for d in decoded]) for size in self.image_sizes}

    def predict_proba(self, images: dict[int, np.ndarray]) -> np.ndarray:
        """Calibrated P(positive) for {image_size: (N, S, S) uint8}."""
        feeds = {i.name: np.ascontiguousarray(images[i.image_size], dtype=np.uint8)[:, None] for i in self.inputs}
        return np.asarray(self._run(feeds), dtype=np.float64).reshape(-1)


def is_model_folder(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def read_manifest(folder: Path) -> dict[str, Any]:
    from .folders import kind_of  # folders asks this module what a MODEL_DIR is

    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder; give the MODEL_DIR that `lungsweep export` wrote")
    if not path.is_file():
        try:
            kind = kind_of(folder)
        except LungsweepError:
            kind = None
        if kind is not None:
            raise ArtifactError(
                f"{folder} is an {kind.value}, not an exported model; "
                f"run `lungsweep export {folder} --out MODEL_DIR` and give MODEL_DIR"
            )
    manifest = read_record_file(path, required=REQUIRED_KEYS, error=ArtifactError, remedy="export the model again",
                                missing=f"{path} is missing: {folder} is not a MODEL_DIR written by `lungsweep export`")
    if manifest["format"] != MODEL_FORMAT:
        raise ArtifactError(f"{path} has format {manifest['format']!r}; this lungsweep reads {MODEL_FORMAT!r}")
    return manifest


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is there with its recorded size and sha256."""
    files = manifest["files"]
    if not isinstance(files, dict):
        raise ArtifactError(f"{folder / MANIFEST}: 'files' must map file names to their bytes and sha256; export again")
    if manifest["model_file"] not in files:
        raise ArtifactError(f"{folder / MANIFEST} does not list the model file {manifest['model_file']!r}")
    for name, recorded in files.items():
        path = folder / name
        if not isinstance(recorded, dict) or not {"bytes", "sha256"} <= set(recorded):
            raise ArtifactError(
                f"{folder / MANIFEST}: the entry for {name!r} lacks 'bytes' or 'sha256' (got {recorded!r}); "
                "the manifest was edited or damaged: export the model again"
            )
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ArtifactError(f"{folder / MANIFEST} lists {name!r}, which is outside the folder")
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; the manifest lists it. Copy the whole MODEL_DIR")
        size = path.stat().st_size
        if size != recorded["bytes"]:
            raise ArtifactError(
                f"{path} is {size} bytes, the manifest says {recorded['bytes']}: the file is truncated or "
                "altered. Copy it again from the exported MODEL_DIR"
            )
        if file_sha256(path) != recorded["sha256"]:
            raise ArtifactError(
                f"{path} does not match its sha256 in the manifest: the file was altered or damaged. "
                "Copy it again from the exported MODEL_DIR"
            )
    extra = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST and p.name not in files)
    if extra:  # never loaded, so not refused; but the folder is no longer exactly what was exported
        log.warning("%s holds file(s) the manifest does not list (not loaded): %s", folder, extra)


class _OnnxRunner:
    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # idle threads sleep instead of spinning, so predict's decoding threads get the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors for bad graphs
            raise ArtifactError(f"onnxruntime cannot open {path}: {e}; export the model again") from e
        self.output = self.session.get_outputs()[0].name

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output], feeds)[0]


class _TorchScriptRunner:
    """TorchScript archives are read by TorchScript's own restricted unpickler (tensors and
    TorchScript types only, no Python globals), and only after their sha256 matched."""

    def __init__(self, path: Path, threads: int | None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            try:
                self.module = torch.jit.load(str(path), map_location="cpu").eval()
            except RuntimeError as e:
                raise ArtifactError(f"TorchScript cannot open {path}: {e}; export the model again") from e

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(*(torch.from_numpy(a) for a in feeds.values())).numpy()
