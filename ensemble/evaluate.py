"""`lungsweep evaluate`: score an exported MODEL_DIR, an ensemble folder or one checkpoint on a labelled image folder."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from trainers import discover
from trainers.atomic import atomic_write_text

from .errors import EnsembleError
from .metrics import METRIC_NAMES, bootstrap_metrics
from .predictor import load_predictor, proba_for_dataset

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
    """metrics.json keys (value and 95% group-bootstrap interval) of the model on `data`.

    The same keys whether `model_dir` is MODEL_DIR (run by onnxruntime), ENS_DIR, a bag or a checkpoint.
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
        f"{len(dataset)} images in {dataset.root} ({len(set(dataset.groups))} groups); threshold "
        f"{model.threshold:.4f} from the model; 95% intervals from {n_boot} bootstrap resamples of groups"
    )
    if out is not None:
        atomic_write_text(out, json.dumps(metrics, indent=1, default=float))
    return metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    lines = [f"{'metric':<18} {'value':>7}   95% interval"]
    for name in METRIC_NAMES:
        m = metrics[name]
        lines.append(f"{name:<18} {m['value']:7.4f}   [{m['ci_low']:.4f}, {m['ci_high']:.4f}]")
    lines.append(f"{'threshold':<18} {metrics['threshold']:7.4f}")
    lines.append(f"{'n':<18} {metrics['n']:7d}")
    return "\n".join(lines)
