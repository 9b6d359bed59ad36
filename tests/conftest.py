"""Shared fixtures: strict rank promotion for every test, a seeded NumPy RNG, float64 on demand."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Scripts, not test modules: ``--doctest-modules`` must not import them (the fixture writer needs
# torch and writes a file; the helpers are subprocess entry points).
collect_ignore = [
    "fixtures/make_torch_fixtures.py",
    "fixtures/make_torchvision_fixtures.py",
    "fixtures/torchvision_table.py",
    "fixtures/check_torchvision_strict.py",
    "fixtures/make_transform_fixtures.py",
    "fixtures/make_macs_fixtures.py",
    "fixtures/make_layer_fixtures.py",
    "fixtures/onnx_table.py",
    "helpers",
]

# Many tests compile the same small programs (init, train steps); JAX's persistent compilation
# cache lets pytest-xdist workers and test subprocesses reuse them within and across runs.
_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def mnist_dir() -> Path:
    """MNIST folder for tests: ``$JCNN_TEST_MNIST_DIR``, else ``<repo>/../shared/data/mnist``."""
    env = os.environ.get("JCNN_TEST_MNIST_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def _rank_promotion_raise():
    """Silent broadcasting between arrays of different ranks fails every test [NT]."""
    with jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture(autouse=True)
def _float32_matmuls(request):
    """Reference comparisons in full float32 on every backend: a GPU's default runs float32
    convolutions and matmuls in TF32 (about 1e-3 relative) and a TPU's in bfloat16 passes, so
    every tolerance here is float32's. ``@pytest.mark.default_precision`` keeps the default."""
    if request.node.get_closest_marker("default_precision") is not None:
        yield
        return
    with jax.default_matmul_precision("float32"):
        yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def x64():
    """Runs the test with 64-bit floats enabled (exact comparisons against NumPy references)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def mnist_path() -> Path:
    """The MNIST folder; skips the test when it is not there."""
    path = mnist_dir()
    if not path.is_dir():
        pytest.skip(f"MNIST not found at {path} (set JCNN_TEST_MNIST_DIR)")
    return path
