#!/usr/bin/env bash
# Install, then run the main job on the shared COVID-CT images: a k-fold sweep of two
# pretrained configs, an ensemble fitted on their out-of-fold predictions and scored on the
# untouched holdout, a verified ONNX export and a prediction. Run it again to resume.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/lungsweep run --quick --data ../shared/datasets/covid-ct-qsr/train --out runs/quickstart "$@"
