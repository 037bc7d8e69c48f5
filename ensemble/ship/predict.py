"""`lungsweep predict`: an exported MODEL_DIR on new images, streamed in batches.

Images are decoded by trainers.decode_image (the training code) in a thread pool
while the previous batch runs, so decoding hides behind inference. A file that
cannot be decoded gets a row with its error and no probability; the others are
predicted as usual, and the CSV is written whole or not at all.
"""
from __future__ import annotations

import csv
import logging
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

from trainers.atomic import atomic_file
from trainers.errors import BadImageError, DataError
from trainers.progress import progress_bar

from ..runtime.inputs import samples
from ..runtime.predictor import Predictor, decode_for, stack_for

__all__ = ["predict", "PredictSummary", "COLUMNS"]

log = logging.getLogger(__name__)

COLUMNS = ("path", "probability", "label", "error")

@dataclass
class PredictSummary:
    predicted: int = 0
    positive: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

def predict(
    model: Predictor,
    paths: list[Path],
    *,
    out: str | Path | None = None,
    stream: TextIO | None = None,
    batch_size: int = 32,
    progress: bool = True,
    workers: int | None = None,
) -> PredictSummary:
    """Write one CSV row per image (COLUMNS) to `out` (atomically), else to `stream` (default: stdout).

    A DICOM series or volume gives one row per slice kept by the model's recorded `slices`
    policy, named `path#index` for a slice inside a file (see ensemble.runtime.inputs.samples)."""
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    summary = PredictSummary()
    if out is not None:
        with atomic_file(out) as tmp, open(tmp, "w", newline="") as fh:
            _write_rows(model, paths, fh, summary, batch_size, progress, workers)
    else:
        _write_rows(model, paths, stream or sys.stdout, summary, batch_size, progress, workers)
    for path, reason in summary.bad:
        log.warning("could not read %s: %s", path, reason)
    return summary

def _write_rows(model, paths, fh, summary, batch_size, progress, workers) -> None:
    writer = csv.writer(fh)
    writer.writerow(COLUMNS)
    negative = next(c for c in model.classes if c != model.positive)
    rows = samples(paths, model.slices)
    bar = progress_bar(range(len(rows)), total=len(rows), desc="predicting", enabled=progress)
    for batch_paths, decoded in _decoded_batches(model, rows, batch_size, workers):
        good = [d for d in decoded if not isinstance(d, BadImageError)]
        probs = iter(model.predict_proba(stack_for(model, good)) if good else ())
        for path, d in zip(batch_paths, decoded):
            if isinstance(d, BadImageError):
                summary.bad.append((str(path), d.reason))
                writer.writerow((str(path), "", "", d.reason))
                continue
            p = float(next(probs))
            positive = p >= model.threshold
            summary.predicted += 1
            summary.positive += int(positive)
            writer.writerow((str(path), f"{p:.6f}", model.positive if positive else negative, ""))
        for _ in batch_paths:
            next(bar, None)
    fh.flush()

def _decoded_batches(
    model: Predictor, rows: list, batch_size: int, workers: int | None
) -> Iterator[tuple[list[str], list]]:
    """Batches of (row names, decoded images); the next batch decodes while the caller runs this one."""

    def decode(row):
        if isinstance(row[1], BadImageError):
            return row[1]
        try:
            return decode_for(model, row[1], frame=row[2])
        except BadImageError as e:
            return e

    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        pending: list[Future] | None = [pool.submit(decode, p) for p in batches[0]] if batches else None
        for k, batch in enumerate(batches):
            current = pending
            pending = [pool.submit(decode, p) for p in batches[k + 1]] if k + 1 < len(batches) else None
            yield [row[0] for row in batch], [f.result() for f in current]
