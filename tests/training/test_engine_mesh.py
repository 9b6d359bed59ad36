"""Every combination of the step builder and fit on 8 forced CPU devices (one subprocess).

SGD with momentum throughout. The mesh, micro-batches and a noiseless DP-SGD step are the same
computation as the plain single-device step, so their params agree to float rounding; the fits
with augmentation on a mesh (both loops) equal the single-device fit of the same seed; the full
combination (mesh, DP-SGD, micro-batches, EMA, augmentation, on-device) runs and reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "helpers" / "engine_worker.py"


@pytest.fixture(scope="module")
def measured() -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(WORKER)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "name",
    [
        "mesh_vs_single",
        "microbatches4_vs_whole",
        "microbatches4_single_vs_whole",
        "dpsgd_noiseless_vs_plain",
        "dpsgd_noiseless_mb2_vs_plain",
    ],
)
def test_step_equals_the_plain_single_device_step(measured, name):
    assert measured[name] <= 1e-5, (name, measured[name])


def test_noise_is_there(measured):
    assert measured["dpsgd_noisy_vs_plain"] > 1e-3  # the comparisons above can fail


def test_fit_on_mesh_with_augmentation_equals_single_device(measured):
    assert measured["fit_mesh_device_aug_vs_single"] <= 1e-4
    assert measured["fit_mesh_host_aug_vs_single"] <= 1e-4
    assert measured["fit_aug_changes_params"] > 1e-3  # augmentation did something


def test_everything_at_once_runs_and_reports(measured):
    assert measured["full_steps"] == 8
    assert 0 < measured["full_epsilon"] < float("inf")
    assert 0 <= measured["full_ema_val_accuracy"] <= 1
    assert measured["full_ema_differs"] > 0
    assert measured["full_ema_sharded"] == 8  # the average lives on the mesh like the params
