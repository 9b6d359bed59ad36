#!/usr/bin/env bash
# The GPU/TPU check on the accelerator JAX sees: W2 (CIFAR ResNet-18 train step, f32), W3
# (ResNet-18 inference, f32) and W4 (ResNet-50 train step, batch 256 at 224, bfloat16 mixed
# precision) in jcnn, Flax linen and PyTorch CUDA (eager; on W4 also torch.compile); first the
# chip's bfloat16 matmul rate (W4's MFU). TFLOP/s from jcnn.count_macs; a 540 s budget in all.
#
#   bench/gpu.sh                      # table: runs/bench/device.md (+ device.json)
#   bench/gpu.sh --docs               # also docs/device.md (only from a full accelerator run)
#   bench/gpu.sh --quick              # tiny sizes, about a minute (any machine, CPU too)
#   bench/gpu.sh --steps 50 --out device-quick.md
#   bench/gpu.sh --workloads W4       # only the ResNet-50 bfloat16 step
#
# Any argument goes to `python -m bench --device` (see `python -m bench --device --help`).
# $PYTHON picks the interpreter (default: .venv/bin/python when present, else python).
set -euo pipefail
cd "$(dirname "$0")/.."

# JAX grows its GPU memory on demand instead of taking 75% at start (PyTorch runs after it);
# quieter XLA logs; unbuffered output so the progress lines show as they come.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONUNBUFFERED=1

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv || true
fi
"$PYTHON" -c 'import jax; print("JAX devices:", jax.devices())' || true

exec "$PYTHON" -m bench --device "$@"
