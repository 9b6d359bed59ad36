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

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jcnn.layers.core import Layer
from jcnn.train import make_epoch
from jcnn.training.estimators import (
    _NORM_ADVICE,
    DPSGD,
    Batch,
    LossFn,
    default_metrics,
    per_example,
)
from jcnn.training.state import NOISE_FOLD, TrainState
from jcnn.training.step import make_train_step, make_update

__all__ = [
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

#: The accountants of :func:`epsilon`: Renyi DP (Mironov 2017) and privacy loss distributions.
ACCOUNTANTS = ("rdp", "pld")

Apply = Callable[..., Any]


def _batch_coupled(layer: Layer, path: tuple[str, ...]) -> Iterator[tuple[str, Layer]]:
    """``(path, layer)`` of every layer in the tree that reduces over a named batch axis."""
    if "axis_name" in layer.hparams:  # the fact BatchNorm states: statistics over a vmap axis
        yield "/".join(path), layer
    for key, child in layer.children:
        yield from _batch_coupled(child, (*path, key))


def check_per_example(layer: Layer) -> None:
    """Raises unless every layer of ``layer`` computes each example from that example alone.

    Reads the layers' facts, nothing is traced: a layer whose hyper-parameters name a batch
    axis (``axis_name``, as BatchNorm's) takes statistics over the batch. Paths are those of
    jcnn's errors: the root's name, then the children's keys.

    Raises:
        TypeError: ``layer`` is not a :class:`jcnn.layers.Layer`.
        ValueError: a batch-coupled layer, named by its path.

    Example:
        >>> check_per_example(L.serial(L.Conv(8, 3), L.GroupNorm(4), L.Relu()))
        >>> check_per_example(L.serial(L.Conv(8, 3), L.BatchNorm(), name="net"))
        Traceback (most recent call last):
        ValueError: net/BatchNorm_0 (BatchNorm) is not per-example: it mixes the examples ...
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_per_example: expected a jcnn Layer, got {type(layer).__name__}")
    found = list(_batch_coupled(layer, (layer.name,)))
    if found:
        where = ", ".join(f"{path} ({found_layer.kind})" for path, found_layer in found)
        raise ValueError(
            f"{where} {'is' if len(found) == 1 else 'are'} not per-example: {_NORM_ADVICE}"
        )


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


# --------------------------------------------------------------------------- accounting


def _dp_accounting() -> Any:
    try:
        import dp_accounting
    except ImportError as err:  # pragma: no cover - the dependency is declared
        raise ImportError(
            "jcnn.privacy accounting needs Google's dp-accounting: pip install dp-accounting"
        ) from err
    return dp_accounting


@contextlib.contextmanager
def _quiet_accountant() -> Iterator[None]:
    """Silences dp-accounting's warnings that an RDP order did not converge: it leaves such
    orders out of the minimum over orders, so epsilon stays a valid (upper) bound."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _accountant(dpa: Any, accountant: str) -> Any:
    if accountant == "rdp":
        return dpa.rdp.RdpAccountant()
    if accountant == "pld":
        return dpa.pld.PLDAccountant()
    raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


def _dpsgd_event(dpa: Any, steps: int, sampling_rate: float, noise_multiplier: float) -> Any:
    """``steps`` compositions of the Poisson-subsampled Gaussian mechanism."""
    gaussian = dpa.GaussianDpEvent(noise_multiplier)
    return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(sampling_rate, gaussian), steps)


def _check_accounting(where: str, steps: Any, sampling_rate: float, delta: float) -> int:
    if isinstance(steps, bool) or not float(steps).is_integer() or steps < 0:
        raise ValueError(f"{where}: steps must be an int >= 0, got {steps!r}")
    if not 0 < sampling_rate <= 1:
        raise ValueError(
            f"{where}: sampling_rate (batch_size / num_examples) must be in (0, 1], got "
            f"{sampling_rate!r}"
        )
    if not 0 < delta < 1:
        raise ValueError(f"{where}: delta must be in (0, 1), got {delta!r}")
    return int(steps)


def epsilon(
    steps: int,
    sampling_rate: float,
    noise_multiplier: float,
    delta: float,
    *,
    accountant: str = "rdp",
) -> float:
    """The epsilon of ``steps`` DP-SGD steps at ``delta``, from Google's ``dp-accounting``.

    The mechanism is the Poisson-subsampled Gaussian (each example in a step's batch with
    probability ``sampling_rate``, noise ``noise_multiplier`` times the clipping norm),
    composed ``steps`` times, under add-or-remove-one adjacency: the accounting of TF Privacy's
    ``compute_dp_sgd_privacy`` and of Opacus.

    Args:
        steps: optimiser steps taken.
        sampling_rate: ``q = batch_size / num_examples``.
        noise_multiplier: sigma.
        delta: the target delta (below ``1 / num_examples``, by the usual rule).
        accountant: ``"rdp"`` (Renyi DP, Mironov 2017; the classic) or ``"pld"`` (privacy loss
            distributions, Koskela et al. / Doroshenko et al. 2022; tighter).

    Returns:
        epsilon (``inf`` for ``noise_multiplier=0``; 0 for 0 steps).

    Example:
        >>> round(epsilon(6000, 150 / 60000, 1.3, 1e-5), 4)   # TF Privacy's reference: 0.7242
        0.7242
    """
    steps = _check_accounting("epsilon", steps, sampling_rate, delta)
    if noise_multiplier < 0:
        raise ValueError(f"epsilon: noise_multiplier must be >= 0, got {noise_multiplier!r}")
    dpa = _dp_accounting()
    acc = _accountant(dpa, accountant)
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    with _quiet_accountant():
        acc.compose(_dpsgd_event(dpa, steps, sampling_rate, noise_multiplier))
        return float(acc.get_epsilon(delta))


def noise_multiplier_for(
    target_epsilon: float,
    steps: int,
    sampling_rate: float,
    delta: float,
    *,
    accountant: str = "rdp",
) -> float:
    """The smallest noise multiplier whose :func:`epsilon` is at most ``target_epsilon``.

    Found by ``dp_accounting.calibrate_dp_mechanism`` (Brent's method on the accountant, to
    1e-6 in sigma).

    Example:
        >>> sigma = noise_multiplier_for(1.0, 6000, 150 / 60000, 1e-5)
        >>> round(sigma, 3), epsilon(6000, 150 / 60000, sigma, 1e-5) <= 1.0
        (1.098, True)
    """
    steps = _check_accounting("noise_multiplier_for", steps, sampling_rate, delta)
    if not target_epsilon > 0:
        raise ValueError(f"noise_multiplier_for: target_epsilon must be > 0, got {target_epsilon}")
    if steps == 0:
        return 0.0
    dpa = _dp_accounting()
    _accountant(dpa, accountant)  # checks the name
    with _quiet_accountant():
        sigma = dpa.calibrate_dp_mechanism(
            lambda: _accountant(dpa, accountant),
            lambda s: _dpsgd_event(dpa, steps, sampling_rate, s),
            target_epsilon,
            delta,
        )
    return float(sigma)


def run_epsilon(
    run: Any,
    *,
    num_examples: int,
    batch_size: int,
    noise_multiplier: float,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """The epsilon of a finished private run, from its step count.

    ``run`` is a ``jcnn.FitResult`` or a :class:`jcnn.TrainState`; its ``step``
    counts every optimiser step (all of them, so a run resumed or continued from a non-private
    state is over-counted, never under-counted). Sampling rate ``batch_size / num_examples``,
    Poisson sampling assumed (see :class:`DPSGD`).
    """
    ts = getattr(run, "train_state", run)
    if not isinstance(ts, TrainState):
        raise TypeError(f"run_epsilon: expected a FitResult or a TrainState, got {type(run)}")
    if num_examples < 1 or batch_size < 1:
        raise ValueError(
            f"run_epsilon: num_examples and batch_size must be >= 1, got {num_examples}, "
            f"{batch_size}"
        )
    return epsilon(
        int(ts.step),
        batch_size / num_examples,
        noise_multiplier,
        delta,
        accountant=accountant,
    )
