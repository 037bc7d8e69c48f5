#!/usr/bin/env bash
# Install, then train the bundled default: pretrained EfficientNet-Lite0 on the shared COVID-CT images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/lungsweep train --config configs/quickstart.yaml --out runs/quickstart --resume "$@"
