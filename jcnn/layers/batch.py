"""Batching a per-example apply with ``jax.vmap`` over a named axis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

BATCH_AXIS = "batch"


def batched(
    apply: Callable[..., Any], *, axis_name: str = BATCH_AXIS, example_ndim: int | None = None
) -> Callable[..., Any]:
    """Turns a per-example ``apply`` into one over a leading batch axis.

    The batch axis is named ``axis_name`` (``"batch"``), so ``BatchNorm`` takes its statistics
    with ``lax.pmean`` over it; ``key`` is split into one key per example. Params and state are
    shared (not batched); the returned state is the (batch-independent) updated state.

    Args:
        apply: ``apply(params, state, x, *, key=None, train=False) -> (y, state)`` for ONE example.
        axis_name: name of the vmapped axis.
        example_ndim: the rank of ONE example (3 for ``(H, W, C)`` images); when given, an input
            of another rank is an error instead of being mapped over its first axis. Without
            it, ``batched`` maps over the leading axis whatever it is: ONE ``(8, 8, 3)`` image
            given to a net that takes any rank (``GlobalAvgPool`` then ``Dense``) is read as 8
            examples of shape ``(8, 3)``.

    Returns:
        ``batched_apply(params, state, xs, *, key=None, train=False) -> (ys, state)``.

    Shapes:
        xs: ``(B, *example_shape)`` (or a tuple of such arrays) -> ys: ``(B, *output_shape)``.

    Per-example gradients stay one ``jax.vmap(jax.grad(loss))`` away, because ``apply`` itself is
    per example.
    """

    def batched_apply(params, state, xs, *, key=None, train=False):
        leaves = jax.tree_util.tree_leaves(xs)
        if not leaves or any(leaf.ndim < 1 for leaf in leaves):
            raise ValueError("jcnn.batched: inputs need a leading batch axis")
        if example_ndim is not None and any(leaf.ndim != example_ndim + 1 for leaf in leaves):
            shapes = [tuple(leaf.shape) for leaf in leaves]
            raise ValueError(
                f"jcnn.batched: input of shape {shapes[0] if len(shapes) == 1 else shapes} but "
                f"examples have rank {example_ndim}: a batch is (B, *example_shape); for ONE "
                "example x pass x[None]"
            )
        size = leaves[0].shape[0]

        def one(x, k):
            return apply(params, state, x, key=k, train=train)

        if key is None:
            return jax.vmap(lambda x: one(x, None), out_axes=(0, None), axis_name=axis_name)(xs)
        keys = jax.random.split(key, size)
        return jax.vmap(one, out_axes=(0, None), axis_name=axis_name)(xs, keys)

    return batched_apply
