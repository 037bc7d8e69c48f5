"""MODEL_DIR, the exported artifact on disk: its file names, its manifest, and the checks it passes before it runs.

    MODEL_DIR/manifest.json        format, inputs, classes, threshold, preprocessing, metrics, provenance, and
                                   every other file with its sha256 and size (REQUIRED_KEYS)
    MODEL_DIR/<model_file>         model.onnx, or model.torchscript (MODEL_FILES: one per export format)

A file that is missing, truncated or altered is refused before any runtime opens it
(`verify_files`), and a pickle is never offered to one (`refuse_pickle`). This module owns
MODEL_DIR's names and its manifest (`write_manifest`, `read_manifest`); ensemble.ship.export
writes the folder through them and ensemble.runtime.exported runs it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from trainers.data import file_sha256
from trainers.records import read_record_file

from ..errors import ArtifactError

__all__ = [
    "MANIFEST", "MODEL_FILES", "MODEL_FORMAT", "REQUIRED_KEYS", "is_model_folder",
    "read_manifest", "refuse_pickle", "verify_files", "write_manifest", "PICKLE_SUFFIXES",
]

MANIFEST = "manifest.json"
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript"}  # export format -> file
MODEL_FORMAT = "lungsweep-model/1"
REQUIRED_KEYS = (
    "format", "model_file", "model_format", "inputs", "output", "classes", "positive", "threshold",
    "preprocessing", "metrics", "provenance", "files",
)
log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def refuse_pickle(path: Path) -> None:
    """A PyTorch pickle offered as a model: say why it is not loaded and what to give instead."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ArtifactError(
            f"{path} is a pickle file ({path.suffix}); lungsweep never loads pickles as models, because "
            "unpickling can run arbitrary code. Give a MODEL_DIR written by `lungsweep export` "
            "(ONNX + manifest.json), or a checkpoint folder with model.safetensors"
        )


def is_model_folder(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder; give the MODEL_DIR that `lungsweep export` wrote")
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
