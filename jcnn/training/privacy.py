"""Per-example gradients, DP-SGD and privacy accounting.

jcnn layers are written for ONE example, so the gradient of each example's own loss is one
``jax.vmap(jax.grad(...))`` away: no batching trick, no per-layer hooks (as Opacus needs).
On that:

* :func:`per_example_grads` and :func:`per_example_norms`;
* :class:`DPSGD`, the value of ``privacy=`` in :func:`jcnn.training.make_train_step` and
  :func:`jcnn.fit` (Abadi et al. 2016): clip each example's gradient to ``l2_clip``, sum, add
  Gaussian noise of standard deviation ``noise_multiplier * l2_clip``, divide by the batch size,
  then any optax optimiser. It composes with everything else of a step: micro-batches (the
  noise is added once per step, after every slice), an EMA, augmentation, a mesh. The clipping
  is optax's (``optax.per_example_global_norm_clip``); the noise is one draw from
  ``fold_in(step_key, NOISE_FOLD)``, so a run is a function of its seed and resumes exactly;
* :func:`make_private_train_step`, :func:`private_train_step`, :func:`make_private_epoch`: the
  older names, thin over ``make_train_step(..., privacy=DPSGD(...))``;
* :func:`epsilon`, :func:`noise_multiplier_for` and :func:`run_epsilon`: accounting by Google's
  ``dp-accounting`` (RDP or PLD accountant; never a formula of ours).

What is NOT private: BatchNorm mixes the examples of a batch (its output for one example depends
on all of them), so a net with BatchNorm is refused with a ValueError naming the layer (use
GroupNorm or LayerNorm). The layer state is not updated by a private step. The metrics a step
returns (training loss, accuracy, the fraction of clipped gradients) are computed from the
private batch without noise: they are for monitoring, not for release.

Example:
    >>> net = L.serial(L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(10))
    >>> opt = optax.sgd(0.1)
    >>> ts = jcnn.create_train_state(net, (8, 8, 1), opt)
    >>> step = jcnn.make_train_step(net.apply, jcnn.losses.softmax_cross_entropy, opt,
    ...                             privacy=DPSGD(l2_clip=1.0, noise_multiplier=1.1))
    >>> x, y = jnp.ones((16, 8, 8, 1)), jnp.zeros(16, jnp.int32)
    >>> ts, metrics = step(ts, (x, y))
    >>> int(ts.step), sorted(metrics)
    (1, ['accuracy', 'clip_fraction', 'loss'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jcnn.layers.core import Layer
from jcnn.training.accounting import (
    ACCOUNTANTS,
    epsilon,
    noise_multiplier_for,
    run_epsilon,
)
from jcnn.training.estimators import (
    DPSGD,
    Batch,
    LossFn,
    check_per_example,
    default_metrics,
    per_example,
)
from jcnn.training.legacy import make_epoch
from jcnn.training.state import NOISE_FOLD, TrainState
from jcnn.training.step import make_train_step, make_update

__all__ = [
    "ACCOUNTANTS",
    "DPSGD",
    "NOISE_FOLD",
    "check_per_example",
    "epsilon",
    "make_private_epoch",
    "make_private_train_step",
    "noise_multiplier_for",
    "per_example_grads",
    "per_example_norms",
    "private_train_step",
    "run_epsilon",
]


Apply = Callable[..., Any]


def _unpack(apply: Apply | Layer) -> Apply:
    """``apply`` itself, or a Layer's apply after :func:`check_per_example`."""
    if isinstance(apply, Layer):
        check_per_example(apply)
        return apply.apply
    if not callable(apply):
        raise TypeError(f"expected a per-example apply function or a Layer, got {apply!r}")
    return apply


def per_example_grads(
    apply: Apply | Layer,
    loss: LossFn,
    params: Any,
    state: Any,
    batch: Batch,
    *,
    key: jax.Array | None = None,
    train: bool = True,
) -> tuple[jax.Array, Any]:
    """Each example's loss and the gradient of that loss alone, for a whole batch at once.

    ``loss(logits, labels)`` is the usual BATCH loss (a mean, e.g.
    :func:`jcnn.losses.softmax_cross_entropy`); it is called on a batch of one inside a
    ``vmap`` of ``grad`` over the examples. ``apply`` is the per-example apply (no batching:
    jcnn layers are per example); given a Layer, it is first checked by
    :func:`check_per_example`. With ``key``, example ``i`` gets ``split(key, B)[i]``, the key
    :func:`jcnn.batched` gives it, so dropout masks are those of the batch step with that key.
    The layer state is read, not updated.

    Args:
        apply: ``apply(params, state, x, *, key, train) -> (y, state)`` for one example, or a
            Layer.
        loss: ``loss(outputs, labels) -> scalar``, the batch loss.
        params, state: the network's params and layer state.
        batch: ``(x, y)``.
        key: PRNG key for random layers (needed with Dropout and ``train=True``).
        train: the ``train`` flag of ``apply``.

    Returns:
        ``(losses, grads)``: ``losses`` of shape ``(B,)``, ``grads`` a pytree like ``params``
        whose every leaf has a leading batch axis, ``(B, *param.shape)``.

    Shapes:
        x: ``(B, *example_shape)``; y: ``(B, ...)``.

    Raises:
        ValueError: a layer that mixes examples (BatchNorm), named by its path.

    Example:
        >>> net = L.serial(L.Flatten(), L.Dense(3))
        >>> _, params, state = net.init(key, (2, 2))
        >>> x, y = jnp.ones((5, 2, 2)), jnp.arange(5) % 3
        >>> losses, grads = per_example_grads(
        ...     net, jcnn.losses.softmax_cross_entropy, params, state, (x, y))
        >>> losses.shape, grads["Dense_0"]["kernel"].shape
        ((5,), (5, 4, 3))
    """
    losses, _, grads = per_example(_unpack(apply), loss, params, state, batch, key, train)
    return losses, grads


def per_example_norms(grads: Any) -> jax.Array:
    """The global L2 norm of each example's gradient (over every leaf).

    Shapes:
        grads: leaves ``(B, ...)`` -> ``(B,)``.

    Example:
        >>> per_example_norms({"a": jnp.array([[3.0], [0.0]]), "b": jnp.array([[4.0], [1.0]])})
        Array([5., 1.], dtype=float32)
    """
    leaves = jax.tree.leaves(grads)
    squares = [jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1) for g in leaves]
    return jnp.sqrt(sum(squares[1:], squares[0]))


def private_train_step(
    apply: Apply | Layer,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    ts: TrainState,
    batch: Batch,
    *,
    l2_clip: float,
    noise_multiplier: float,
    metrics_fn: Callable[..., dict] = default_metrics,
) -> tuple[TrainState, dict]:
    """One DP-SGD step (not jitted): the pure update of :func:`make_private_train_step`."""
    privacy = DPSGD(l2_clip, noise_multiplier)
    update = make_update(_unpack(apply), loss_fn, optimizer, privacy=privacy, metrics_fn=metrics_fn)
    return update(ts, batch)


def make_private_train_step(
    apply: Apply | Layer,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    l2_clip: float,
    noise_multiplier: float,
    metrics_fn: Callable[..., dict] = default_metrics,
    donate: bool = True,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """``make_train_step(apply, loss_fn, optimizer, privacy=DPSGD(l2_clip, noise_multiplier))``.

    ``apply`` may be the Layer: it is then checked for BatchNorm first
    (:func:`check_per_example`). With ``noise_multiplier=0`` and a clip above every gradient
    norm this is the non-private step of a mean loss (up to float rounding).

    Raises:
        ValueError: ``l2_clip`` or ``noise_multiplier`` out of range; a net with BatchNorm.
    """
    privacy = DPSGD(l2_clip, noise_multiplier)
    return make_train_step(
        _unpack(apply), loss_fn, optimizer, privacy=privacy, metrics_fn=metrics_fn, donate=donate
    )


def make_private_epoch(
    apply: Apply | Layer,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    *,
    l2_clip: float,
    noise_multiplier: float,
    metrics_fn: Callable[..., dict] = default_metrics,
    transform: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    donate: bool = True,
) -> Callable[..., tuple[TrainState, dict]]:
    """:func:`jcnn.train.make_epoch` with DP-SGD steps: a shuffled epoch in one compiled call.

    The batches are a shuffling (each example once per epoch), not Poisson samples: the
    accountant of :func:`epsilon` assumes Poisson sampling, as TF Privacy's and Opacus's
    default loops do too (see docs/privacy.md).
    """
    return make_epoch(
        _unpack(apply),
        loss_fn,
        optimizer,
        batch_size,
        metrics_fn=metrics_fn,
        transform=transform,
        donate=donate,
        privacy=DPSGD(l2_clip, noise_multiplier),
    )
