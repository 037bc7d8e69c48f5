"""`lungsweep explain`: where the model looks. Class activation maps of an ensemble, a bag or a checkpoint,
and how much of each map falls on the image's border rather than on its content.

    model = load_explainable("runs/ens")                         # ENS_DIR, bag or checkpoint (torch weights)
    summary = explain(model, samples_of(find_images(["scans/"]), model), "runs/explain")

**Maps.** ensemble.explaining.cam: Grad-CAM (captum's LayerGradCam) of the class each image is decided as
(`target="decision"`, at the model's threshold) or of the positive class, averaged over the models as the
ensemble averages them, drawn over the image as the models saw it (trainers.data.images.decode_image).

**Measure.** ensemble.explaining.border: the share of each map inside the image's content box and in the border band.
"""
from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from trainers import discover
from trainers.atomic import atomic_file, atomic_write_text
from trainers.data import decode_image_sizes, is_medical, read_slice
from trainers.errors import BadImageError
from trainers.progress import progress_bar

from ..errors import ExplainError
from ..folders.kinds import FolderKind, kind_of
from ..folders.model_dir import read_manifest
from ..runtime.inputs import samples
from ..runtime.model import EnsembleModel
from .border import BORDER_MARGIN, MEASURES, MassShares, content_box, content_rectangle, mass_shares
from .cam import EnsembleCam

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "BORDER_MARGIN", "COLUMNS", "HOW_TO_READ", "OUTCOMES", "TARGETS", "ExplainSummary", "Explanation",
    "MassShares", "Sample", "content_box", "content_rectangle", "decode_sample", "explain", "explain_samples",
    "format_summary", "load_explainable", "mass_shares", "outcome_of", "overlay", "samples_of", "summarise",
    "training_samples",
]

log = logging.getLogger(__name__)

TARGETS = ("decision", "positive")  # which class's evidence is mapped
OUTCOMES = ("TP", "FP", "FN", "TN")
OVERLAY_PX = 256  # side of a written overlay
COLUMNS = ("path", "label", "probability", "decision", "outcome", "explained", *MEASURES, "overlay", "error")
HOW_TO_READ = (
    "border_mass is the share of the map outside the content box (the real image less {margin:.0%} of its width "
    "and height on each side, and the zero padding); border_area is what a map spread evenly would put there. "
    "Border mass well above border_area in one class means the model reads the image's edges (borders, captions, "
    "padding) rather than the lungs for that class."
)


# --- the source -------------------------------------------------------------------------------------------


def load_explainable(source: str | Path, *, device: str = "auto") -> EnsembleModel:
    """The torch ensemble of an ENS_DIR, a bag, a checkpoint or a `lungsweep train` run folder.

    An exported MODEL_DIR holds no torch weights: refused, naming the folder it was exported from.
    """
    source = Path(source)
    kind = kind_of(source)  # refuses a pickle
    if kind is FolderKind.MODEL:
        origin = _exported_from(read_manifest(source))
        raise ExplainError(
            f"{source} is an exported model (MODEL_DIR): its ONNX graph has no torch weights to take gradients "
            f"of; explain {origin or 'the ensemble folder, bag or checkpoint it was exported from'} instead"
        )
    if kind is FolderKind.SWEEP:
        raise ExplainError(f"{source} is a sweep folder; explain its ensemble (`lungsweep ensemble {source} --out "
                           "ENS_DIR`), or one trial's checkpoint folder")
    return EnsembleModel.of_kind(source, kind, device=device)


def _exported_from(manifest: dict[str, Any]) -> str | None:
    """The folder a MODEL_DIR was exported from, as export recorded it in its provenance."""
    provenance = manifest.get("provenance") or {}
    if provenance.get("ensemble_dir"):
        return f"the ensemble folder it was exported from, {provenance['ensemble_dir']}"
    if provenance.get("run"):
        return f"the run it was exported from, {provenance['run']}"
    members = provenance.get("members") or []
    if members and isinstance(members[0], dict) and members[0].get("checkpoint"):
        return f"the checkpoint it was exported from, {members[0]['checkpoint']}"
    return None


# --- images -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One image (or slice) to explain; label: its class folder's name when it is one of the model's classes."""

    name: str
    path: Path | None
    frame: int | None = None
    label: str | None = None
    error: str | None = None  # why it cannot be read, found before decoding


def samples_of(paths: Sequence[Path], model: EnsembleModel) -> list[Sample]:
    """The samples of image files as `predict` reads them (a volume gives its slices), labelled by the nearest
    enclosing folder named like one of the model's classes."""
    out = []
    for row in samples(list(paths), model.slices):
        if isinstance(row[1], BadImageError):
            out.append(Sample(row[0], None, error=row[1].reason))
            continue
        name, path, frame = row
        label = next((part for part in reversed(Path(path).parent.parts) if part in model.classes), None)
        out.append(Sample(name, Path(path), frame, label))
    return out


def training_samples(config: dict[str, Any], ids: Sequence[str]) -> list[Sample]:
    """The samples `ids` of the dataset a model was trained on (its config's data or manifest), labelled."""
    where = config.get("data") or config.get("manifest")
    if not where or not Path(where).exists():
        raise ExplainError(f"the training data {where or '(none recorded)'} is not there any more, so its images "
                           "cannot be explained; run `lungsweep explain` on images that are")
    dataset = discover(data=config.get("data"), manifest=None if config.get("data") else config.get("manifest"),
                       positive=config.get("positive"), group_regex=config.get("group_regex"),
                       slices=config.get("slices", "middle"), skip_bad=True)
    index = {sample_id: i for i, sample_id in enumerate(dataset.ids)}
    missing = [i for i in ids if i not in index]
    if missing:
        raise ExplainError(f"{len(missing)} of the {len(ids)} images (e.g. {missing[0]!r}) are no longer in {where}; "
                           "the data changed since training")
    return [Sample(i, Path(dataset.paths[index[i]]), dataset.frame(index[i]),
                   dataset.classes[dataset.labels[index[i]]]) for i in ids]


def decode_sample(sample: Sample, sizes: Sequence[int], window: Any) -> tuple[dict[int, np.ndarray], tuple[int, int]]:
    """The sample at every size as the models saw it (decode_image), and the original's (width, height)."""
    from PIL import Image

    if sample.error is not None or sample.path is None:
        raise BadImageError(sample.name, sample.error or "no file")
    arrays = decode_image_sizes(sample.path, sizes, frame=sample.frame, window=window)
    if is_medical(sample.path):
        height, width = read_slice(sample.path, sample.frame, window).shape[:2]
    else:
        with Image.open(sample.path) as img:
            width, height = img.size
    return arrays, (width, height)


def overlay(image: np.ndarray, cam: np.ndarray, box: Sequence[float], *, px: int = OVERLAY_PX) -> Image.Image:
    """The (D, D) grey image with the map over it (turbo colours, opacity following the map) and the content
    box as a white frame, px x px."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    size = image.shape[-1]
    grey = Image.fromarray(image).convert("RGB").resize((px, px), Image.Resampling.BILINEAR)
    peak = float(cam.max())
    scaled = cam / peak if peak > 0 else np.zeros_like(cam)
    rgba = (colormaps["turbo"](scaled) * 255).astype(np.uint8)
    rgba[..., 3] = (scaled * 0.6 * 255).astype(np.uint8)
    heat = Image.fromarray(rgba).resize((px, px), Image.Resampling.BILINEAR)  # (D, D, 4) uint8: RGBA
    out = Image.alpha_composite(grey.convert("RGBA"), heat).convert("RGB")
    x0, y0, x1, y1 = (v * px / size for v in box)
    ImageDraw.Draw(out).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 255, 255), width=max(1, px // 128))
    return out


# --- explaining -------------------------------------------------------------------------------------------


def outcome_of(label_positive: bool, decided_positive: bool) -> str:
    return ("TP" if decided_positive else "FN") if label_positive else ("FP" if decided_positive else "TN")


@dataclass
class Explanation:
    sample: Sample
    probability: float  # the model's calibrated P(positive)
    decision: str  # the class the model decides at its threshold
    explained: str  # the class whose evidence `cam` maps
    cam: np.ndarray  # (D, D), unit mass (all zero: no evidence anywhere)
    image: np.ndarray  # (D, D) uint8: the image as the models saw it, at the display size
    box: tuple[float, ...]  # the content box in display pixels
    shares: MassShares
    outcome: str | None  # TP/FP/FN/TN when the label is known


def explain_samples(
    model: EnsembleModel, samples: Sequence[Sample], *, target: str = "decision", batch_size: int = 16,
    on_bad: Callable[[Sample, str], None] | None = None, cams: EnsembleCam | None = None,
    classes: Sequence[int] | None = None,
) -> Iterator[Explanation]:
    """An Explanation per readable sample, in order; `on_bad(sample, reason)` for each that is not.

    classes: the class to map for each sample (1: positive, 0: negative), instead of `target`'s.
    """
    if target not in TARGETS:
        raise ExplainError(f"target {target!r} is not one of {', '.join(TARGETS)}")
    cams = cams or EnsembleCam.of(model)
    sizes = sorted({*model.image_sizes, cams.display_size})
    negative = next(c for c in model.classes if c != model.positive)
    for start in range(0, len(samples), batch_size):
        good, decoded, given = [], [], []
        for k in range(start, min(start + batch_size, len(samples))):
            try:
                decoded.append(decode_sample(samples[k], sizes, model.window))
                good.append(samples[k])
                given.append(classes[k] if classes is not None else 1)
            except BadImageError as e:
                if on_bad is not None:
                    on_bad(samples[k], e.reason)
        if not good:
            continue
        arrays = {s: np.stack([d[0][s] for d in decoded]) for s in sizes}
        p = model.predict_proba({s: arrays[s] for s in model.image_sizes})
        decided = p >= model.threshold
        mapped = decided.astype(np.int64) if target == "decision" and classes is None else np.asarray(given, np.int64)
        maps = cams.maps(arrays, mapped)
        for k, (sample, (_, (width, height))) in enumerate(zip(good, decoded)):
            yield Explanation(
                sample=sample, probability=float(p[k]), decision=model.positive if decided[k] else negative,
                explained=model.positive if mapped[k] else negative, cam=maps[k],
                image=arrays[cams.display_size][k], box=content_box(width, height, cams.display_size),
                shares=mass_shares(maps[k], width, height),
                outcome=None if sample.label is None else outcome_of(sample.label == model.positive, bool(decided[k])),
            )


@dataclass
class ExplainSummary:
    explained: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (image, reason)
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json


def summarise(rows: Sequence[dict[str, Any]], by: str) -> dict[str, dict[str, Any]]:
    """Per value of the rows' `by` (label, outcome): images, and each measure's mean over the non-empty maps
    (None when every map was empty)."""
    out: dict[str, dict[str, Any]] = {}
    keys = sorted({r[by] for r in rows if r.get(by)}, key=lambda k: (OUTCOMES.index(k) if k in OUTCOMES else -1, k))
    for key in keys:
        chosen = [r for r in rows if r.get(by) == key]
        block: dict[str, Any] = {"images": len(chosen)}
        for measure in MEASURES:
            values = [float(r[measure]) for r in chosen if r.get(measure) not in (None, "") and r[measure] == r[measure]]
            block[measure] = round(float(np.mean(values)), 4) if values else None
        out[key] = block
    return out


def explain(
    model: EnsembleModel, samples: Sequence[Sample], out: str | Path, *, target: str = "decision",
    batch_size: int = 16, progress: bool = True, source: str | Path | None = None,
) -> ExplainSummary:
    """Write OUT/overlays/*.png, OUT/explanations.csv (COLUMNS), OUT/summary.json and OUT/summary.csv;
    an unreadable image gets a row with its reason, and the others are explained."""
    if not samples:
        raise ExplainError("nothing to explain: give image files or folders")
    out = Path(out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    result = ExplainSummary()
    rows: list[dict[str, Any]] = []

    def bad(sample: Sample, reason: str) -> None:
        log.warning("could not read %s: %s", sample.name, reason)
        result.bad.append((sample.name, reason))
        rows.append({"path": sample.name, "label": sample.label or "", "error": reason})

    cams = EnsembleCam.of(model)
    bar = progress_bar(range(len(samples)), total=len(samples), desc="explaining", enabled=progress)
    advanced = 0
    for e in explain_samples(model, samples, target=target, batch_size=batch_size, on_bad=bad, cams=cams):
        name = f"overlays/{len(rows):05d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', Path(e.sample.name).name)[:80]}.png"
        overlay(e.image, e.cam, e.box).save(out / name)
        rows.append({"path": e.sample.name, "label": e.sample.label or "", "probability": round(e.probability, 6),
                     "decision": e.decision, "outcome": e.outcome or "", "explained": e.explained,
                     **{m: "" if v != v else round(v, 4) for m, v in e.shares._asdict().items()},
                     "overlay": name, "error": ""})
        result.explained += 1
        for _ in range(len(rows) - advanced):
            next(bar, None)
        advanced = len(rows)
    for _ in bar:  # images left out at the end
        pass
    with atomic_file(out / "explanations.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    done = [r for r in rows if not r["error"]]
    result.summary = {
        "source": None if source is None else str(source),
        "target": target,
        "threshold": model.threshold,
        "border_margin": BORDER_MARGIN,
        "cam": {"method": "Grad-CAM (captum LayerGradCam)", "layers": cams.layers(), "display_size": cams.display_size},
        "images": len(samples),
        "explained": result.explained,
        "skipped": [{"image": name, "reason": reason} for name, reason in result.bad],
        "all": summarise([{**r, "all": "all"} for r in done], "all"),
        "by_class": summarise(done, "label"),
        "by_outcome": summarise(done, "outcome"),
        "how_to_read": HOW_TO_READ.format(margin=BORDER_MARGIN),
    }
    atomic_write_text(out / "summary.json", json.dumps(result.summary, indent=1))
    with atomic_file(out / "summary.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("by", "group", "images", *MEASURES))
        writer.writerows((by, group, b["images"], *("" if b[m] is None else b[m] for m in MEASURES))
                         for by, group, b in _blocks(result.summary))
    return result


def _blocks(summary: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for by, key in (("all", "all"), ("class", "by_class"), ("outcome", "by_outcome")):
        for group, block in summary[key].items():
            yield by, group, block


def format_summary(summary: dict[str, Any]) -> str:
    """summary.json's measures, per class and per outcome, as a small table."""
    def cell(v: Any) -> str:
        return f"{v:>8.3f}" if isinstance(v, float) else f"{'n/a':>8}"

    lines = [f"{'by':<8} {'group':<16} {'images':>6} {'content':>8} {'border':>8} {'uniform':>8}"]
    lines += [f"{by:<8} {group:<16} {b['images']:>6} {cell(b['content_mass'])} {cell(b['border_mass'])} "
              f"{cell(b['border_area'])}" for by, group, b in _blocks(summary)]
    return "\n".join(lines)
