"""`lungsweep evaluate`: score an exported MODEL_DIR, an ensemble folder or one checkpoint on a labelled image folder."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from trainers import discover
from trainers.atomic import atomic_write_text

from ..errors import EnsembleError
from ..fit.metrics import METRIC_NAMES, bootstrap_metrics, which_estimate
from ..runtime.predictor import load_predictor, proba_for_dataset

__all__ = ["evaluate", "format_metrics"]

log = logging.getLogger(__name__)


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    n_boot: int = 1000,
    group_regex: str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """metrics.json keys (value and 95% bootstrap interval) of the model on `data`.

    The same keys whether `model_dir` is MODEL_DIR (run by onnxruntime), ENS_DIR, a bag or a checkpoint.
    Intervals resample groups only where every class has enough of them (ensemble.fit.metrics.interval_unit);
    metrics["interval"] says which and why, metrics["data"] how the groups were formed.
    """
    model = load_predictor(model_dir, device=device)
    data_classes = sorted(p.name for p in Path(data).iterdir() if p.is_dir()) if Path(data).is_dir() else []
    unknown = sorted(set(data_classes) - set(model.classes))
    if unknown:
        raise EnsembleError(
            f"{data} has class folder(s) {unknown} that the model does not know; its classes are "
            f"{model.classes}: rename the folders to match"
        )
    dataset = discover(data=data, positive=model.positive, group_regex=group_regex, slices=model.slices)
    p = proba_for_dataset(model, dataset)
    metrics = bootstrap_metrics(dataset.binary_labels, p, dataset.groups, model.threshold, n_boot=n_boot)
    metrics["data"] = (
        f"{len(dataset)} images in {dataset.root} ({len(set(dataset.groups))} groups: "
        f"{dataset.grouping.description}); threshold {model.threshold:.4f} from the model"
    )
    if out is not None:
        atomic_write_text(out, json.dumps(metrics, indent=1, default=float))
    return metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    """The metrics table for a terminal: a metric without an interval shows why instead (metrics["interval"]).

    Where the metrics have a development cross-fit (a k-fold job's ensemble), it stands beside
    the holdout, each with its size, and a line says which is the larger-sample estimate.
    """
    interval = metrics.get("interval", {})
    crossfit = metrics.get("development_crossfit")
    columns = [("value", metrics)] if crossfit is None else [
        (f"holdout, {metrics['n']} images", metrics), (f"development cross-fit, {crossfit['n']} images", crossfit)]
    width = max(31, *(len(title) + 2 for title, _ in columns))
    lines = [(f"{'metric':<21} " + "".join(f"{title:<{width}}" for title, _ in columns)
              + ("" if crossfit is not None else f"{interval.get('confidence', 0.95):.0%} interval")).rstrip()]
    for name in METRIC_NAMES:
        lines.append(f"{name:<21} " + "".join(f"{_cell(block, name):<{width}}" for _, block in columns).rstrip())
    if metrics.get("threshold") is not None:
        lines.append(f"{'threshold':<21} {metrics['threshold']:7.4f}")
    if crossfit is None:
        lines.append(f"{'n':<21} {metrics['n']:7d}")
    if "statement" in interval:
        lines.append(interval["statement"])
    if crossfit is not None:
        lines.append(which_estimate(metrics["n"], crossfit["n"]))
    measures = metrics.get("calibration_measures")
    if measures:
        lines.append(f"ece over {measures['ece_bins']} {measures['ece_bin_rule']}; calibration slope and intercept: "
                     f"{measures['slope_and_intercept']}.")
    if "operating_point" in metrics:
        lines.append(metrics["operating_point"]["statement"])
    return "\n".join(lines)


def _cell(block: dict[str, Any], name: str) -> str:
    m = block[name]
    if m.get("ci_low") is not None:
        return f"{m['value']:7.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"
    why = block.get("interval", {}).get("missing", {}).get(name, "not computed")
    return f"{m['value']:7.4f} no interval: {why}"
