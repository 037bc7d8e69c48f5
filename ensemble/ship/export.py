"""`lungsweep export`: an ensemble folder, or one trial of a sweep, as one verified MODEL_DIR.

    export_model("runs/ens", "runs/model")                       # ONNX, the default
    export_model("runs/sweep", "runs/model", trial="best")       # the sweep's best trial alone

MODEL_DIR holds model.onnx (members, combiner and calibrator in one graph, dynamic
batch), manifest.json and, from an ensemble folder, metrics.json and report.html.
Before the folder is written, the graph is checked by onnx.checker, run by
onnxruntime on real holdout images and compared with the in-process ensemble.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit

from trainers import discover
from trainers.atomic import atomic_dir
from trainers.checkpoint import package_versions
from trainers.data import PREPROCESSING_VERSION, file_sha256
from trainers.inference import shared_reading

from ..errors import ArtifactError
from ..fit.members import Member, pick_trials, split_predictions
from ..fit.metrics import bootstrap_metrics
from ..folders.ensemble_dir import read_ensemble
from ..folders.kinds import FolderKind, kind_of
from ..folders.model_dir import MODEL_FILES, MODEL_FORMAT, is_model_folder, write_manifest
from ..runtime.exported import ExportedModel
from ..runtime.model import EnsembleModel
from ..runtime.predictor import decode_for, stack_for
from .graph import EnsembleGraph, GraphMember

__all__ = ["export_model", "write_onnx", "write_torchscript", "PARITY_TOLERANCE"]

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
OPSET = 18
PARITY_IMAGES = 32


@dataclass
class _Source:
    """What gets exported, whichever folder it came from."""

    kind: str  # "ensemble" | "single"
    reference: EnsembleModel  # the in-process model the export must agree with
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    copies: list[Path]  # files copied into MODEL_DIR as they are
    holdout: tuple[str | None, list[str]]  # data folder and holdout sample ids, for the parity check


def export_model(
    source: str | Path,
    out: str | Path,
    *,
    trial: str | None = None,
    fmt: str = "onnx",
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Export ENS_DIR, RUN_DIR's `trial` ("best" or an id), or one checkpoint / train run, to MODEL_DIR `out`.

    Returns the manifest.
    """
    if fmt not in MODEL_FILES:
        raise ArtifactError(f"unknown export format {fmt!r}; choose one of {sorted(MODEL_FILES)}")
    out = Path(out)  # checked before anything is read (a sweep at a URI would be mirrored first)
    if out.resolve() == Path(source).resolve():
        raise ArtifactError(f"--out {out} is the source folder; give a new folder for the exported model")
    if out.exists() and not is_model_folder(out) and (not out.is_dir() or any(out.iterdir())):
        raise ArtifactError(f"--out {out} exists and is not a MODEL_DIR; give a new folder (it would be replaced)")
    found = _read_source(source, trial, n_boot)
    ref = found.reference
    graph = EnsembleGraph(
        [GraphMember(m.trial_id, m.models, m.prep) for m in ref.members], ref.pipeline, tta=ref.tta
    ).eval()
    images = _parity_images(found)
    expected = ref.predict_proba(images["arrays"])

    with atomic_dir(out) as tmp:
        model_file = MODEL_FILES[fmt]
        started = time.perf_counter()
        log.info("exporting %d member(s) (%s) to %s ...", len(graph.members), ", ".join(graph.trial_ids), fmt)
        (write_onnx if fmt == "onnx" else write_torchscript)(graph, tmp / model_file, images["arrays"])
        log.info("exported in %.1f s", time.perf_counter() - started)
        for path in found.copies:
            shutil.copy2(path, tmp / path.name)
        manifest = _manifest(found, graph, model_file, fmt)
        manifest["files"] = {
            p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir()) if p.is_file()
        }
        # Verify what a user will load: the folder as written, through the loader predict uses.
        write_manifest(tmp, manifest)
        exported = ExportedModel.load(tmp)
        got = exported.predict_proba(images["arrays"])
        diff = float(np.max(np.abs(got - expected))) if len(got) else 0.0
        if not diff <= PARITY_TOLERANCE:
            raise ArtifactError(
                f"the exported model disagrees with the in-process ensemble by {diff:.2e} in probability "
                f"(tolerance {PARITY_TOLERANCE:.0e}) on {len(got)} images; nothing was written to {out}"
            )
        manifest["parity"] = {
            "images": len(got), "source": images["source"], "max_abs_diff": diff, "tolerance": PARITY_TOLERANCE,
        }
        manifest["cost"] = _predict_cost(graph, exported, images["arrays"])
        write_manifest(tmp, manifest)
    log.info("parity with the in-process ensemble on %d %s: max |dp| = %.1e", len(got), images["source"], diff)
    log.info("%d network(s) per image: %.1f ms an image here (%s)", manifest["cost"]["networks"],
             manifest["cost"]["ms_per_image"], manifest["cost"]["measured_on"])
    return manifest


def _predict_cost(graph: EnsembleGraph, exported: ExportedModel, arrays: dict[int, np.ndarray]) -> dict[str, Any]:
    """What one image costs to predict: the networks it runs through, and the exported graph's time on this
    machine (decoded images, after a warm-up run), which grows with them."""
    networks = sum(len(member.models) for member in graph.members)
    n = len(next(iter(arrays.values())))
    started = time.perf_counter()
    exported.predict_proba(arrays)  # the parity check's run warmed the session up
    seconds = time.perf_counter() - started
    return {
        "networks": networks,
        "forward_passes_per_image": sum(len(m.models) * (2 if m.tta else 1) for m in graph.members),  # TTA: mirrored
        "ms_per_image": round(1000 * seconds / max(n, 1), 2),
        "measured_on": f"{os.cpu_count()} CPU core(s), onnxruntime, a batch of {n} decoded images",
    }


def _read_source(source: str | Path, trial: str | None, n_boot: int) -> _Source:
    kind = kind_of(source)  # refuses a pickle, and what is no folder lungsweep wrote; a sweep may be at a URI
    if trial is not None and kind is not FolderKind.SWEEP:
        raise ArtifactError(f"{source} is {kind.named}; --trial is for a sweep folder (RUN_DIR)")
    if kind is FolderKind.MODEL:
        raise ArtifactError(f"{source} is already an exported model (MODEL_DIR); copy it instead of exporting it")
    if kind is FolderKind.ENSEMBLE:
        ens = read_ensemble(source)  # the one read of ENS_DIR; the model, what is shipped and its holdout come from it
        provenance = ens.manifest["provenance"]
        return _Source(
            kind="ensemble", reference=EnsembleModel.of_folder(ens), metrics=ens.metrics,
            provenance={"ensemble_dir": str(Path(source).resolve()), **provenance},
            copies=ens.shipped, holdout=(provenance["members"][0]["config"].get("data"), ens.holdout_ids),
        )
    if kind is FolderKind.SWEEP:
        picked, sweep = pick_trials(source, top=1, trials=[trial] if trial and trial != "best" else None)
        pick = picked[0]  # its record is read with its models
        folder, name = pick.checkpoint, pick.trial_id
        where = {"sweep": sweep.location, "members": [{"trial_id": name, "rank": pick.rank,
                                                       "sweep_metric": pick.metric}]}
        described = f"trial {name} (rank {pick.rank} of the sweep)"
    else:  # a checkpoint or bag folder, or a `lungsweep train` run (its best/)
        folder, name = Path(source), Path(source).name
        where = {"run": str(Path(source).resolve()), "members": [{"trial_id": name}]}
        described = f"the model of {source}"
    reference = EnsembleModel.of_member(folder, name)  # its models as trained: what the export must agree with
    return _single_model(reference, n_boot, where, described=described)


def _single_model(reference: EnsembleModel, n_boot: int, where: dict[str, Any], *, described: str) -> _Source:
    """One model (or one bag) as trained (`reference`): its own probability, threshold 0.5, metrics on its holdout.

    Without a holdout: a bag's out-of-fold predictions (the sweep ranked on them), else the
    validation split (which also chose the best epoch): both flagged as optimistic.
    """
    loaded = reference.members[0]  # its record was read with its models
    member = Member(loaded.trial_id, loaded.folder, loaded.meta, rank=1, metric=float("nan"))
    split = "holdout" if member.stored("holdout") else ("oof" if member.is_bag else "val")
    preds = split_predictions([member], split=split)
    y, groups = preds.y, preds.groups
    metrics: dict[str, Any] = {}
    if len(set(y)) == 2:
        p = expit(preds.margins[:, 0])
        metrics = bootstrap_metrics(y, p, groups, 0.5, n_boot=n_boot)
        caveat = {"holdout": "", "val": " (it also chose the best epoch, so these are optimistic)",
                  "oof": " (the sweep also ranked trials on them, so these are optimistic)"}[split]
        named = {"holdout": "holdout split", "val": "validation split", "oof": "out-of-fold predictions"}[split]
        metrics["data"] = (
            f"{described} on its {named}{caveat}: {len(y)} images, {len(set(groups))} groups; its own "
            "probability, threshold 0.5"
        )
    meta = member.meta
    return _Source(
        kind="single", reference=reference, metrics=metrics,
        provenance={**where, "members": [{**where["members"][0], "checkpoint": str(loaded.folder.resolve()),
                                          "config": meta["config"]}],
                    "data_fingerprint": meta["data_fingerprint"], "split": meta.get("split"),
                    "versions": meta.get("versions", {})},
        copies=[], holdout=(meta["config"].get("data"), preds.ids),
    )


def _parity_images(found: _Source) -> dict[str, Any]:
    """Up to PARITY_IMAGES holdout images at every input size of the in-process model (which runs every member,
    also those the graph leaves out) when the data is still where training read it, else seeded noise."""
    ref = found.reference
    data, ids = found.holdout
    paths: list[tuple[str, int | None]] = []
    if data and Path(data).is_dir() and ids:
        try:
            dataset = discover(data=data, positive=ref.positive, slices=ref.slices)
            by_id = {i: (p, dataset.frame(k)) for k, (i, p) in enumerate(zip(dataset.ids, dataset.paths))}
            paths = [by_id[i] for i in ids if i in by_id][:PARITY_IMAGES]
            arrays = stack_for(ref, [decode_for(ref, p, frame=f) for p, f in paths]) if paths else {}
        except Exception as e:  # the check still runs, on noise, rather than failing the export
            log.warning("cannot read holdout images from %s (%s); checking parity on generated images", data, e)
            paths = []
    if not paths:
        rng = np.random.default_rng(0)
        arrays = {s: rng.integers(0, 256, (PARITY_IMAGES, s, s), dtype=np.uint8) for s in ref.image_sizes}
        return {"arrays": arrays, "source": "generated images (the training data was not found)"}
    return {"arrays": arrays, "source": "holdout images"}


def _example_inputs(graph: EnsembleGraph, arrays: dict[int, np.ndarray]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.asarray(arrays[s][:2])).unsqueeze(1) for s in graph.image_sizes)


def write_onnx(graph: EnsembleGraph, path: Path, arrays: dict[int, np.ndarray]) -> None:
    """The graph as one ONNX file with a dynamic batch axis, checked by onnx.checker.

    arrays: {image_size: (N >= 2, S, S) uint8} example images for the exporter's trace.

    torch's TorchScript-based exporter writes the graph; the dynamo exporter, where that one is gone or
    fails, and for graphs past protobuf's 2 GB (its external data). The TorchScript one took 2.8 s for
    five EfficientNet-Lite0 networks where dynamo took 37.8 s, for the same graph speed in onnxruntime
    (BENCHMARKS.md, "Export time"); the export's parity check judges either.
    """
    import onnx

    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):  # pass-by-pass INFO lines mean nothing to users
        logging.getLogger(noisy).setLevel(logging.WARNING)
    example = _example_inputs(graph, arrays)
    params = sum(p.numel() * p.element_size() for p in graph.parameters())
    large = params > 1_500_000_000  # protobuf's 2 GB limit: only dynamo writes external data
    names = {"input_names": graph.input_names, "output_names": ["probability"]}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="# The axis name")  # every input shares the one batch axis
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
        warnings.filterwarnings("ignore", category=FutureWarning)
        try:
            if large:
                raise NotImplementedError("external data")
            torch.onnx.export(graph, example, str(path), dynamo=False, opset_version=OPSET, **names,
                              dynamic_axes={n: {0: "batch"} for n in [*graph.input_names, "probability"]})
        except Exception as first:
            log.debug("the TorchScript exporter did not write %s (%s): exporting with dynamo", path, first)
            path.unlink(missing_ok=True)
            batch = torch.export.Dim("batch", min=1)
            try:
                torch.onnx.export(graph, example, str(path), dynamo=True, opset_version=OPSET, verbose=False, **names,
                                  dynamic_shapes=(tuple({0: batch} for _ in example),), external_data=large)
            except Exception as e:
                raise ArtifactError(f"torch.onnx.export failed for members {graph.trial_ids}: {e}") from e
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ArtifactError(f"onnx.checker rejects the exported graph: {e}") from e


def write_torchscript(graph: EnsembleGraph, path: Path, arrays: dict[int, np.ndarray]) -> None:
    # torch.jit is deprecated in favour of torch.export; kept because deployments still ask for it.
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(graph, _example_inputs(graph, arrays), check_trace=False)
        torch.jit.save(traced, str(path))


def _manifest(found: _Source, graph: EnsembleGraph, model_file: str, fmt: str) -> dict[str, Any]:
    ref = found.reference
    pipe = ref.pipeline
    by_id = {m.trial_id: m.prep for m in ref.members}
    reading = shared_reading(by_id[t] for t in graph.trial_ids)
    versions = package_versions()
    for name in ("onnx", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    metric_values = {k: v for k, v in found.metrics.items() if k not in ("members", "uncalibrated")}
    return {
        "format": MODEL_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kind": found.kind,
        "model_file": model_file,
        "model_format": fmt,
        "opset": OPSET if fmt == "onnx" else None,
        "inputs": [
            {"name": name, "image_size": size, "dtype": "uint8", "shape": ["batch", 1, size, size]}
            for name, size in zip(graph.input_names, graph.image_sizes)
        ],
        "output": {"name": "probability", "dtype": "float32", "shape": ["batch"],
                   "meaning": f"calibrated probability of {ref.positive}"},
        "classes": list(ref.classes),
        "positive": ref.positive,
        "threshold": float(pipe.threshold_),
        "decision": f"{ref.positive} where probability >= threshold, else the other class",
        "preprocessing": {
            "decode": "any image file -> grey (16-bit scans stretched to their own range, transparency read as black); "
                      "DICOM / NIfTI: HU, then `window`, one sample per slice kept by `slices` (trainers.data.medical)",
            "resize": "keep aspect ratio, bilinear, to fit image_size x image_size",
            "padding": "zero (black), centred, to a square",
            "input": "uint8 0..255, shape (batch, 1, image_size, image_size), one input per image size",
            "normalisation": "inside the graph, per member: (x / 255 - mean) / std",
            "members": {t: {"image_size": by_id[t].image_size, "mean": by_id[t].mean, "std": by_id[t].std}
                        for t in graph.trial_ids},
            "implementation": "trainers.decode_image (the one used in training)",
            "version": PREPROCESSING_VERSION,
            # DICOM / NIfTI (trainers.data.medical): window in HU ('auto', 'lung', 'mediastinum', 'none' or
            # [width, level]) and which slices of a series or volume are samples
            "window": reading[0],
            "slices": reading[1],
        },
        "ensemble": {
            "method": pipe.combiner_.name,
            "calibration": pipe.calibration_,
            "tta": ref.tta,
            "members": graph.trial_ids,
            "left_out_with_zero_weight": [m.trial_id for m in ref.members if m.trial_id not in graph.trial_ids],
            "weights": graph.weights,
        },
        "metrics": metric_values,
        "provenance": {**found.provenance, "exported_with": versions},
    }
