"""The report's "Where the models look" section: Grad-CAM overlays of the holdout's most confident true and
false positives and negatives, and the share of the maps on the images' border, per class and per outcome.

    section = explain_section(members, scored_on, p_cal, thresholds, pipeline, settings)   # ensemble.report.sections

The holdout images are read from the dataset the members were trained on (their config's data or
manifest), decoded as the models saw them. At most REPORT_IMAGES images are explained, so that the step
stays a few seconds on a CPU: the overlays first, then others of each class in turn (`lungsweep explain`
covers a whole folder). A section that cannot be drawn (the data folder is gone, a model without a spatial
feature map) says why instead of failing the ensemble.
"""
from __future__ import annotations

import html
import logging
from typing import Any, Sequence

import numpy as np

from trainers.errors import LungsweepError
from trainers.inference import resolve_device

from ..errors import ExplainError
from ..explaining.border import BORDER_MARGIN
from ..explaining.cam import EnsembleCam
from ..explaining.explain import OUTCOMES, Explanation, explain_samples, outcome_of, overlay, training_samples
from ..fit.members import Member, StoredPredictions
from ..fit.pipeline import EnsemblePipeline
from ..fit.settings import EnsembleSettings
from ..runtime.model import EnsembleModel, load_member
from .figures import png_data_uri
from .page import ReportSection

__all__ = ["PER_OUTCOME", "REPORT_IMAGES", "SECTION_ID", "choose_images", "explain_section"]

log = logging.getLogger(__name__)

PER_OUTCOME = 3  # overlays shown for each of TP, FP, FN, TN
REPORT_IMAGES = 24  # at most this many holdout images are explained for the section
SECTION_ID = "where-models-look"
TITLE = "Where the models look"
_OUTCOME_NAMES = {"TP": "true positives", "FP": "false positives", "FN": "false negatives", "TN": "true negatives"}


def explain_section(
    members: Sequence[Member], scored_on: StoredPredictions, p_cal: np.ndarray, thresholds: np.ndarray,
    pipeline: EnsemblePipeline, settings: EnsembleSettings,
) -> ReportSection:
    """The section, or the same section holding a note that says why it could not be drawn."""
    try:
        body = _body(members, scored_on, np.asarray(p_cal, float), np.asarray(thresholds, float), pipeline, settings)
    except (LungsweepError, OSError) as e:
        log.warning("the report's %r section is not drawn: %s", TITLE, e)
        body = f'<p class="note" id="note-explain">Not drawn: {html.escape(str(e))}</p>'
    return ReportSection(title=TITLE, html=body, id=SECTION_ID)


def choose_images(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray, *, per_outcome: int = PER_OUTCOME,
                  limit: int = REPORT_IMAGES, seed: int = 0) -> tuple[dict[str, list[int]], list[int]]:
    """({outcome: the indices of its most confident images, up to per_outcome}, every index to explain: those,
    then others of each class in turn, up to `limit`)."""
    decided = p >= thresholds
    outcomes = np.array([outcome_of(bool(t), bool(d)) for t, d in zip(y, decided)])
    shown: dict[str, list[int]] = {}
    for name in OUTCOMES:
        rows = np.flatnonzero(outcomes == name)
        confidence = p[rows] if name in ("TP", "FP") else -p[rows]  # the surest of that call first
        shown[name] = rows[np.argsort(-confidence, kind="stable")][:per_outcome].tolist()
    chosen = [i for rows in shown.values() for i in rows]
    order = np.random.default_rng(seed).permutation(len(y))
    by_class = [[i for i in order if y[i] == c and i not in chosen] for c in (1, 0)]
    while len(chosen) < min(limit, len(y)):
        for rows in by_class:
            if rows and len(chosen) < limit:
                chosen.append(int(rows.pop(0)))
    return shown, chosen


def _body(members: Sequence[Member], scored_on: StoredPredictions, p: np.ndarray, thresholds: np.ndarray,
          pipeline: EnsemblePipeline, settings: EnsembleSettings) -> str:
    shown, chosen = choose_images(scored_on.y, p, thresholds, seed=settings.seed)
    samples = training_samples(members[0].config, [scored_on.ids[i] for i in chosen])
    device = resolve_device(settings.device)
    loaded = [load_member(m.checkpoint, m.trial_id) for m in members]
    for member in loaded:
        for model in member.models:
            model.to(device)
    meta = members[0].meta
    model = EnsembleModel(members=loaded, pipeline=pipeline, tta=settings.tta, classes=meta["classes"],
                          positive=meta["positive"], manifest={}, device=str(device))
    cams = EnsembleCam.of(model)

    def unreadable(sample: Any, reason: str) -> None:
        raise ExplainError(f"holdout image {sample.name} cannot be read ({reason})")

    decided = [int(p[i] >= thresholds[i]) for i in chosen]  # the decision as scored (cross-fitted where it was)
    found = {e.sample.name: e for e in explain_samples(model, samples, on_bad=unreadable, cams=cams, classes=decided)}
    # the report's numbers: the ensemble's probability and decision as scored (cross-fitted where it was)
    rows = []
    for i in chosen:
        e = found[scored_on.ids[i]]
        rows.append({"index": i, "label": e.sample.label, "probability": float(p[i]),
                     "outcome": outcome_of(bool(scored_on.y[i]), bool(p[i] >= thresholds[i])), "explanation": e})
    return "\n".join([
        _reading(len(chosen), len(scored_on.y), cams.layers()),
        _summary_table(rows, "label", "class", "explain-by-class"),
        _summary_table(rows, "outcome", "outcome", "explain-by-outcome"),
        *(_outcome_figure(name, [r for i in shown[name] for r in rows if r["index"] == i]) for name in OUTCOMES),
    ])


def _reading(n: int, total: int, layers: dict[str, str]) -> str:
    where = ", ".join(f"{trial}: {layer}" for trial, layer in layers.items())
    return (
        f"<p>Grad-CAM of the class the ensemble decided, averaged over its members with the combiner's weights and "
        f"drawn over each holdout image as the models saw it (grey, padded to a square); {n} of the holdout's "
        f"{total} images are explained here (`lungsweep explain` maps any folder). The white frame is the content "
        f"box: the real image less {BORDER_MARGIN:.0%} of its width and height on each side. <b>How to read it:</b> "
        "border mass is the share of a map outside that frame; a map spread evenly would put the 'uniform' share "
        "there, so border mass well above it in one class means the models read the images' edges (borders, "
        "captions, padding) rather than the lungs for that class.</p>"
        f"<p>Feature stage each member is mapped at: {html.escape(where)}.</p>"
    )


def _summary_table(rows: list[dict[str, Any]], key: str, label: str, table_id: str) -> str:
    groups = sorted({r[key] for r in rows if r[key]}, key=lambda k: (OUTCOMES.index(k) if k in OUTCOMES else -1, k))
    body = []
    for group in groups:
        shares = [r["explanation"].shares for r in rows if r[key] == group]
        content = [s.content_mass for s in shares if not np.isnan(s.content_mass)]
        border = [s.border_mass for s in shares if not np.isnan(s.border_mass)]
        cells = [group, str(len(shares)), _share(content), _share(border), _share([s.border_area for s in shares])]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in (label, "images", "content mass", "border mass", "uniform border share"))
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _share(values: list[float]) -> str:
    return f"{np.mean(values):.0%}" if values else "n/a"


def _outcome_figure(name: str, rows: list[dict[str, Any]]) -> str:
    """Up to PER_OUTCOME overlays of one outcome, as one figure; a note when the holdout has none."""
    from matplotlib.figure import Figure


    title = _OUTCOME_NAMES[name]
    if not rows:
        return f'<p class="note" id="note-explain-{name.lower()}">No {title} on the holdout.</p>'
    fig = Figure(figsize=(3.0 * PER_OUTCOME, 3.35))
    for k, row in enumerate(rows):
        e: Explanation = row["explanation"]
        ax = fig.add_subplot(1, PER_OUTCOME, k + 1)
        ax.imshow(np.asarray(overlay(e.image, e.cam, e.box)))
        border = "n/a" if np.isnan(e.shares.border_mass) else f"{e.shares.border_mass:.0%}"
        ax.set_title(f"p={row['probability']:.3f}, border {border}\n{_short(e.sample.name)}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"Most confident {title} ({name})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    uri = png_data_uri(fig)
    alt = f"Grad-CAM overlays of the holdout's most confident {title}"
    return (f'<figure><img id="fig-explain-{name.lower()}" alt="{html.escape(alt)}" src="{uri}">'
            f"<figcaption>{html.escape(title.capitalize())}: P(positive) as scored, and the share of each map on "
            "the border band.</figcaption></figure>")


def _short(name: str, width: int = 34) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]
