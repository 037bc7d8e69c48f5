#!/usr/bin/env bash
# Create .venv and install lungsweep with its test tools. torch and torchvision are
# not pinned: pip takes a matching pair from the registry (runs on CPU and CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --progress-bar off -e ".[test]"
.venv/bin/python -c "import torch, torchvision, timm, ray, optuna; print('installed: torch', torch.__version__, '| torchvision', torchvision.__version__, '| timm', timm.__version__, '| ray', ray.__version__, '| optuna', optuna.__version__)"
