"""Gradient estimators: how a step turns a batch into gradients.

An estimator is a function ``gradients(params, state, batch, key) -> (grads, new_state,
metrics)``: the gradient of the MEAN loss over the batch, the layer state after the batch, and
``{"loss": ..., **metrics}`` scalars. :func:`estimator` joins the choices of
:func:`jcnn.training.make_train_step`:

* plain: ``jax.value_and_grad`` of the batch loss (:func:`plain`);
* per-example clipped, for DP-SGD (:class:`DPSGD`, :func:`clipped`): each example's gradient
  clipped to ``l2_clip``, averaged; the Gaussian noise is added once per step by :func:`noised`,
  after every micro-batch, so micro-batching a private step does not add noise per slice;
* micro-batched (:func:`microbatched`): any estimator over ``k`` equal slices of the batch by
  ``lax.scan``, the mean of the slices' results;
* your own: any function of the signature above, e.g. a per-example weighted loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
from jax.flatten_util import ravel_pytree

from jcnn.layers import paths
from jcnn.layers.arguments import real_number
from jcnn.layers.batch import batched
from jcnn.layers.core import Layer
from jcnn.training.losses import accuracy
from jcnn.training.state import NOISE_FOLD

Batch = tuple[Any, Any]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
MetricsFn = Callable[[jax.Array, jax.Array], dict[str, jax.Array]]
Gradients = Callable[[Any, Any, Batch, "jax.Array | None"], tuple[Any, Any, dict]]

_NORM_ADVICE = (
    "it mixes the examples of a batch (batch statistics over the named axis), so one example's "
    "gradient depends on the others and per-example clipping bounds nothing. Use GroupNorm or "
    "LayerNorm instead (e.g. L.GroupNorm(8) in place of L.BatchNorm())"
)


def default_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """Accuracy for integer-labelled classification; nothing for anything else."""
    if logits.ndim == 2 and labels.ndim == 1 and jnp.issubdtype(labels.dtype, jnp.integer):
        return {"accuracy": accuracy(logits, labels)}
    return {}


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def loss_and_metrics(
    loss_fn: LossFn, metrics_fn: Callable[..., dict], outputs: Any, y: Any
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``loss_fn(outputs, y)`` and ``{"loss": loss, **metrics_fn(outputs, y)}``, checked.

    The checks read shapes and dtypes when the step is traced (nothing runs in the compiled
    program): the batch is not empty, the loss is a floating-point scalar (the mean over the
    batch) and the metrics a mapping.

    Raises:
        ValueError: an empty batch (its mean loss would be NaN).
        TypeError: a loss that is not a floating scalar, or metrics that are not a mapping.

    Example:
        >>> per_example = lambda out, y: jnp.sum(out, axis=1)
        >>> out, y = jnp.ones((4, 2)), jnp.zeros(4, int)
        >>> loss_and_metrics(per_example, default_metrics, out, y)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        TypeError: loss_fn <lambda> returned shape (4,): a loss must be ONE floating-point scalar...
        >>> cross_entropy = jcnn.losses.softmax_cross_entropy
        >>> loss, metrics = loss_and_metrics(cross_entropy, default_metrics, out, y)
        >>> sorted(metrics)
        ['accuracy', 'loss']
    """
    rows = {np.shape(leaf)[0] for leaf in jax.tree.leaves((outputs, y)) if np.ndim(leaf)}
    if 0 in rows:
        raise ValueError(
            f"loss_fn {_name(loss_fn)} was given an empty batch (0 examples): its mean would be "
            "NaN. Give batches of at least one example (a batch_size larger than the data, or "
            "a filter that removed every row?)"
        )
    loss = loss_fn(outputs, y)
    shape, dtype = jnp.shape(loss), jnp.result_type(loss)
    if shape != () or not jnp.issubdtype(dtype, jnp.floating):
        got = f"shape {shape}" if shape != () else f"a scalar of dtype {dtype}"
        raise TypeError(
            f"loss_fn {_name(loss_fn)} returned {got}: a loss must be ONE floating-point scalar, "
            "the mean over the batch (e.g. jnp.mean of the per-example losses)"
        )
    metrics = metrics_fn(outputs, y)
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"metrics_fn {_name(metrics_fn)} returned {type(metrics).__name__}: it must return a "
            "mapping {name: scalar} (or {} for no metrics)"
        )
    return loss, {"loss": loss, **metrics}


def loss_and_grads(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    params: Any,
    state: Any,
    batch: Batch,
    *,
    key: jax.Array | None,
    train: bool = True,
    metrics_fn: Callable[..., dict] = default_metrics,
) -> tuple[tuple[jax.Array, tuple[Any, dict]], Any]:
    """Loss, new layer state, metrics and gradients for one batch (reusable in custom steps).

    ``apply`` is a per-example apply; it is batched with :func:`jcnn.batched`.

    Returns:
        ``((loss, (new_state, metrics)), grads)``, as ``jax.value_and_grad(has_aux=True)``.
    """
    x, y = batch

    def objective(p):
        out, new_state = batched(apply)(p, state, x, key=key, train=train)
        loss, metrics = loss_and_metrics(loss_fn, metrics_fn, out, y)
        return loss, (new_state, metrics)

    return jax.value_and_grad(objective, has_aux=True)(params)


def plain(apply: Callable[..., Any], loss_fn: LossFn, metrics_fn: MetricsFn) -> Gradients:
    """The gradient of the batch loss (``jax.value_and_grad``), as an estimator.

    Example:
        >>> net = L.serial(L.Flatten(), L.Dense(2))
        >>> _, params, state = net.init(key, (3,))
        >>> batch = jnp.ones((4, 3)), jnp.zeros(4, int)
        >>> grads, _, metrics = plain(net.apply, jcnn.losses.softmax_cross_entropy,
        ...                           default_metrics)(params, state, batch, None)
        >>> grads["Dense_0"]["kernel"].shape, sorted(metrics)
        ((3, 2), ['accuracy', 'loss'])
    """

    def gradients(params, state, batch, key):
        (_, (new_state, metrics)), grads = loss_and_grads(
            apply, loss_fn, params, state, batch, key=key, metrics_fn=metrics_fn
        )
        return grads, new_state, metrics

    return gradients


# --------------------------------------------------------------------------- DP-SGD


def _check_real(where: str, name: str, value: Any, low: str) -> None:
    open_low = low == "> 0"
    real_number(
        value, f"{where}: {name}", low=0, open_low=open_low, finite=True, type_error=ValueError
    )


@dataclasses.dataclass(frozen=True)
class DPSGD:
    """DP-SGD (Abadi et al. 2016): per-example clipping to ``l2_clip`` and Gaussian noise.

    The value ``privacy=`` of :func:`jcnn.training.make_train_step` and :func:`jcnn.fit`. Each
    example's gradient is clipped to global L2 norm ``l2_clip`` (optax's
    ``per_example_global_norm_clip``), the clipped gradients are summed, noise
    ``N(0, (noise_multiplier * l2_clip)^2)`` per coordinate is added once per step (from the
    step's noise key) and the sum is divided by the batch size. BatchNorm is refused (it mixes
    examples). The layer state is not updated by a private step; the metrics (loss, accuracy,
    ``clip_fraction``) are computed without noise, for monitoring, not release.

    Attributes:
        l2_clip: the clipping norm C, > 0.
        noise_multiplier: sigma, the noise standard deviation over C, >= 0.

    Example:
        >>> DPSGD(l2_clip=1.0, noise_multiplier=1.1)
        DPSGD(l2_clip=1.0, noise_multiplier=1.1)
        >>> DPSGD(l2_clip=0.0, noise_multiplier=1.1)
        Traceback (most recent call last):
        ValueError: DPSGD: l2_clip must be a finite number > 0, got 0.0
    """

    l2_clip: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        _check_real("DPSGD", "l2_clip", self.l2_clip, "> 0")
        _check_real("DPSGD", "noise_multiplier", self.noise_multiplier, ">= 0")

    def epsilon(
        self,
        run: Any,
        *,
        num_examples: int,
        batch_size: int,
        delta: float,
        accountant: str = "rdp",
    ) -> float:
        """:func:`jcnn.privacy.run_epsilon` of a finished run (a ``FitResult`` or train state)."""
        from jcnn.training.accounting import run_epsilon

        return run_epsilon(
            run,
            num_examples=num_examples,
            batch_size=batch_size,
            noise_multiplier=self.noise_multiplier,
            delta=delta,
            accountant=accountant,
        )


def _batch_coupled(layer: Layer) -> Iterator[tuple[str, Layer]]:
    """``(path, leaf)`` of every leaf that states it mixes a batch's examples (the fact
    BatchNorm states), at the address of its params: the paths of the shape-free
    :meth:`Layer.walk`."""
    for visit in layer.walk(None):
        if visit.layer.batch_coupled and not visit.layer.children:
            yield visit.path, visit.layer


def check_per_example(layer: Layer) -> None:
    """Raises unless every layer of ``layer`` computes each example from that example alone.

    Reads the layers' facts, nothing is traced: a layer that states ``batch_coupled`` (as
    BatchNorm does) takes statistics over the batch. Paths are those of jcnn's errors: the
    root's name, then the layer's params address (its :meth:`Layer.walk` path).

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
    found = list(_batch_coupled(layer))
    if found:
        where = ", ".join(
            f"{paths.join(layer.name, path)} ({found_layer.kind})" for path, found_layer in found
        )
        raise ValueError(
            f"{where} {'is' if len(found) == 1 else 'are'} not per-example: {_NORM_ADVICE}"
        )


def _no_metrics(outputs: Any, y: Any) -> dict:
    del outputs, y
    return {}


def per_example(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    params: Any,
    state: Any,
    batch: Batch,
    key: jax.Array | None,
    train: bool = True,
) -> tuple[jax.Array, Any, Any]:
    """Per-example losses ``(B,)``, outputs ``(B, ...)`` and gradients (leaves ``(B, ...)``).

    ``loss_fn`` is the batch loss, called on a batch of one inside ``vmap(grad)``. Example ``i``
    gets ``split(key, B)[i]``, the key :func:`jcnn.batched` gives it.

    Raises:
        ValueError: a layer that reads the batch axis (BatchNorm), named by its path.
    """
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


def clipped(
    apply: Callable[..., Any], loss_fn: LossFn, metrics_fn: MetricsFn, privacy: DPSGD
) -> Gradients:
    """The mean of per-example gradients each clipped to ``privacy.l2_clip`` (no noise yet).

    Metrics gain ``clip_fraction``, the fraction of examples whose gradient norm exceeded the
    clip. The layer state is returned unchanged.
    """

    def gradients(params, state, batch, key):
        _, outputs, grads = per_example(apply, loss_fn, params, state, batch, key)
        leaves, treedef = jax.tree.flatten(grads)
        size = leaves[0].shape[0]
        clipped_sum, num_clipped = optax.per_example_global_norm_clip(leaves, privacy.l2_clip)
        grads_mean = jax.tree.map(lambda g: g / size, jax.tree.unflatten(treedef, clipped_sum))
        metrics = loss_and_metrics(loss_fn, metrics_fn, outputs, batch[1])[1]
        metrics["clip_fraction"] = num_clipped / size
        return grads_mean, state, metrics

    return gradients


def noised(grads: Any, key: jax.Array, privacy: DPSGD, batch_size: int) -> Any:
    """``grads + N(0, (sigma C / B)^2)`` per coordinate: the noise of one DP-SGD step.

    One draw over the raveled gradients from ``fold_in(key, NOISE_FOLD)``: XLA:CPU compiles
    every threefry draw slowly, and deep nets have dozens of leaves (a 4-leaf net's private step
    compiled in 2.2 s with a draw per leaf, 0.8 s with one).
    """
    flat, unravel = ravel_pytree(grads)
    noise = jax.random.normal(jax.random.fold_in(key, NOISE_FOLD), flat.shape, flat.dtype)
    scale = privacy.noise_multiplier * privacy.l2_clip / batch_size
    return unravel(flat + scale * noise)


# --------------------------------------------------------------------------- micro-batches


def split_microbatches(batch: Any, microbatches: int) -> Any:
    """``(B, ...)`` leaves -> ``(microbatches, B // microbatches, ...)``, slice ``i`` holding rows
    ``i, i + k, i + 2k, ...`` (a strided split: on a mesh each device keeps its own rows).

    Raises:
        ValueError: ``B`` is not a multiple of ``microbatches``.

    Example:
        >>> split_microbatches(jnp.arange(6), 2).tolist()
        [[0, 2, 4], [1, 3, 5]]
    """
    size = jax.tree_util.tree_leaves(batch)[0].shape[0]
    if size % microbatches:
        raise ValueError(
            f"microbatches={microbatches} does not divide the batch of {size} examples: use a "
            f"batch size that is a multiple of {microbatches}"
        )

    def split(a):
        parts = a.reshape(size // microbatches, microbatches, *a.shape[1:])
        return jnp.swapaxes(parts, 0, 1)

    return jax.tree.map(split, batch)


def microbatched(gradients: Gradients, microbatches: int) -> Gradients:
    """``gradients`` over ``microbatches`` equal slices by ``lax.scan``: the means of the slices'
    gradients and metrics, and the layer state threaded through the slices in order.

    For a loss that is a mean over examples and a network without BatchNorm this equals the
    whole-batch result up to float rounding; BatchNorm normalises each slice with its own
    statistics ("ghost batch norm", Hoffer et al. 2017). Slice ``i`` gets ``fold_in(key, i)``.
    """

    def accumulated(params, state, batch, key):
        parts = split_microbatches(batch, microbatches)

        def body(carry, inputs):
            total, layer_state = carry
            i, part = inputs
            sub = None if key is None else jax.random.fold_in(key, i)
            grads, new_state, metrics = gradients(params, layer_state, part, sub)
            return (otu.tree_add(total, grads), new_state), metrics

        zeros = otu.tree_zeros_like(params)
        (total, new_state), metrics = jax.lax.scan(
            body, (zeros, state), (jnp.arange(microbatches), parts)
        )
        grads = jax.tree.map(lambda g: g / microbatches, total)
        return grads, new_state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

    return accumulated


def estimator(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    metrics_fn: MetricsFn,
    *,
    microbatches: int = 1,
    privacy: DPSGD | None = None,
    gradients: Gradients | None = None,
) -> Gradients:
    """The estimator of a step: the base one (plain, clipped or yours), micro-batched, noised.

    Raises:
        ValueError: both ``privacy`` and ``gradients`` (a private step clips per example; a
            custom estimator would bypass it).
        TypeError: ``privacy`` that is not a :class:`DPSGD`, ``gradients`` not callable.
    """
    if privacy is not None and not isinstance(privacy, DPSGD):
        raise TypeError(
            f"privacy must be a jcnn.privacy.DPSGD(l2_clip=..., noise_multiplier=...), got "
            f"{privacy!r}"
        )
    if gradients is not None and not callable(gradients):
        raise TypeError(
            f"gradients must be callable (params, state, batch, key), got {gradients!r}"
        )
    if privacy is not None and gradients is not None:
        raise ValueError(
            "give privacy= or gradients=, not both: a private step computes its own clipped "
            "per-example gradients"
        )
    if gradients is not None:
        base = gradients
    elif privacy is not None:
        base = clipped(apply, loss_fn, metrics_fn, privacy)
    else:
        base = plain(apply, loss_fn, metrics_fn)
    accumulate = base if microbatches == 1 else microbatched(base, microbatches)
    if privacy is None:
        return accumulate

    def private(params, state, batch, key):
        grads, new_state, metrics = accumulate(params, state, batch, key)
        size = jax.tree_util.tree_leaves(batch)[0].shape[0]
        return noised(grads, key, privacy, size), new_state, metrics

    return private
