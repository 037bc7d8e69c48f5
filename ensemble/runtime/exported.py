"""An exported MODEL_DIR, run: verified before it is run, run without pickle.

    model = ExportedModel.load("runs/model")             # checks manifest keys and every file's sha256
    images = decode_for(model, "scan.png")               # {image_size: (S, S) uint8}, trainers.decode_image
    p = model.predict_proba(stack_for(model, [images]))  # calibrated P(positive)

decode_for and stack_for (runtime.predictor) read images for any Predictor, this one included.

ensemble.folders.model_dir owns the folder's names and its manifest; this module opens the
graph it names with onnxruntime (or TorchScript, when exported so).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainers.errors import LungsweepError

from ..errors import ArtifactError
from ..folders.kinds import kind_of
from ..folders.model_dir import MANIFEST, is_model_folder, read_manifest, refuse_pickle, verify_files

__all__ = ["ExportedModel", "ModelInput"]


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
        _refuse_other_kinds(folder)
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

    def predict_proba(self, images: dict[int, np.ndarray]) -> np.ndarray:
        """Calibrated P(positive) for {image_size: (N, S, S) uint8}."""
        feeds = {i.name: np.ascontiguousarray(images[i.image_size], dtype=np.uint8)[:, None] for i in self.inputs}
        return np.asarray(self._run(feeds), dtype=np.float64).reshape(-1)


def _refuse_other_kinds(folder: Path) -> None:
    """Another folder lungsweep writes, given where a MODEL_DIR is wanted: name it, and the command that exports it."""
    if not folder.is_dir() or is_model_folder(folder):
        return
    try:
        kind = kind_of(folder)
    except LungsweepError:
        return
    raise ArtifactError(f"{folder} is {kind.named}, not an exported model; "
                        f"run `lungsweep export {folder} --out MODEL_DIR` and give MODEL_DIR")


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
