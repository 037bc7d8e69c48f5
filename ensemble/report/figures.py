"""The report's figures: matplotlib `Figure`s drawn from holdout predictions and from the sweep folder.

    fig = roc_figure(y, member_ids, member_probs, calibrated, uncalibrated, "temperature")
    uri = png_data_uri(fig)                     # data:image/png;base64,...

Figures use matplotlib's object-oriented API (`Figure`, rendered by Agg when saved to
PNG), so no pyplot state or GUI backend is touched. A figure that cannot be drawn from
what is there raises FigureSkipped, whose message says why; the page shows it instead.
The sweep's record and results come as picking members read them (search.record.SweepFolder);
only each trial's progress.csv is read here, for the history.
"""
from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from search.record import PROGRESS_CSV, trial_dir
from search.space import ParamSpec, distribution
from trainers.errors import ConfigError

from ..fit.metrics import CALIBRATION_LINE, ECE_BIN_RULE, clinical_metrics, ece_bin_count, ece_bins, ece_edges, metric_text

if TYPE_CHECKING:
    from search.record import SweepFolder

__all__ = [
    "ALT", "CAPTIONS", "DPI", "FigureSkipped", "TITLES", "confusion_caption", "confusion_figure",
    "history_figure", "importance_figure", "png_data_uri", "reliability_caption", "reliability_figure", "roc_figure",
]

DPI = 110
TITLES = {"roc": "ROC", "reliability": "Reliability diagram", "confusion": "Confusion matrix",
          "history": "Sweep history", "importance": "Hyperparameter importance"}
ALT = {
    "roc": "ROC curves of the members and of the ensemble before and after calibration",
    "reliability": "Reliability diagram of the ensemble before and after calibration",
    "confusion": "Confusion matrix of the out-of-fold decisions",
    "history": "Sweep history: the sweep metric of every trial against wall time",
    "importance": "Hyperparameter importance (fANOVA) from the sweep's trials",
}
# What each figure shows, next to the code that draws it (the confusion and reliability captions need numbers).
CAPTIONS = {
    "roc": ("ROC of each member (thin) and of the ensemble (bold) on the holdout, from the same probabilities "
            "as the headline table. A monotone calibrator (temperature, platt) leaves the ROC unchanged."),
    "history": ("The sweep metric at every epoch report of every trial, against wall time since the sweep's "
                "first report (progress.csv timestamps)."),
    "importance": ("fANOVA importance (Optuna, seed 0) of the sampled hyperparameters for each trial's best "
                   "sweep metric. ASHA-stopped trials count with the best metric they reached; conditional "
                   "parameters that some trials did not sample are left out by Optuna."),
}


def confusion_caption(threshold: float) -> str:
    return (f"Counts of the out-of-fold decisions (each holdout fold thresholded by the pipeline fitted without it); "
            f"the deployed ensemble's threshold is {threshold:.4f}. Row percentages: specificity (top) "
            "and sensitivity (bottom) on the diagonal.")


def reliability_caption(n: int, calibrated: dict[str, Any], uncalibrated: dict[str, Any]) -> str:
    """The reliability figure's bins and the calibration slope and intercept, with intervals, from the
    bootstrap_metrics blocks of the calibrated and uncalibrated ensemble (the figure's probabilities)."""
    bins = ece_bin_count(n)
    line = " ".join(
        f"{label}: slope {metric_text(block, 'calibration_slope', 2)}, intercept "
        f"{metric_text(block, 'calibration_intercept', 2)}, ECE {metric_text(block, 'ece')}."
        for label, block in (("After calibration", calibrated), ("Before", uncalibrated)))
    return (f"Observed positive rate against mean predicted P(positive) in {bins} bins of about {n // bins} of the "
            f"{n} images ({ECE_BIN_RULE}); the ECE sums over the same bins; marker area is proportional to the "
            f"bin's count. Calibration slope and intercept: the {CALIBRATION_LINE}. {line}")


class FigureSkipped(Exception):
    """A figure that cannot be drawn from what is there; its message becomes the note shown instead."""


def png_data_uri(fig: Figure) -> str:
    """`fig` as an inline PNG (the page loads no external resource); the figure is cleared after."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    fig.clear()  # no pyplot: the figure is freed with its last reference
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --- holdout figures ---------------------------------------------------------------


def roc_figure(y: np.ndarray, member_ids: list[str], member_probs: np.ndarray, calibrated: np.ndarray,
               uncalibrated: np.ndarray, calibration: str) -> Figure:
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    for j, tid in enumerate(member_ids):
        p = member_probs[:, j]
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=1, alpha=0.55, color=f"C{j % 10}", label=f"member {tid} (AUC {roc_auc_score(y, p):.3f})")
    # calibrated first, so that the dashed uncalibrated curve stays visible where the two coincide
    for p, label, style in ((calibrated, f"ensemble, {calibration}", "-"),
                            (uncalibrated, "ensemble, before calibration", "--")):
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=2.6, ls=style, color="black" if style == "-" else "#d62728",
                label=f"{label} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)",
           title="ROC", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def reliability_figure(y: np.ndarray, calibrated: np.ndarray, uncalibrated: np.ndarray, calibration: str) -> Figure:
    """Reliability diagram over the ECE's own equal-mass bins (trainers.metrics: ECE_BIN_RULE)."""
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
    n_bins = ece_bin_count(len(y))
    for p, label, color, marker in ((uncalibrated, "before calibration", "#d62728", "s"),
                                    (calibrated, f"after ({calibration})", "black", "o")):
        observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
        # the counts of calibration_curve's own bins (it returns only the non-empty ones)
        counts = np.bincount(ece_bins(p, ece_edges(p, n_bins)), minlength=n_bins)
        counts = counts[counts > 0]
        point = clinical_metrics(y, p, 0.5)  # the threshold plays no part in these three
        ax.plot(predicted, observed, color=color, lw=1.2, alpha=0.7)
        ax.scatter(predicted, observed, s=12 + 400 * counts / counts.max(), color=color, marker=marker,
                   alpha=0.75, edgecolors="white",
                   label=f"{label}, ECE {point['ece']:.3f}, slope {point['calibration_slope']:.2f}, "
                         f"intercept {point['calibration_intercept']:.2f}")
    ax.set(xlabel="mean predicted P(positive) in bin", ylabel="observed fraction positive",
           title=f"Reliability ({n_bins} equal-mass bins)", xlim=(0, 1), ylim=(-0.02, 1.02), aspect="equal")
    ax.legend(loc="upper left", fontsize=8, markerscale=0.6)
    fig.tight_layout()
    return fig


def confusion_figure(y: np.ndarray, decisions: np.ndarray, class_names: tuple[str, str]) -> Figure:
    cm = confusion_matrix(y, decisions, labels=[0, 1])
    fig = Figure(figsize=(4.8, 4.0))
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues", vmin=0)
    rows = cm.sum(axis=1, keepdims=True)
    for (i, j), count in np.ndenumerate(cm):
        share = count / rows[i, 0] if rows[i, 0] else float("nan")
        ax.text(j, i, f"{count}\n{share:.1%}", ha="center", va="center", fontsize=12,
                color="white" if count > cm.max() / 2 else "black")
    names = list(class_names)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title="Confusion matrix (out-of-fold)")
    ax.tick_params(axis="y", labelrotation=90)
    fig.tight_layout()
    return fig


# --- sweep figures -----------------------------------------------------------------
# Each takes the sweep as picking members read it (with its record), or a str that says why there is none.


def _need_sweep(sweep: SweepFolder | str) -> SweepFolder:
    if isinstance(sweep, str):
        raise FigureSkipped(sweep)
    return sweep


def history_figure(sweep: SweepFolder | str, member_ids: list[str]) -> Figure:
    sweep = _need_sweep(sweep)
    metric = sweep.metric
    curves = []
    for row in sweep.table.itertuples():
        path = trial_dir(sweep.run_dir, row.trial_id) / PROGRESS_CSV
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
        raise FigureSkipped(f"no trial folder of {sweep.run_dir} holds a {PROGRESS_CSV} with timestamp and {metric}.")
    t0 = min(t[0] for _, _, t, _ in curves)
    span = max(t[-1] for _, _, t, _ in curves) - t0
    unit, scale = ("s", 1.0) if span < 120 else ("min", 60.0) if span < 7200 else ("h", 3600.0)

    fig = Figure(figsize=(10.5, 4.8))
    ax = fig.add_subplot()
    members = {tid: j for j, tid in enumerate(member_ids)}
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


def _specs(record: dict) -> tuple[ParamSpec, ...]:
    """The sweep's space, rebuilt by search.space so the study's distributions are the ones sampled."""
    try:
        return tuple(ParamSpec.from_record(spec) for spec in record.get("space") or [])
    except ConfigError as e:
        raise FigureSkipped(f"the sweep's space cannot be read back: {e}.") from e


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


def _study(record: dict, specs: tuple[ParamSpec, ...], table: pd.DataFrame) -> optuna.Study:
    """An in-memory study of the sweep: one finished trial per row with a best metric."""
    distributions = {spec.name: distribution(spec) for spec in specs}
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


def importance_figure(sweep: SweepFolder | str) -> Figure:
    sweep = _need_sweep(sweep)
    specs = _specs(sweep.record)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory"
    try:
        study = _study(sweep.record, specs, sweep.table)
        if len(study.trials) < 3:
            raise FigureSkipped(
                f"only {len(study.trials)} finished trial(s) with a best metric; importance needs 3 or more.")
        if len({t.value for t in study.trials}) == 1:  # fANOVA would still hand out importances, from rounding noise
            raise FigureSkipped(
                f"all {len(study.trials)} finished trials reached the same best metric; nothing to attribute.")
        try:
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except (RuntimeError, ValueError) as e:  # zero variance of the metric; no usable parameter
            raise FigureSkipped(f"Optuna could not compute importances from {len(study.trials)} trials: {e}") from e
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not importances:
        raise FigureSkipped("no hyperparameter was sampled in every finished trial, so none can be ranked.")
    unranked = sorted({spec.name for spec in specs} - set(importances))
    names = list(importances)[::-1]  # largest on top
    values = [importances[n] for n in names]
    fig = Figure(figsize=(6.4, 1.9 + 0.45 * len(names) + 0.25 * bool(unranked)))
    ax = fig.add_subplot()
    bars = ax.barh(names, values, color="#3b7dd8")
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=9)
    note = f"\nnot ranked (sampled in only some trials or none): {', '.join(unranked)}" if unranked else ""
    ax.set(xlabel="importance (fANOVA, sums to 1)" + note, xlim=(0, max(1.0, max(values)) * 1.12),
           title=f"Hyperparameter importance for {sweep.metric} ({len(study.trials)} trials)")
    fig.tight_layout()
    return fig
