"""Doctest namespace: the names every docstring example may use without importing them.

``python -m pytest`` collects the docstring examples of ``jcnn/`` (``--doctest-modules``); each
runs with its module's globals plus these: ``jax``, ``jnp``, ``np``, ``optax``, ``jcnn``, ``L``
(``jcnn.layers``), ``models`` (``jcnn.models``), every layer and combinator of ``jcnn.layers`` by
name, and ``key`` (``jax.random.key(0)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jcnn
from jcnn import layers as L
from jcnn import models


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
