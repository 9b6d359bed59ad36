"""Per-example gradients, DP-SGD steps and privacy accounting.

jcnn layers are written for ONE example, so the gradient of each example's own loss is one
``jax.vmap(jax.grad(...))`` away: no batching trick, no per-layer hooks (as Opacus needs).
On that:

* :func:`per_example_grads` and :func:`per_example_norms`;
* :func:`make_private_train_step`, DP-SGD (Abadi et al. 2016) used exactly like
  :func:`jcnn.train.make_train_step`: clip each example's gradient to ``l2_clip``, sum, add
  Gaussian noise of standard deviation ``noise_multiplier * l2_clip``, divide by the batch size,
  then any optax optimiser. The clipping is optax's (``optax.per_example_global_norm_clip``,
  that of ``optax.contrib.differentially_private_aggregate``); the noise is one draw from a key
  derived from the step key, so a run is a function of its seed and resumes exactly;
* :func:`private_steps`, a :data:`jcnn.train.StepFactory` for ``jcnn.fit.fit(steps=...)``;
* :func:`epsilon`, :func:`noise_multiplier_for` and :func:`run_epsilon`: accounting by Google's
  ``dp-accounting`` (RDP or PLD accountant; never a formula of ours).

Randomness: the dropout keys of a private step are those of the non-private step (example ``i``
gets ``split(step_key, B)[i]``, as :func:`jcnn.batched` gives it); the noise key is
``fold_in(step_key, 2**32 - 1)`` (:data:`NOISE_FOLD`), which no dropout key or augmentation key
(``fold_in(step_key, 1)``) of a batch smaller than ``2**32 - 1`` equals.

What is NOT private: BatchNorm mixes the examples of a batch (its output for one example depends
on all of them), so a net with BatchNorm is refused with a ValueError naming the layer (use
GroupNorm or LayerNorm). The layer state is not updated by a private step. The metrics a step
returns (training loss, accuracy, the fraction of clipped gradients) are computed from the
private batch without noise: they are for monitoring, not for release.

Example:
    >>> from jcnn.privacy import make_private_train_step
    >>> from jcnn.train import create_train_state
    >>> net = L.serial(L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(10))
    >>> ts = create_train_state(net, (8, 8, 1), optax.sgd(0.1))
    >>> step = make_private_train_step(
    ...     net, jcnn.losses.softmax_cross_entropy, optax.sgd(0.1),
    ...     l2_clip=1.0, noise_multiplier=1.1,
    ... )
    >>> x, y = jnp.ones((16, 8, 8, 1)), jnp.zeros(16, jnp.int32)
    >>> ts, metrics = step(ts, (x, y))
    >>> int(ts.step), sorted(metrics)
    (1, ['accuracy', 'clip_fraction', 'loss'])
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jcnn.layers.core import Layer
from jcnn.train import (
    Batch,
    LossFn,
    Steps,
    StepSpec,
    TrainState,
    apply_gradients,
    default_metrics,
    default_steps,
    loss_and_metrics,
    make_epoch,
    step_key,
)

__all__ = [
    "NOISE_FOLD",
    "PrivateSteps",
    "check_per_example",
    "epsilon",
    "make_private_epoch",
    "make_private_train_step",
    "noise_multiplier_for",
    "per_example_grads",
    "per_example_norms",
    "private_steps",
    "private_train_step",
    "run_epsilon",
]

#: The step key is folded with this to give the noise key (module docstring).
NOISE_FOLD = 2**32 - 1

#: The accountants of :func:`epsilon`: Renyi DP (Mironov 2017) and privacy loss distributions.
ACCOUNTANTS = ("rdp", "pld")

_NORM_ADVICE = (
    "it mixes the examples of a batch (batch statistics over the named axis), so one example's "
    "gradient depends on the others and per-example clipping bounds nothing. Use GroupNorm or "
    "LayerNorm instead (e.g. L.GroupNorm(8) in place of L.BatchNorm())"
)

Apply = Callable[..., Any]


# --------------------------------------------------------------------------- per-example checks


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


def _check_clip_and_noise(where: str, l2_clip: float, noise_multiplier: float) -> None:
    """Both are Python (or NumPy) real numbers, finite, ``l2_clip > 0``, ``noise >= 0``."""
    for name, value, low in (
        ("l2_clip", l2_clip, "> 0"),
        ("noise_multiplier", noise_multiplier, ">= 0"),
    ):
        real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        if not real or not math.isfinite(value) or (value <= 0 if name == "l2_clip" else value < 0):
            raise ValueError(f"{where}: {name} must be a finite number {low}, got {value!r}")


# --------------------------------------------------------------------------- per-example grads


def _no_metrics(outputs: Any, y: Any) -> dict:
    del outputs, y
    return {}


def _per_example(
    apply: Apply,
    loss_fn: LossFn,
    params: Any,
    state: Any,
    batch: Batch,
    key: jax.Array | None,
    train: bool,
) -> tuple[jax.Array, Any, Any]:
    """Per-example losses ``(B,)``, outputs ``(B, ...)`` and gradients ``(B, ...)``."""
    x, y = batch
    size = jax.tree_util.tree_leaves(x)[0].shape[0]

    def one(x_i, y_i, k_i):
        def objective(p):
            out, _ = apply(p, state, x_i, key=k_i, train=train)
            one_batch = jax.tree.map(lambda a: a[None], out)  # the batch loss on a batch of one
            loss, _ = loss_and_metrics(loss_fn, _no_metrics, one_batch, y_i[None])
            return loss, out

        (loss, out), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return loss, out, grads

    keys = None if key is None else jax.random.split(key, size)  # as jcnn.batched splits it
    try:
        return jax.vmap(one, in_axes=(0, 0, None if keys is None else 0))(x, y, keys)
    except NameError as err:  # a layer asked for the batch axis, which is not bound here
        if "axis" not in str(err):
            raise
        path = "/".join(getattr(err, "jcnn_path", ())) or "a layer"
        raise ValueError(f"{path} is not per-example: {_NORM_ADVICE} ({err})") from None


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
    losses, _, grads = _per_example(_unpack(apply), loss, params, state, batch, key, train)
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


# --------------------------------------------------------------------------- private steps


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
    """One DP-SGD step (not jitted); see :func:`make_private_train_step`."""
    _check_clip_and_noise("private_train_step", l2_clip, noise_multiplier)
    key = step_key(ts)
    y = batch[1]
    _, outputs, grads = _per_example(_unpack(apply), loss_fn, ts.params, ts.state, batch, key, True)
    # Clipping and summing are optax's (optax.per_example_global_norm_clip, the clipping of
    # optax.contrib.differentially_private_aggregate). The noise is drawn here, not by that
    # aggregate: it draws one normal array per parameter leaf, and XLA:CPU compiles every
    # threefry draw slowly (a 4-leaf net's private step compiled in 2.2 s with it, 0.8 s with
    # one draw over the raveled parameters, and deep nets have dozens of leaves); it keeps its key in
    # the optimiser state, while here the noise is a function of (seed, step) like all of jcnn's
    # randomness, and the optimiser any optax one.
    leaves, treedef = jax.tree.flatten(grads)
    size = leaves[0].shape[0]
    clipped_sum, num_clipped = optax.per_example_global_norm_clip(leaves, l2_clip)
    flat, unravel = ravel_pytree(jax.tree.unflatten(treedef, clipped_sum))
    noise = jax.random.normal(jax.random.fold_in(key, NOISE_FOLD), flat.shape, flat.dtype)
    grads_mean = unravel((flat + (noise_multiplier * l2_clip) * noise) / size)
    metrics = loss_and_metrics(loss_fn, metrics_fn, outputs, y)[1]
    metrics["clip_fraction"] = num_clipped / size
    return apply_gradients(ts, grads_mean, ts.state, optimizer), metrics


def _bound_step(
    apply: Apply,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    l2_clip: float,
    noise_multiplier: float,
    metrics_fn: Callable[..., dict],
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """:func:`private_train_step` with everything but ``(ts, batch)`` bound (not jitted)."""

    def step(ts: TrainState, batch: Any) -> tuple[TrainState, dict]:
        return private_train_step(
            apply,
            loss_fn,
            optimizer,
            ts,
            batch,
            l2_clip=l2_clip,
            noise_multiplier=noise_multiplier,
            metrics_fn=metrics_fn,
        )

    return step


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
    """A jit-compiled DP-SGD ``step(ts, (x, y)) -> (ts, metrics)``; the old state is donated.

    The contract of :func:`jcnn.train.make_train_step` on a
    :func:`jcnn.train.create_train_state` state: per-example gradients, each clipped to
    global L2 norm ``l2_clip``, summed, plus Gaussian noise ``N(0, (noise_multiplier *
    l2_clip)^2)`` per coordinate drawn from the step's noise key, divided by the batch size,
    then ``optimizer``'s update. With ``noise_multiplier=0`` and a clip above every gradient
    norm this is the non-private step of a mean loss (up to float rounding).

    Args:
        apply: the per-example apply, or the Layer (then checked for BatchNorm first).
        loss_fn: the batch loss (a mean over the batch).
        optimizer: any optax optimiser (SGD, Adam, ...).
        l2_clip: per-example L2 clipping norm C, > 0.
        noise_multiplier: sigma, the noise standard deviation over C, >= 0.
        metrics_fn: metrics besides the loss; ``"clip_fraction"`` (the fraction of examples
            whose gradient norm exceeded C) is added.
        donate: donate the old train state.

    Returns:
        ``step(ts, (x, y)) -> (ts, metrics)``.

    Raises:
        ValueError: ``l2_clip`` or ``noise_multiplier`` out of range; a net with BatchNorm.
    """
    _check_clip_and_noise("make_private_train_step", l2_clip, noise_multiplier)
    apply = _unpack(apply)

    step = _bound_step(apply, loss_fn, optimizer, l2_clip, noise_multiplier, metrics_fn)
    return jax.jit(step, donate_argnums=(0,) if donate else ())


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

    Same contract, ``run_epoch(ts, images, labels, epoch, *, data_rng, start=0,
    num_steps=None)``, same permutation and keys (``transform`` gets ``fold_in(step_key, TRANSFORM_FOLD)``).
    The batches are a shuffling (each example once per epoch), not Poisson samples: the
    accountant of :func:`epsilon` assumes Poisson sampling, as TF Privacy's and Opacus's
    default loops do too (see docs/privacy.md).
    """
    _check_clip_and_noise("make_private_epoch", l2_clip, noise_multiplier)
    apply = _unpack(apply)

    step = _bound_step(apply, loss_fn, optimizer, l2_clip, noise_multiplier, metrics_fn)
    return make_epoch(
        apply, loss_fn, optimizer, batch_size, transform=transform, donate=donate, step=step
    )


@dataclasses.dataclass(frozen=True)
class PrivateSteps:
    """A :data:`jcnn.train.StepFactory` of DP-SGD steps (see :func:`private_steps`).

    Hashable, so ``functools.cache(private_steps(...))`` compiles once per spec.

    Attributes:
        l2_clip: per-example clipping norm C.
        noise_multiplier: sigma (noise standard deviation over C).
        layer: the network, checked for BatchNorm when the factory is made (optional: the
            step spec holds only its apply; without it a BatchNorm net fails when traced).
    """

    l2_clip: float
    noise_multiplier: float
    layer: Layer | None = None

    def __post_init__(self) -> None:
        _check_clip_and_noise("private_steps", self.l2_clip, self.noise_multiplier)
        if self.layer is not None:
            check_per_example(self.layer)

    def __call__(self, spec: StepSpec) -> Steps:
        """Private ``train_step`` and ``run_epoch``; ``eval_step`` as the default factory's."""
        step = _bound_step(
            _unpack(spec.apply),
            spec.loss_fn,
            spec.optimizer,
            self.l2_clip,
            self.noise_multiplier,
            spec.metrics_fn,
        )
        return default_steps(spec, step=step)

    def epsilon(
        self,
        run: Any,
        *,
        num_examples: int,
        batch_size: int,
        delta: float,
        accountant: str = "rdp",
    ) -> float:
        """:func:`run_epsilon` of a finished run (a ``FitResult`` or a train state)."""
        return run_epsilon(
            run,
            num_examples=num_examples,
            batch_size=batch_size,
            noise_multiplier=self.noise_multiplier,
            delta=delta,
            accountant=accountant,
        )


def private_steps(
    *, l2_clip: float, noise_multiplier: float, layer: Layer | None = None
) -> PrivateSteps:
    """The step factory of DP-SGD for :func:`jcnn.fit.fit` (``fit(..., steps=...)``).

    Both of fit's loops are private: the host loop (``on_device=False``) runs
    :func:`make_private_train_step`, the on-device loop :func:`make_private_epoch`. Batches are
    a shuffling of the data; :func:`run_epsilon` accounts them as Poisson samples of rate
    ``batch_size / num_examples`` (the usual, optimistic, convention: see docs/privacy.md).

    Example:
        >>> from jcnn.fit import fit
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 2, 64)
        >>> net = L.serial(L.Dense(2))
        >>> steps = private_steps(l2_clip=1.0, noise_multiplier=1.0, layer=net)
        >>> result = fit(net, (x, y), epochs=2, batch_size=16, steps=steps, progress=False)
        >>> int(result.train_state.step), sorted(result.history)[-1]
        (8, 'train_loss')
        >>> eps = steps.epsilon(result, num_examples=64, batch_size=16, delta=1e-5)
        >>> bool(eps > 0)
        True
    """
    return PrivateSteps(l2_clip, noise_multiplier, layer)


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

    ``run`` is a ``jcnn.fit.FitResult`` or a :class:`jcnn.train.TrainState`; its ``step``
    counts every optimiser step (all of them, so a run resumed or continued from a non-private
    state is over-counted, never under-counted). Sampling rate ``batch_size / num_examples``,
    Poisson sampling assumed (see :func:`private_steps`).
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
