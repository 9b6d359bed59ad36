#!/usr/bin/env bash
# The GPU/TPU check: W2 (CIFAR ResNet-18 train step) and W3 (ResNet-18 inference) in jcnn,
# Flax linen and PyTorch CUDA on the accelerator JAX sees; a 300 s budget in all.
#
#   bench/gpu.sh                      # table: runs/bench/device.md (+ device.json)
#   bench/gpu.sh --docs               # also docs/device.md (only from a full accelerator run)
#   bench/gpu.sh --quick              # tiny sizes, seconds (any machine)
#   bench/gpu.sh --steps 50 --out device-quick.md
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
