"""The train state: params, layer state, optimiser state, the step, the root of the step keys
and the EMA, all arrays. Its random streams are :mod:`jcnn.training.keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jcnn.layers.core import Layer
from jcnn.training.keys import (  # noqa: F401  (re-exported)
    INIT_STREAM,
    NOISE_FOLD,
    STEP_STREAM,
    TRANSFORM_FOLD,
    init_key,
    root_key_data,
    step_key_at,
)


class TrainState(NamedTuple):
    """Everything a run needs to continue: a pytree of arrays only (checkpointable as is).

    Attributes:
        params: trainable parameters (what the optimiser updates).
        state: layer state (BatchNorm running statistics).
        opt_state: optax state.
        step: number of optimiser steps taken (int32 scalar).
        rng: raw PRNG key data (``jax.random.key_data``), the root of per-step keys.
        ema: the exponential moving average of ``params`` when the step keeps one
            (``make_train_step(..., ema=decay)``), else None.
    """

    params: Any
    state: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array
    ema: Any = None

    @classmethod
    def create(
        cls, params: Any, state: Any, optimizer: optax.GradientTransformation, *, seed: int = 0
    ) -> TrainState:
        """A train state at step 0 around given params and layer state.

        ``opt_state`` is ``optimizer.init(params)`` and ``rng`` is stream 1 of ``seed`` (the
        root of the step keys), as in :func:`create_train_state`, which calls this.

        Example:
            >>> ts = TrainState.create({"w": jnp.ones(3)}, {}, optax.sgd(0.1), seed=0)
            >>> int(ts.step), ts.rng.shape, ts.ema
            (0, (2,), None)
        """
        return cls(
            params=params,
            state=state,
            opt_state=optimizer.init(params),
            step=jnp.zeros((), jnp.int32),
            rng=root_key_data(seed),
        )


def create_train_state(
    layer: Layer,
    input_shape: Sequence[int],
    optimizer: optax.GradientTransformation,
    *,
    seed: int = 0,
) -> TrainState:
    """Initialises params and state from one example's shape, and the optimiser state.

    The init key is :func:`init_key` (``fold_in(key(seed), 0)``); per-step keys derive from
    ``fold_in(key(seed), 1)`` (:meth:`TrainState.create`). Works inside ``jax.jit`` too.

    Raises:
        ShapeError: ``layer`` cannot take ``input_shape``; checked by integer arithmetic
            (:meth:`jcnn.layers.Layer.output_shape`) before anything is traced.

    Example:
        >>> ts = create_train_state(L.serial(L.Flatten(), L.Dense(3)), (2, 2), optax.sgd(0.1))
        >>> ts.params["Dense_0"]["kernel"].shape
        (4, 3)
    """
    shape = tuple(input_shape)
    layer.output_shape(shape)  # raises ShapeError for a bad shape, without tracing init
    key = init_key(seed)

    def init(k):
        return layer.init(k, shape)[1:]

    if isinstance(key, jax.core.Tracer):
        # Under an outer jit (or scan, eval_shape) init joins the outer program; compiler
        # options can only be set on a top-level jit.
        params, state = init(key)
    else:
        # One compiled program for the whole init instead of one dispatch per initialiser; it
        # runs once, so XLA's cheapest optimisation level is the fastest end to end.
        options = {"xla_backend_optimization_level": 0}
        params, state = jax.jit(init, compiler_options=options)(key)
    return TrainState.create(params, state, optimizer, seed=seed)


def step_key(ts: TrainState) -> jax.Array:
    """The PRNG key of the current step: ``fold_in(rng, step)``."""
    return step_key_at(ts.rng, ts.step)
