"""report.html: one self-contained page that shows what the ensemble is worth and where it came from.

    write_report(report_path(ENS_DIR), ReportData(...))     # ensemble.folders.ensemble_dir names the file

The page holds, in order: a headline table (every metric of METRIC_NAMES with
its 95% interval, or a numbered note saying why it has none, for the calibrated
ensemble, the ensemble before calibration and each member) under a plain
statement of which data produced the numbers, how the intervals were computed
(metrics "interval": group or image bootstrap, and why) and what sensitivity the
threshold promises on new data (metrics "operating_point"); ROC curves; a
reliability diagram before and after calibration, whose caption gives its bins
and the calibration slope and intercept with their intervals; the confusion
matrix of the out-of-fold decisions; the sweep's history and the Optuna
hyperparameter importances (both from the sweep as picking members read it); a members table;
any extra ReportSection the caller adds; and the provenance record.

The figures themselves are drawn in ensemble/figures.py; this module lays out the page.
They are embedded as base64 data URIs: the page loads no external resource and runs no
script. Each <img> has a stable id (fig-roc, fig-reliability, fig-confusion,
fig-history, fig-importance); a figure that cannot be drawn is replaced by a
<p class="note"> with id note-<name> that says why.
"""
from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import check_labels, check_member_matrix, check_probabilities
from ..errors import EnsembleError
from ..fit.metrics import METRIC_NAMES, metric_text, which_estimate
from . import figures
from .figures import ALT, CAPTIONS, TITLES, FigureSkipped, png_data_uri

if TYPE_CHECKING:
    from collections.abc import Callable

    from matplotlib.figure import Figure

    from search.record import SweepFolder

__all__ = ["FIGURE_IDS", "ReportData", "ReportSection", "write_report"]

FIGURE_IDS = ("fig-roc", "fig-reliability", "fig-confusion", "fig-history", "fig-importance")
LOWER_IS_BETTER = ("brier", "nll", "ece")
BEST_AT = {"calibration_slope": 1, "calibration_intercept": 0}  # neither higher nor lower is better
# ids the page itself uses; an added section must not take one
_PAGE_IDS = {"headline", "members", "no-interval", "interval-rule", "operating-point", *FIGURE_IDS,
             *(f"note-{i.removeprefix('fig-')}" for i in FIGURE_IDS)}
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class ReportSection:
    """An extra part of the page (a data audit, a k-fold statement), shown before the provenance.

    `html` goes in as it is: the caller escapes whatever text it holds. `id` is the section's
    HTML id, so a reader or a test can find it.
    """

    title: str
    html: str
    id: str


@dataclass(frozen=True)
class ReportData:
    title: str
    method: str  # mean | greedy | stack
    calibration: str  # resolved calibrator name
    member_ids: list[str]
    member_configs: list[dict]  # each member's sampled/important config values to show
    member_weights: list[float] | None  # combiner weights if any (greedy), else None
    y: np.ndarray  # holdout labels (1 = positive)
    member_probs: np.ndarray  # (n, k) cross-fitted or raw member P(positive) on the holdout
    ensemble_uncalibrated: np.ndarray  # (n,) out-of-fold P(positive) before calibration
    ensemble_calibrated: np.ndarray  # (n,) out-of-fold P(positive) after calibration
    decisions: np.ndarray  # (n,) 0/1 out-of-fold decisions at the threshold(s) used
    threshold: float  # the final ensemble's threshold
    metrics: dict  # {"ensemble": bootstrap layout, "ensemble_uncalibrated": ..., "members": {id: ...}}
    #                and, for a k-fold job scored on its holdout, "development_crossfit": the out-of-fold estimate
    class_names: tuple[str, str]  # (negative, positive)
    provenance: dict  # sweep dir, fingerprint, versions, holdout size; "numbers": which data produced them
    # the sweep as ensemble.members read it (select_members, read_candidates), for history, importance and
    # member ranks; a str says why there is none, None that none was given: both skip those figures with a note
    sweep: SweepFolder | str | None
    sections: tuple[ReportSection, ...] = ()  # extra sections, in order, before the provenance


def write_report(path: Path, data: ReportData) -> Path:
    """Write the HTML report to `path` and return it."""
    _check(data)
    path = Path(path)
    sweep = _shown_sweep(data.sweep)
    calibrated, uncalibrated = data.ensemble_calibrated, data.ensemble_uncalibrated
    sections = [
        _headline_section(data),
        "<h2>Discrimination and calibration</h2>",
        '<div class="grid">',
        _figure("roc", figures.roc_figure, data.y, data.member_ids, data.member_probs, calibrated, uncalibrated,
                data.calibration, caption=CAPTIONS["roc"]),
        _figure("reliability", figures.reliability_figure, data.y, calibrated, uncalibrated, data.calibration,
                caption=figures.reliability_caption(len(data.y), data.metrics["ensemble"],
                                                    data.metrics["ensemble_uncalibrated"])),
        "</div>",
        _figure("confusion", figures.confusion_figure, data.y, data.decisions, data.class_names,
                caption=figures.confusion_caption(data.threshold), narrow=True),
        "<h2>Sweep</h2>",
        _figure("history", figures.history_figure, sweep, data.member_ids, caption=CAPTIONS["history"]),
        _figure("importance", figures.importance_figure, sweep, caption=CAPTIONS["importance"], narrow=True),
        _members_section(data, sweep),
        *(_extra_section(section) for section in data.sections),
        "<h2>Provenance</h2>",
        f"<pre>{_esc(json.dumps(data.provenance, indent=1, default=_jsonable))}</pre>",
    ]
    page = _PAGE.format(title=_esc(data.title), css=_CSS, header=_header(data), body="\n".join(sections))
    path.write_text(page, encoding="utf-8")
    return path


def _check(data: ReportData) -> None:
    y = check_labels(data.y, both_classes=True)
    n, k = len(y), len(data.member_ids)
    probs = check_member_matrix(data.member_probs, n, k)
    check_probabilities(probs.ravel())
    check_probabilities(data.ensemble_uncalibrated, n)
    check_probabilities(data.ensemble_calibrated, n)
    check_labels(data.decisions, both_classes=False)
    if len(data.decisions) != n:
        raise EnsembleError(f"{len(data.decisions)} decisions for {n} labels")
    if len(data.member_configs) != k:
        raise EnsembleError(f"{len(data.member_configs)} member configs for {k} members")
    if data.member_weights is not None and len(data.member_weights) != k:
        raise EnsembleError(f"{len(data.member_weights)} member weights for {k} members")
    missing = [key for key in ("ensemble", "ensemble_uncalibrated", "members") if key not in data.metrics]
    if missing:
        raise EnsembleError(f"metrics lack {missing}; expected keys ensemble, ensemble_uncalibrated, members")
    _check_sections(data.sections)


def _check_sections(sections: tuple[ReportSection, ...]) -> None:
    taken = set(_PAGE_IDS)
    for section in sections:
        if not isinstance(section, ReportSection):
            raise EnsembleError(f"report sections must be ReportSection(title, html, id), got {section!r}")
        if not _ID.fullmatch(section.id):
            raise EnsembleError(f"section {section.title!r} has id {section.id!r}; use a letter, then letters, "
                                "digits, '-' or '_' (no spaces)")
        if section.id in taken:
            raise EnsembleError(f"section {section.title!r} has id {section.id!r}, which the page already uses; "
                                "give it another id")
        taken.add(section.id)


def _shown_sweep(sweep: SweepFolder | str | None) -> SweepFolder | str:
    """The sweep the sweep figures draw, or the note shown instead: why there is none."""
    if sweep is None:
        return "no sweep folder was given."
    if not isinstance(sweep, str) and sweep.record_error is not None:  # results without a readable record
        return sweep.record_error
    return sweep


# --- page parts --------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """numpy scalars as Python numbers, anything else json cannot take (paths) as text."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _header(data: ReportData) -> str:
    negative, positive = data.class_names
    weights = "" if data.member_weights is None else f"; weights {', '.join(f'{w:.3g}' for w in data.member_weights)}"
    facts = (
        f"{len(data.member_ids)} members ({_esc(', '.join(data.member_ids))}) combined by <b>{_esc(data.method)}</b>"
        f"{_esc(weights)}; <b>{_esc(data.calibration)}</b> calibration; threshold <b>{data.threshold:.4f}</b> on "
        f"P({_esc(positive)}); classes: {_esc(negative)} (negative) vs {_esc(positive)} (positive); "
        f"{len(data.y)} holdout samples, {int(np.sum(data.y))} positive."
    )
    return f"<h1>{_esc(data.title)}</h1>\n<p>{facts}</p>"


def _statement(provenance: dict) -> str:
    """Which data produced the numbers: provenance["numbers"] (a sentence, or {row: sentence}), after the
    sweep's count of trials (provenance["sweep_count"]), marked where the sweep is short."""
    return _sweep_count(provenance.get("sweep_count")) + _numbers(provenance)


def _sweep_count(count: dict | None) -> str:
    if not isinstance(count, dict) or "statement" not in count:
        return ""
    mark = "" if count.get("complete") else ' class="warning"'
    return f'<p id="sweep-count"{mark}><b>{_esc(count["statement"])}</b></p>'


def _numbers(provenance: dict) -> str:
    numbers = provenance.get("numbers")
    if isinstance(numbers, dict):
        return "".join(f"<p><b>{_esc(k)}</b>: {_esc(v)}</p>" for k, v in numbers.items())
    if numbers:
        return f"<p>{_esc(numbers)}</p>"
    return (
        "<p>The caller did not say which data produced these numbers (no provenance &quot;numbers&quot;); "
        "see the provenance section.</p>"
    )


def _headline_section(data: ReportData) -> str:
    crossfit = data.metrics.get("development_crossfit")
    columns = [("ensemble", f"ensemble ({data.calibration})", data.metrics["ensemble"])]
    if crossfit is not None:  # the larger-sample estimate, beside the untouched one
        columns[0] = ("ensemble", f"ensemble ({data.calibration}) on the holdout, {data.metrics['ensemble']['n']} "
                                  "images", data.metrics["ensemble"])
        columns.append(("development-crossfit", f"ensemble, development cross-fit, {crossfit['n']} images "
                                                "(out-of-fold)", crossfit))
    columns.append(("ensemble_uncalibrated", "ensemble before calibration", data.metrics["ensemble_uncalibrated"]))
    columns += [(f"member-{m}", f"member {m}", data.metrics["members"][m])
                for m in data.member_ids if m in data.metrics["members"]]
    head = "".join(f'<th scope="col" data-key="{_esc(key)}">{_esc(label)}</th>' for key, label, _ in columns)
    notes: dict[str, int] = {}  # why a cell has no interval -> its note number
    rows = []
    for name in METRIC_NAMES:
        hint = (" (lower is better)" if name in LOWER_IS_BETTER else
                f" ({BEST_AT[name]} is perfect)" if name in BEST_AT else "")
        cells = "".join(f"<td>{_metric_cell(m, name, notes)}</td>" for _, _, m in columns)
        rows.append(f'<tr><th scope="row" title="{_esc(name + hint)}">{_esc(name)}</th>{cells}</tr>')
    for name in ("threshold", "n"):
        cells = "".join(f"<td>{_scalar_cell(m.get(name))}</td>" for _, _, m in columns)
        rows.append(f'<tr class="extra"><th scope="row">{_esc(name)}</th>{cells}</tr>')
    why = "".join(f'<li value="{k}">{_esc(reason)}</li>' for reason, k in notes.items())
    return (
        "<h2>Headline metrics</h2>\n"
        f'<div class="statement">{_statement(data.provenance)}{_which(data)}{_how_measured(data.metrics["ensemble"])}'
        "<p>Each cell: value [95% interval]; a numbered note where there is no interval says why. brier, nll and "
        "ece: lower is better; calibration_slope: 1 is perfect; calibration_intercept: 0 is perfect; every other "
        "metric: higher is better. threshold: the one each model deploys (cross-fitted decisions used each fold's "
        "own).</p></div>\n"
        f'<div class="scroll"><table id="headline"><thead><tr><th scope="col">metric</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        + (f'<ol id="no-interval" class="why">{why}</ol>' if why else "")
    )


def _which(data: ReportData) -> str:
    crossfit = data.metrics.get("development_crossfit")
    if crossfit is None:
        return ""
    return f'<p id="which-estimate">{_esc(which_estimate(data.metrics["ensemble"]["n"], crossfit["n"]))}</p>'


def _how_measured(block: dict) -> str:
    """How the headline column's intervals were computed, and what its threshold promises on new data."""
    parts = []
    interval = block.get("interval")
    if isinstance(interval, dict) and interval.get("statement"):
        parts.append(f'<p id="interval-rule">{_esc(interval["statement"])}</p>')
    point = block.get("operating_point")
    if isinstance(point, dict) and point.get("statement"):
        measured = f" Sensitivity where these numbers were measured: {metric_text(block, 'sensitivity')}."
        parts.append(f'<p id="operating-point">{_esc(point["statement"] + measured)}</p>')
    return "".join(parts)


def _metric_cell(block: Any, name: str, notes: dict[str, int]) -> str:
    m = block.get(name) if isinstance(block, dict) else None
    if not isinstance(m, dict):
        return "—"
    value = _fmt(m.get("value"))
    if m.get("ci_low") is None:
        reason = block.get("interval", {}).get("missing", {}).get(name)
        if reason is None:
            return value
        k = notes.setdefault(reason, len(notes) + 1)
        return f'{value} <span class="ci" title="{_esc(reason)}">(no interval: note {k})</span>'
    low, high = _fmt(m.get("ci_low")), _fmt(m.get("ci_high"))
    return f'{value} <span class="ci">[{low}, {high}]</span>'


def _scalar_cell(v: Any) -> str:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return _fmt(v, 4)


def _fmt(v: Any, digits: int = 3) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "—"
    return "n/a" if math.isnan(f) else f"{f:.{digits}f}"


def _compact(v: Any) -> str:
    """A config value as short text: 3 significant digits for floats."""
    if hasattr(v, "item"):
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _members_section(data: ReportData, sweep: SweepFolder | str) -> str:
    rank, metric = _member_scores(data, sweep)
    metric_name = "sweep metric" if isinstance(sweep, str) else sweep.metric
    keys = list(dict.fromkeys(k for cfg in data.member_configs for k in cfg))
    head = ["trial", "rank", metric_name] + (["weight"] if data.member_weights is not None else []) + keys
    rows = []
    for i, (tid, cfg) in enumerate(zip(data.member_ids, data.member_configs)):
        cells = [tid, _compact(rank.get(tid)), _fmt(metric.get(tid), 4)]
        if data.member_weights is not None:
            cells.append(f"{data.member_weights[i]:.3g}")
        cells += [_compact(cfg.get(k)) for k in keys]
        rows.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    return (
        "<h2>Members</h2>\n"
        f'<div class="scroll"><table id="members"><thead><tr>{"".join(f"<th>{_esc(h)}</th>" for h in head)}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _member_scores(data: ReportData, sweep: SweepFolder | str) -> tuple[dict, dict]:
    """Rank and best sweep metric per member: from the sweep's results, else from provenance["members"]."""
    if not isinstance(sweep, str):
        table = sweep.table.set_index("trial_id")
        return table["rank"].to_dict(), table["best_metric"].to_dict()
    listed = [m for m in data.provenance.get("members", []) if isinstance(m, dict) and "trial_id" in m]
    return ({m["trial_id"]: m.get("rank") for m in listed}, {m["trial_id"]: m.get("sweep_metric") for m in listed})


def _extra_section(section: ReportSection) -> str:
    return f'<section id="{_esc(section.id)}">\n<h2>{_esc(section.title)}</h2>\n{section.html}\n</section>'


def _figure(name: str, draw: Callable[..., Figure], *args: Any, caption: str, narrow: bool = False) -> str:
    """An <img> of draw(*args), or the note of the FigureSkipped it raised."""
    try:
        fig = draw(*args)
    except FigureSkipped as e:
        return f'<p class="note" id="note-{name}">{_esc(TITLES[name])} not shown: {_esc(e)}</p>'
    uri = png_data_uri(fig)
    cls = ' class="narrow"' if narrow else ""
    return (f'<figure{cls}><img id="fig-{name}" alt="{_esc(ALT[name])}" src="{uri}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


# --- page template -----------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0;
       color: #1d1d1f; background: #f2f2f2; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 32px 40px; background: #fff; }
h1 { font-size: 1.55em; margin: 0.4em 0; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e6e6e6; text-align: right; white-space: nowrap; }
thead th { background: #f3f5f8; vertical-align: bottom; }
th[scope=row] { text-align: left; font-weight: 600; }
#headline td:nth-child(2), #headline thead th:nth-child(2) { background: #eef5ff; font-weight: 600; }
#headline tr.extra th, #headline tr.extra td { color: #555; }
#members td:first-child { font-family: ui-monospace, monospace; text-align: left; }
.ci { color: #666; font-weight: normal; }
.scroll { overflow-x: auto; }
.statement { background: #f6f9fe; border-left: 4px solid #3b7dd8; padding: 2px 14px; margin-bottom: 12px;
             font-size: 14px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 18px; }
figure { margin: 12px 0; }
figure.narrow { max-width: 640px; }
img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #444; margin-top: 4px; }
.why { font-size: 13px; color: #555; margin: 6px 0 0; }
.note { color: #7a4d00; background: #fff6e0; border-left: 4px solid #e0a000; padding: 8px 12px; }
#sweep-count.warning { color: #8a1c1c; background: #fdecec; padding: 4px 8px; }
pre { background: #f6f6f6; padding: 12px; font-size: 12px; overflow-x: auto; white-space: pre-wrap; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<main>
{header}
{body}
</main>
</body>
</html>
"""
