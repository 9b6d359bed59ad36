"""Dropout: zero each value with probability ``rate`` in training, scale survivors by 1/(1-rate)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jcnn.layers.arguments import probability
from jcnn.layers.core import Fns, Layer, check_key, leaf, same_shape


def Dropout(rate: float) -> Layer:
    """Inverted dropout.

    Args:
        rate: probability of DROPPING a value, in ``[0, 1)`` (PyTorch's ``p``; stax's ``rate`` was
            the keep probability, jcnn's is not).

    With ``train=True`` it needs ``key`` (``jcnn.batched`` gives each example its own key);
    with ``train=False`` it is the identity.

    Shapes:
        ``x -> x``.

    Raises:
        ValueError: rate outside ``[0, 1)`` (at construction), or train=True without a key.
    """
    rate = probability(rate, "Dropout rate", hint="(probability of dropping)")
    # rate 0 never draws: no key for it (combinators split keys only for stochastic children)
    return leaf(_dropout_rule, "Dropout", {"rate": rate}, pointwise=True, stochastic=rate > 0)


def _dropout_rule(layer: Layer) -> Fns:
    rate = layer.hparams["rate"]

    def init(key, input_shape):
        del key
        return input_shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        if not train or rate == 0.0:
            return x, state
        check_key("Dropout", key, train)
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)), state

    return Fns(init, apply, same_shape)


_DEPTH_MODES = ("row", "batch")


def StochasticDepth(p: float, mode: str = "row", *, axis_name: str = "batch") -> Layer:
    """Stochastic depth (Huang et al. 2016), as ``torchvision.ops.StochasticDepth``: in
    training, drops the WHOLE input with probability ``p`` and scales survivors by
    ``1 / (1 - p)``; put it at the end of a residual block's branch.

    Args:
        p: probability of dropping, in ``[0, 1]`` (at ``p = 1`` everything is dropped and
            nothing is scaled, as torchvision).
        mode: ``"row"``: each example draws its own decision from its own key (what
            ``jcnn.batched`` gives it), torchvision's per-row noise. ``"batch"``: one decision
            for the whole batch: every example draws from its key and all of them take the draw
            of the batch's first example, gathered over the named vmap axis ``axis_name``
            (``lax.all_gather``), so it must run under ``jcnn.batched`` or
            ``jax.vmap(..., axis_name="batch")``; under data parallelism each device's batch
            makes its own decision.
        axis_name: the batch axis for ``mode="batch"``.

    ``train=True`` needs ``key``; with ``train=False`` (or ``p = 0``) it is the identity. It is
    pointwise: each output value is its input value times one factor (no positions are mixed).

    Shapes:
        ``x -> x``.

    Raises:
        ValueError: ``p`` outside ``[0, 1]`` or an unknown ``mode`` (at construction), or
            train=True without a key.
        NameError: ``mode="batch"`` in training outside a vmap over ``axis_name``.

    Example:
        >>> x = jnp.ones((4, 2, 2, 3))   # a batch of 4 examples
        >>> row = jcnn.batched(StochasticDepth(0.5).apply)
        >>> row({}, {}, x, key=key, train=True)[0][:, 0, 0, 0].tolist()   # one draw each
        [0.0, 2.0, 0.0, 2.0]
        >>> batch = jcnn.batched(StochasticDepth(0.5, "batch").apply)
        >>> batch({}, {}, x, key=key, train=True)[0][:, 0, 0, 0].tolist()  # one draw for all
        [0.0, 0.0, 0.0, 0.0]
        >>> bool((row({}, {}, x)[0] == x).all())   # eval: the identity
        True
    """
    p = probability(p, "StochasticDepth p", include_one=True, hint="(probability of dropping)")
    if mode not in _DEPTH_MODES:
        raise ValueError(
            f"StochasticDepth mode must be 'row' (one draw per example) or 'batch' (one draw for "
            f"the batch), got {mode!r}"
        )
    hparams = {"p": p, "mode": mode, "axis_name": axis_name}
    return leaf(
        _stochastic_depth_rule, "StochasticDepth", hparams, pointwise=True, stochastic=p > 0
    )


def _stochastic_depth_rule(layer: Layer) -> Fns:
    p, mode, axis_name = layer.hparams["p"], layer.hparams["mode"], layer.hparams["axis_name"]

    def init(key, input_shape):
        del key
        return input_shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        if not train or p == 0.0:
            return x, state
        check_key("StochasticDepth", key, train)
        keep = jax.random.bernoulli(key, 1.0 - p, ())
        if mode == "batch":
            try:
                keep = jax.lax.all_gather(keep, axis_name)[0]
            except NameError as err:
                raise NameError(
                    f"StochasticDepth(mode='batch') makes one decision for the batch axis "
                    f"{axis_name!r}, which is not bound: batch the apply with "
                    f"jcnn.batched(apply) (or jax.vmap(apply, in_axes=(None, None, 0), "
                    f"out_axes=(0, None), axis_name={axis_name!r})), or use mode='row' ({err})"
                ) from None
        if p == 1.0:
            return jnp.zeros_like(x), state
        return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype)).astype(x.dtype), state

    return Fns(init, apply, same_shape)
