"""report.html: one self-contained page that shows what the ensemble is worth and where it came from.

    write_report(ENS_DIR / "report.html", ReportData(...))

The page holds, in order: a headline table (every metric of METRIC_NAMES with
its 95% interval, for the calibrated ensemble, the ensemble before calibration
and each member) under a plain statement of which data produced the numbers;
ROC curves; a reliability diagram before and after calibration; the confusion
matrix of the out-of-fold decisions; the sweep's history and the Optuna
hyperparameter importances (both read from the sweep folder); a members table;
and the provenance record.

Figures are drawn with matplotlib's object-oriented API (`Figure`, rendered by
Agg when saved to PNG), so no pyplot state or GUI backend is touched, and are
embedded as base64 data URIs: the page loads no external resource and runs no
script. Each <img> has a stable id (fig-roc, fig-reliability, fig-confusion,
fig-history, fig-importance); a figure that cannot be drawn is replaced by a
<p class="note"> with id note-<name> that says why.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from search.record import RESULTS_PARQUET, SWEEP_FILE, read_record, read_results, trial_dir

from ._checks import check_labels, check_member_matrix, check_probabilities
from .errors import EnsembleError
from .metrics import METRIC_NAMES, N_ECE_BINS, expected_calibration_error

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ReportData", "write_report", "FIGURE_IDS"]

FIGURE_IDS = ("fig-roc", "fig-reliability", "fig-confusion", "fig-history", "fig-importance")
LOWER_IS_BETTER = ("brier", "nll", "ece")
DPI = 110


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
    class_names: tuple[str, str]  # (negative, positive)
    provenance: dict  # sweep dir, fingerprint, versions, holdout size; "numbers": which data produced them
    sweep_dir: Path | None  # for history and importance; None skips those two figures with a note


class _Skip(Exception):
    """A figure that cannot be drawn from what is there; its message becomes the note shown instead."""


def write_report(path: Path, data: ReportData) -> Path:
    """Write the HTML report to `path` and return it."""
    _check(data)
    path = Path(path)
    sweep = _read_sweep(data.sweep_dir)
    sections = [
        _headline_section(data),
        "<h2>Discrimination and calibration</h2>",
        '<div class="grid">',
        _figure("roc", _roc_figure, data, caption=_ROC_CAPTION),
        _figure("reliability", _reliability_figure, data, caption=_RELIABILITY_CAPTION),
        "</div>",
        _figure("confusion", _confusion_figure, data, caption=_confusion_caption(data), narrow=True),
        "<h2>Sweep</h2>",
        _figure("history", _history_figure, data, sweep, caption=_HISTORY_CAPTION),
        _figure("importance", _importance_figure, sweep, caption=_IMPORTANCE_CAPTION, narrow=True),
        _members_section(data, sweep),
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
    """Which data produced the numbers: provenance["numbers"] (a sentence, or {row: sentence})."""
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
    columns = [("ensemble", f"ensemble ({data.calibration})", data.metrics["ensemble"]),
               ("ensemble_uncalibrated", "ensemble before calibration", data.metrics["ensemble_uncalibrated"])]
    columns += [(f"member-{m}", f"member {m}", data.metrics["members"][m])
                for m in data.member_ids if m in data.metrics["members"]]
    head = "".join(f'<th scope="col" data-key="{_esc(key)}">{_esc(label)}</th>' for key, label, _ in columns)
    rows = []
    for name in METRIC_NAMES:
        hint = " (lower is better)" if name in LOWER_IS_BETTER else ""
        cells = "".join(f"<td>{_metric_cell(m.get(name))}</td>" for _, _, m in columns)
        rows.append(f'<tr><th scope="row" title="{_esc(name + hint)}">{_esc(name)}</th>{cells}</tr>')
    for name in ("threshold", "n"):
        cells = "".join(f"<td>{_scalar_cell(m.get(name))}</td>" for _, _, m in columns)
        rows.append(f'<tr class="extra"><th scope="row">{_esc(name)}</th>{cells}</tr>')
    return (
        "<h2>Headline metrics</h2>\n"
        f'<div class="statement">{_statement(data.provenance)}'
        "<p>Each cell: value [95% interval]. brier, nll and ece: lower is better; every other metric: higher "
        "is better. threshold: the one each model deploys (cross-fitted decisions used each fold's own).</p></div>\n"
        f'<div class="scroll"><table id="headline"><thead><tr><th scope="col">metric</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _metric_cell(m: Any) -> str:
    if not isinstance(m, dict):
        return "—"
    value, low, high = (_fmt(m.get(k)) for k in ("value", "ci_low", "ci_high"))
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


def _members_section(data: ReportData, sweep: _Sweep | str) -> str:
    rank, metric = _member_scores(data, sweep)
    metric_name = sweep.record["metric"] if isinstance(sweep, _Sweep) else "sweep metric"
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


def _member_scores(data: ReportData, sweep: _Sweep | str) -> tuple[dict, dict]:
    """Rank and best sweep metric per member: from results.parquet, else from provenance["members"]."""
    if isinstance(sweep, _Sweep):
        table = sweep.table.set_index("trial_id")
        return table["rank"].to_dict(), table["best_metric"].to_dict()
    listed = [m for m in data.provenance.get("members", []) if isinstance(m, dict) and "trial_id" in m]
    return ({m["trial_id"]: m.get("rank") for m in listed}, {m["trial_id"]: m.get("sweep_metric") for m in listed})


def _figure(name: str, draw: Callable[..., Figure], *args: Any, caption: str, narrow: bool = False) -> str:
    """An <img> of draw(*args), or the note of the _Skip it raised."""
    try:
        fig = draw(*args)
    except _Skip as e:
        return f'<p class="note" id="note-{name}">{_esc(_TITLES[name])} not shown: {_esc(e)}</p>'
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    fig.clear()  # no pyplot: the figure is freed with its last reference
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    alt = _ALT[name]
    cls = ' class="narrow"' if narrow else ""
    return (f'<figure{cls}><img id="fig-{name}" alt="{_esc(alt)}" src="{uri}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


# --- figures -----------------------------------------------------------------------

_TITLES = {"roc": "ROC", "reliability": "Reliability diagram", "confusion": "Confusion matrix",
           "history": "Sweep history", "importance": "Hyperparameter importance"}
_ALT = {
    "roc": "ROC curves of the members and of the ensemble before and after calibration",
    "reliability": "Reliability diagram of the ensemble before and after calibration",
    "confusion": "Confusion matrix of the out-of-fold decisions",
    "history": "Sweep history: the sweep metric of every trial against wall time",
    "importance": "Hyperparameter importance (fANOVA) from the sweep's trials",
}
_ROC_CAPTION = ("ROC of each member (thin) and of the ensemble (bold) on the holdout, from the same probabilities "
                "as the headline table. A monotone calibrator (temperature, platt) leaves the ROC unchanged.")
_RELIABILITY_CAPTION = (f"Observed positive rate against mean predicted P(positive) in {N_ECE_BINS} equal-width "
                        "bins; marker area is proportional to the bin's count; empty bins are not drawn.")
_HISTORY_CAPTION = ("The sweep metric at every epoch report of every trial, against wall time since the sweep's "
                    "first report (progress.csv timestamps).")
_IMPORTANCE_CAPTION = ("fANOVA importance (Optuna, seed 0) of the sampled hyperparameters for each trial's best "
                       "sweep metric. ASHA-stopped trials count with the best metric they reached; conditional "
                       "parameters that some trials did not sample are left out by Optuna.")


def _confusion_caption(data: ReportData) -> str:
    return (f"Counts of the out-of-fold decisions (each holdout fold thresholded by the pipeline fitted without it); "
            f"the deployed ensemble's threshold is {data.threshold:.4f}. Row percentages: specificity (top) "
            "and sensitivity (bottom) on the diagonal.")


def _roc_figure(data: ReportData) -> Figure:
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    for j, tid in enumerate(data.member_ids):
        p = data.member_probs[:, j]
        fpr, tpr, _ = roc_curve(data.y, p)
        ax.plot(fpr, tpr, lw=1, alpha=0.55, color=f"C{j % 10}",
                label=f"member {tid} (AUC {roc_auc_score(data.y, p):.3f})")
    # calibrated first, so that the dashed uncalibrated curve stays visible where the two coincide
    for p, label, style in ((data.ensemble_calibrated, f"ensemble, {data.calibration}", "-"),
                            (data.ensemble_uncalibrated, "ensemble, before calibration", "--")):
        fpr, tpr, _ = roc_curve(data.y, p)
        ax.plot(fpr, tpr, lw=2.6, ls=style, color="black" if style == "-" else "#d62728",
                label=f"{label} (AUC {roc_auc_score(data.y, p):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)",
           title="ROC", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _reliability_figure(data: ReportData) -> Figure:
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
    edges = np.linspace(0.0, 1.0, N_ECE_BINS + 1)
    for p, label, color, marker in ((data.ensemble_uncalibrated, "before calibration", "#d62728", "s"),
                                    (data.ensemble_calibrated, f"after ({data.calibration})", "black", "o")):
        observed, predicted = calibration_curve(data.y, p, n_bins=N_ECE_BINS, strategy="uniform")
        # the counts of calibration_curve's own bins (it returns only the non-empty ones)
        counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=N_ECE_BINS)
        counts = counts[counts > 0]
        ece = expected_calibration_error(data.y, p)
        ax.plot(predicted, observed, color=color, lw=1.2, alpha=0.7)
        ax.scatter(predicted, observed, s=12 + 400 * counts / counts.max(), color=color, marker=marker,
                   alpha=0.75, edgecolors="white", label=f"{label}, ECE {ece:.3f}")
    ax.set(xlabel="mean predicted P(positive) in bin", ylabel="observed fraction positive",
           title=f"Reliability ({N_ECE_BINS} equal-width bins)", xlim=(0, 1), ylim=(-0.02, 1.02), aspect="equal")
    ax.legend(loc="upper left", fontsize=8, markerscale=0.6)
    fig.tight_layout()
    return fig


def _confusion_figure(data: ReportData) -> Figure:
    cm = confusion_matrix(data.y, data.decisions, labels=[0, 1])
    fig = Figure(figsize=(4.8, 4.0))
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues", vmin=0)
    rows = cm.sum(axis=1, keepdims=True)
    for (i, j), count in np.ndenumerate(cm):
        share = count / rows[i, 0] if rows[i, 0] else float("nan")
        ax.text(j, i, f"{count}\n{share:.1%}", ha="center", va="center", fontsize=12,
                color="white" if count > cm.max() / 2 else "black")
    names = list(data.class_names)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title="Confusion matrix (out-of-fold)")
    ax.tick_params(axis="y", labelrotation=90)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class _Sweep:
    dir: Path
    record: dict  # lungsweep_sweep.json
    table: pd.DataFrame  # results.parquet


def _read_sweep(sweep_dir: Path | None) -> _Sweep | str:
    """The sweep's record and results table, or why they cannot be shown."""
    if sweep_dir is None:
        return "no sweep folder was given."
    sweep_dir = Path(sweep_dir)
    for name in (SWEEP_FILE, RESULTS_PARQUET):
        if not (sweep_dir / name).is_file():
            return f"{sweep_dir} has no {name} (run `lungsweep results {sweep_dir}` on the sweep folder)."
    return _Sweep(sweep_dir, read_record(sweep_dir), read_results(sweep_dir))


def _need_sweep(sweep: _Sweep | str) -> _Sweep:
    if isinstance(sweep, str):
        raise _Skip(sweep)
    return sweep


def _history_figure(data: ReportData, sweep: _Sweep | str) -> Figure:
    sweep = _need_sweep(sweep)
    metric = sweep.record["metric"]
    curves = []
    for row in sweep.table.itertuples():
        path = trial_dir(sweep.dir, row.trial_id) / "progress.csv"
        if not path.is_file():
            continue
        try:
            frame = pd.read_csv(path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue
        if metric not in frame or "timestamp" not in frame:
            continue
        frame = frame[[metric, "timestamp"]].apply(pd.to_numeric, errors="coerce").dropna().sort_values("timestamp")
        if len(frame):
            curves.append((row.trial_id, row.status, frame["timestamp"].to_numpy(), frame[metric].to_numpy()))
    if not curves:
        raise _Skip(f"no trial folder of {sweep.dir} holds a progress.csv with timestamp and {metric}.")
    t0 = min(t[0] for _, _, t, _ in curves)
    span = max(t[-1] for _, _, t, _ in curves) - t0
    unit, scale = ("s", 1.0) if span < 120 else ("min", 60.0) if span < 7200 else ("h", 3600.0)

    fig = Figure(figsize=(10.5, 4.8))
    ax = fig.add_subplot()
    members = {tid: j for j, tid in enumerate(data.member_ids)}
    lines: dict[int, Line2D] = {}
    for tid, status, t, v in curves:
        x = (t - t0) / scale
        j = members.get(tid)
        color = "#999999" if j is None else f"C{j % 10}"
        line = ax.plot(x, v, color=color, lw=1 if j is None else 2.6, alpha=0.6 if j is None else 1.0,
                       marker="o" if len(x) == 1 else None, ms=3, zorder=3 if j is not None else 2)[0]
        if j is not None:
            lines[j] = line
            line.set_label(f"member {tid}")
        if status == "stopped":
            ax.plot(x[-1], v[-1], marker="x", color=color, ms=8, mew=2, zorder=4)
    handles = [Line2D([], [], color="#999999", lw=1, label="trial"), *(lines[j] for j in sorted(lines)),
               Line2D([], [], ls="none", marker="x", color="black", ms=8, mew=2, label="stopped by ASHA (last report)")]
    better = "higher" if sweep.record.get("mode", "max") == "max" else "lower"
    ax.set(xlabel=f"wall time since the sweep's first report ({unit})", ylabel=metric,
           title=f"Sweep history: {metric} per epoch, {len(curves)} trials ({better} is better)")
    values = np.concatenate([v for _, _, _, v in curves])
    if values.min() > 0 and values.max() / values.min() > 20:  # a diverged trial (loss 10) would flatten the rest
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def _distribution(spec: dict) -> optuna.distributions.BaseDistribution:
    kind, values = spec["kind"], spec["values"]
    if kind == "choice":
        return optuna.distributions.CategoricalDistribution(list(values))
    if kind in ("uniform", "loguniform"):
        return optuna.distributions.FloatDistribution(float(values[0]), float(values[1]), log=kind == "loguniform")
    if kind in ("int", "logint"):
        return optuna.distributions.IntDistribution(int(values[0]), int(values[1]), log=kind == "logint")
    raise _Skip(f"the sweep's space has parameter {spec.get('name')!r} of unknown kind {kind!r}.")


def _param(value: Any, dist: optuna.distributions.BaseDistribution) -> tuple[bool, Any]:
    """(present, value in `dist`'s terms): NaN means a conditional parameter that was not sampled."""
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False, None
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        match = [c for c in dist.choices if c == value and isinstance(c, bool) == isinstance(value, bool)]
        return (True, match[0]) if match else (False, None)
    number = float(value)
    if isinstance(dist, optuna.distributions.IntDistribution):
        number = int(round(number))
    return dist.low <= number <= dist.high, number


def _study(record: dict, table: pd.DataFrame) -> optuna.Study:
    """An in-memory study of the sweep: one finished trial per row with a best metric."""
    distributions = {spec["name"]: _distribution(spec) for spec in record["space"]}
    direction = "maximize" if record.get("mode", "max") == "max" else "minimize"
    study = optuna.create_study(direction=direction)
    for row in table.to_dict("records"):
        value = row.get("best_metric")
        if value is None or not np.isfinite(value):
            continue
        params, dists = {}, {}
        for name, dist in distributions.items():
            present, v = _param(row.get(f"config/{name}"), dist)
            if present:
                params[name], dists[name] = v, dist
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(value)))
    return study


def _importance_figure(sweep: _Sweep | str) -> Figure:
    sweep = _need_sweep(sweep)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory"
    try:
        study = _study(sweep.record, sweep.table)
        if len(study.trials) < 3:
            raise _Skip(f"only {len(study.trials)} finished trial(s) with a best metric; importance needs 3 or more.")
        if len({t.value for t in study.trials}) == 1:  # fANOVA would still hand out importances, from rounding noise
            raise _Skip(f"all {len(study.trials)} finished trials reached the same best metric; nothing to attribute.")
        try:
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except (RuntimeError, ValueError) as e:  # zero variance of the metric; no usable parameter
            raise _Skip(f"Optuna could not compute importances from {len(study.trials)} trials: {e}") from e
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not importances:
        raise _Skip("no hyperparameter was sampled in every finished trial, so none can be ranked.")
    unranked = sorted(set(spec["name"] for spec in sweep.record["space"]) - set(importances))
    names = list(importances)[::-1]  # largest on top
    values = [importances[n] for n in names]
    fig = Figure(figsize=(6.4, 1.9 + 0.45 * len(names) + 0.25 * bool(unranked)))
    ax = fig.add_subplot()
    bars = ax.barh(names, values, color="#3b7dd8")
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=9)
    note = f"\nnot ranked (sampled in only some trials or none): {', '.join(unranked)}" if unranked else ""
    ax.set(xlabel="importance (fANOVA, sums to 1)" + note, xlim=(0, max(1.0, max(values)) * 1.12),
           title=f"Hyperparameter importance for {sweep.record['metric']} ({len(study.trials)} trials)")
    fig.tight_layout()
    return fig


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
.note { color: #7a4d00; background: #fff6e0; border-left: 4px solid #e0a000; padding: 8px 12px; }
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
