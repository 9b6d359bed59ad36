"""Doctest namespace: the names every docstring example may use without importing them.

``python -m pytest`` collects the docstring examples of ``jcnn/`` (``--doctest-modules``); each
runs with its module's globals plus these: ``jax``, ``jnp``, ``np``, ``optax``, ``jcnn``, ``L``
(``jcnn.layers``), ``models`` (``jcnn.models``), every layer and combinator of ``jcnn.layers`` by
name, and ``key`` (``jax.random.key(0)``).
"""

from __future__ import annotations

import os
from pathlib import Path

# Doctests (run with or without tests/conftest.py) must not write to the user's XLA cache.
os.environ.setdefault("JCNN_COMPILE_CACHE", str(Path(__file__).parent / ".pytest_cache" / "jax"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

import jcnn  # noqa: E402
from jcnn import layers as L  # noqa: E402
from jcnn import models  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace.update(
        {name: getattr(L, name) for name in L.__all__},
        jax=jax,
        jnp=jnp,
        np=np,
        optax=optax,
        jcnn=jcnn,
        L=L,
        models=models,
        key=jax.random.key(0),
    )
