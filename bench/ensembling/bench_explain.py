"""Where an ensemble's models look: Grad-CAM over its holdout (or a labelled folder), and the share of the
maps on the images' border band, per class and per outcome.

`lungsweep audit` finds the COVID-CT label predictable from the image format alone (crops of paper figures:
borders, captions). If the models read the source rather than the lungs, the positive class's maps put
more mass on the border band than a map spread evenly would ('uniform'), and more than the negative class's.

    .venv/bin/python -m bench.ensembling.bench_explain runs/quickstart/ensemble --out runs/bench_explain
    .venv/bin/python -m bench.ensembling.bench_explain ENS_DIR --data path/to/labelled/folder --out DIR

Writes DIR/explanations.csv, summary.json, summary.csv and overlays/ (as `lungsweep explain` does) and prints
the per-class and per-outcome table with the wall time. --smoke explains the first 8 images only.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timezone

from ensemble import (
    explain, find_images, format_summary, load_explainable, read_ensemble_json, read_holdout_predictions,
    samples_of, training_samples,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ens_dir", help="ENS_DIR from `lungsweep ensemble` (or the main job's OUT/ensemble)")
    parser.add_argument("--data", help="a labelled folder (class sub-folders) instead of the ensemble's holdout")
    parser.add_argument("--out", required=True, help="folder for the overlays, rows and summaries")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="the first 8 images only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    model = load_explainable(args.ens_dir, device=args.device)
    if args.data:
        samples, where = samples_of(find_images([args.data]), model), args.data
    else:  # the holdout, read from the data the members were trained on
        config = read_ensemble_json(args.ens_dir)["provenance"]["members"][0]["config"]
        ids = [str(i) for i in read_holdout_predictions(args.ens_dir)["id"]]
        samples, where = training_samples(config, ids), f"the holdout of {args.ens_dir} ({config.get('data')})"
    if args.smoke:
        samples = samples[:8]
    print(f"# bench_explain {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: {len(samples)} images of {where}; "
          f"device {model.device}")
    t0 = time.perf_counter()
    result = explain(model, samples, args.out, source=args.ens_dir)
    seconds = time.perf_counter() - t0
    summary = result.summary
    print(f"maps: {summary['cam']['method']} at {summary['cam']['layers']}, display {summary['cam']['display_size']} px; "
          f"threshold {summary['threshold']:.4f}; content box: the image less {summary['border_margin']:.0%} a side")
    print(format_summary(summary))
    print(f"explained {result.explained} image(s) in {seconds:.1f} s ({seconds / max(result.explained, 1):.2f} s each)"
          f"; {len(result.bad)} unreadable; wrote {args.out}/")
    return 1 if result.bad else 0


if __name__ == "__main__":
    sys.exit(main())
