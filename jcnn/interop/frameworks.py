"""jcnn inside Flax (linen, NNX) and Equinox models, and a Flax linen module as a jcnn layer.

A jcnn layer is a value with pure ``init``/``apply`` functions, so it lives in the other
libraries' models as they hold any computation: its params in their params, its state
(BatchNorm's running statistics) in their state, the layer itself as a static field.

* :class:`LinenLayer`: a ``flax.linen.Module``; params in the ``"params"`` collection, state
  in ``"batch_stats"`` (updated when called with ``train=True`` and
  ``mutable=["batch_stats"]``), a key from the ``"dropout"`` stream when training;
* :func:`nnx_layer`: a ``flax.nnx.Module`` holding an ``nnx.Param`` per parameter array and
  an ``nnx.BatchStat`` per state array;
* :func:`equinox_layer`: an ``equinox.Module`` with the layer as a static field, params as
  its (trainable) leaves; it returns the new state, which the caller keeps (Equinox's own
  stateful layers do the same with ``eqx.nn.State``);
* :func:`from_linen`: a linen module as a jcnn :class:`~jcnn.layers.Layer` (its ``"params"``
  as params, any other collection as state), applied to one example as a batch of one.

Every wrapper takes batches ``(B, *example_shape)``: jcnn's per-example layers are batched
with :func:`jcnn.batched` inside. docs/interop.md has the recipes, run in CI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from jcnn.layers.batch import batched
from jcnn.layers.core import Layer
from jcnn.layers.custom import custom

__all__ = ["LinenLayer", "equinox_layer", "from_linen", "nnx_layer"]


class LinenLayer(nn.Module):
    """A jcnn layer as a Flax linen module (input ``(B, *example_shape)``).

    Attributes:
        layer: the jcnn layer (a hashable value: linen keeps it as a module attribute).

    Example:
        >>> block = LinenLayer(L.serial(L.Conv(4, 3), L.BatchNorm(), L.Relu()))
        >>> variables = block.init(jax.random.key(0), jnp.ones((2, 8, 8, 3)))
        >>> sorted(variables), block.apply(variables, jnp.ones((2, 8, 8, 3))).shape
        (['batch_stats', 'params'], (2, 6, 6, 4))
    """

    layer: Layer

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        shape = tuple(x.shape[1:])
        made: list[Any] = []  # one layer.init gives both trees

        def init_params(key: jax.Array) -> Any:
            made.append(self.layer.init(key, shape))
            return made[0][1]

        params = self.param("jcnn", init_params)
        # a state asked for without params being made here (only a missing batch_stats
        # collection): jcnn's state does not depend on the key (statistics start at 0 and 1)
        state = self.variable(
            "batch_stats",
            "jcnn",
            lambda: (made[0] if made else self.layer.init(jax.random.key(0), shape))[2],
        )
        key = self.make_rng("dropout") if train and self.layer.stochastic else None
        y, new_state = batched(self.layer.apply)(params, state.value, x, key=key, train=train)
        if train and not self.is_initializing() and self.is_mutable_collection("batch_stats"):
            state.value = new_state
        return y


def nnx_layer(layer: Layer, example_shape: Sequence[int], *, rngs: Any) -> Any:
    """A jcnn layer as a Flax NNX module built for ``example_shape``: each parameter array an
    ``nnx.Param``, each state array an ``nnx.BatchStat``; call it as ``module(x, train=...)`` on ``(B, *example_shape)``
    (``train=True`` updates the BatchStat in place, as NNX's own BatchNorm does).

    Example:
        >>> from flax import nnx
        >>> m = nnx_layer(L.serial(L.Conv(4, 3), L.BatchNorm()), (8, 8, 3), rngs=nnx.Rngs(0))
        >>> m(jnp.ones((2, 8, 8, 3)), train=True).shape
        (2, 6, 6, 4)
    """
    from flax import nnx

    _, params0, state0 = layer.init(rngs.params(), tuple(example_shape))
    param_leaves, param_tree = jax.tree.flatten(params0)
    state_leaves, state_tree = jax.tree.flatten(state0)

    class JcnnNNX(nnx.Module):
        # one variable per array (NNX keeps nested dicts of arrays as its own State, without
        # the empty dicts of parameter-free layers); the tree structures stay in the closure
        def __init__(self) -> None:
            self.layer = layer
            self.params = nnx.List([nnx.Param(a) for a in param_leaves])
            self.state = nnx.List([nnx.BatchStat(a) for a in state_leaves])
            self.rngs = rngs

        def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
            key = self.rngs.dropout() if train and self.layer.stochastic else None
            params = jax.tree.unflatten(param_tree, [v.get_value() for v in self.params])
            state = jax.tree.unflatten(state_tree, [v.get_value() for v in self.state])
            y, new = batched(self.layer.apply)(params, state, x, key=key, train=train)
            if train:
                for variable, value in zip(self.state, jax.tree.leaves(new)):
                    variable.set_value(value)
            return y

    return JcnnNNX()


def equinox_layer(layer: Layer, example_shape: Sequence[int], key: jax.Array) -> Any:
    """A jcnn layer as an Equinox module built for ``example_shape``: ``module(x, state, *,
    train=False, key=None) -> (y, new_state)`` on ``(B, *example_shape)``; its params are the
    module's array leaves (trained with ``eqx.filter_grad``), the layer a static field, and
    ``module.initial_state`` the state to start from.

    Example:
        >>> m = equinox_layer(L.serial(L.Conv(4, 3), L.Relu()), (8, 8, 3), jax.random.key(0))
        >>> y, state = m(jnp.ones((2, 8, 8, 3)), m.initial_state)
        >>> y.shape
        (2, 6, 6, 4)
    """
    import equinox as eqx

    class JcnnEquinox(eqx.Module):
        params: Any
        initial_state: Any = eqx.field(static=False)
        layer: Layer = eqx.field(static=True)

        def __call__(
            self, x: jax.Array, state: Any, *, train: bool = False, key: jax.Array | None = None
        ) -> tuple[jax.Array, Any]:
            return batched(self.layer.apply)(self.params, state, x, key=key, train=train)

    _, params, state = layer.init(key, tuple(example_shape))
    return JcnnEquinox(params=params, initial_state=state, layer=layer)


def from_linen(module: nn.Module, *, kind: str | None = None, stochastic: bool = False) -> Layer:
    """A Flax linen module as a jcnn layer: ``init`` runs ``module.init`` on one example as a
    batch of one (``(1, *shape)``); params are its ``"params"`` collection and state every
    other one; ``apply`` runs ``module.apply`` on ``x[None]`` and keeps the first row, with
    the other collections mutable when ``train=True`` and the key as its ``"dropout"`` stream.
    A module that mixes the examples of a batch (linen's ``BatchNorm`` with batch statistics)
    sees each example alone here: use jcnn's ``BatchNorm`` instead.

    Example:
        >>> conv = from_linen(nn.Conv(4, (3, 3), padding="VALID"))
        >>> net = L.serial(conv, L.Relu(), L.Flatten(), L.Dense(2))
        >>> net.init(jax.random.key(0), (6, 6, 1))[0]
        (2,)
    """
    name = kind or type(module).__name__

    def init(key: jax.Array, input_shape: tuple[int, ...]) -> Any:
        dummy = jax.numpy.zeros((1, *input_shape))
        variables = dict(module.init({"params": key, "dropout": key}, dummy))
        params = variables.pop("params", {})
        out = jax.eval_shape(lambda v: module.apply(v, dummy), {"params": params, **variables})
        return tuple(out.shape[1:]), params, variables

    def apply(
        params: Any, state: Any, x: jax.Array, *, key: Any = None, train: bool = False
    ) -> Any:
        variables = {"params": params, **state}
        rngs = {"dropout": key} if key is not None else {}
        if train and state:
            y, new = module.apply(variables, x[None], rngs=rngs, mutable=list(state))
            return y[0], dict(new)
        return module.apply(variables, x[None], rngs=rngs)[0], state

    return custom(init, apply, name, stochastic=stochastic)
