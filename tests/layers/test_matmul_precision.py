"""with_matmul_precision: the convolutions and matmuls a wrapped layer traces carry the asked
precision (read from the jaxpr, so the test holds on every backend); nothing else changes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnn import layers as L
from jcnn import models


def _equations(jaxpr):  # noqa: ANN001, ANN202
    """Every equation of ``jaxpr`` and of the jaxprs inside its equations."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


def _precisions(net: L.Layer, shape: tuple[int, ...]) -> set[str]:
    """The precision of every conv and dot_general in ``net.apply``'s jaxpr (one example)."""
    _, params, state = net.init(jax.random.key(0), shape)
    closed = jax.make_jaxpr(lambda p, s, x: net.apply(p, s, x)[0])(params, state, jnp.ones(shape))
    found = set()
    for eqn in _equations(closed.jaxpr):
        if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
            precision = eqn.params["precision"]
            found.add(str(precision[0] if isinstance(precision, tuple) else precision))
    return found


@pytest.mark.default_precision
def test_the_wrapper_sets_every_convolution_and_matmul():
    net = L.serial(L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(2))
    assert _precisions(net, (6, 6, 2)) == {"None"}  # JAX's default: the backend decides
    wrapped = L.with_matmul_precision(net, "float32")
    assert _precisions(wrapped, (6, 6, 2)) == {"HIGHEST"}
    # a layer's own precision wins
    own = L.with_matmul_precision(L.serial(L.Conv(4, 3, precision=jax.lax.Precision.DEFAULT)))
    assert _precisions(own, (6, 6, 2)) == {"DEFAULT"}


@pytest.mark.default_precision
def test_a_zoo_model_keeps_its_params_and_outputs():
    net = models.resnet18(num_classes=3)
    wrapped = L.with_matmul_precision(net, "float32")
    shape = (32, 32, 3)
    _, p, s = net.init(jax.random.key(1), shape)
    _, p2, s2 = wrapped.init(jax.random.key(1), shape)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), p, p2))
    x = jax.random.normal(jax.random.key(2), shape)
    np.testing.assert_allclose(
        net.apply(p, s, x)[0], wrapped.apply(p, s, x)[0], rtol=1e-3, atol=1e-4
    )  # equal on a CPU (float32 either way); TF32 against float32 on a GPU
    assert _precisions(wrapped, shape) == {"HIGHEST"}


def test_the_suite_runs_in_float32():
    """tests/conftest.py's autouse fixture: every other test traces at float32 precision."""
    assert _precisions(L.Conv(2, 3), (5, 5, 1)) == {"HIGHEST"}


def test_unknown_precisions_are_refused():
    with pytest.raises(ValueError, match="precision='fp32'.*'float32'"):
        L.with_matmul_precision(L.Conv(2, 3), "fp32")
