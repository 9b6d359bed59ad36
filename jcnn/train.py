"""Training: a train-state pytree, jit-compiled steps, an on-device epoch and a host loop.

The pieces compose; use the ones you need::

    ts = create_train_state(net, (28, 28, 1), optax.adam(5e-3), seed=0)
    step = make_train_step(net.apply, softmax_cross_entropy, optax.adam(5e-3))   # jit, donated
    ts, metrics = step(ts, (x_batch, y_batch))

    epoch = make_epoch(net.apply, softmax_cross_entropy, optax.adam(5e-3), batch_size=1000)
    ts, metrics = epoch(ts, images, labels, 0)     # one compiled call: shuffle + scan over steps

Randomness is a function of (seed, step) and (seed, epoch): the dropout key of step ``t`` is
``fold_in(rng, t)`` and the shuffling of epoch ``e`` is ``permutation(fold_in(data_rng, e))``.
So a run resumed from a checkpoint at any step replays exactly what an uninterrupted run does.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from fnmatch import fnmatch
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jcnn.batch import batched
from jcnn.layers.core import Layer
from jcnn.losses import accuracy

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
Batch = tuple[jax.Array, jax.Array]


class TrainState(NamedTuple):
    """Everything a run needs to continue: a pytree of arrays only (checkpointable as is).

    Attributes:
        params: trainable parameters (what the optimiser updates).
        state: layer state (BatchNorm running statistics).
        opt_state: optax state.
        step: number of optimiser steps taken (int32 scalar).
        rng: raw PRNG key data (``jax.random.key_data``), the root of per-step keys.
    """

    params: Any
    state: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array


def create_train_state(
    layer: Layer,
    input_shape: Sequence[int],
    optimizer: optax.GradientTransformation,
    *,
    seed: int = 0,
) -> TrainState:
    """Initialises params and state from one example's shape, and the optimiser state.

    The init key is ``fold_in(key(seed), 0)``; per-step keys derive from ``fold_in(key(seed), 1)``.
    """
    root = jax.random.key(seed)
    shape = tuple(input_shape)

    # One compiled program for the whole init instead of one dispatch per initialiser; it runs
    # once, so XLA's cheapest optimisation level is the fastest end to end.
    def init(k):
        return layer.init(k, shape)[1:]

    key = jax.random.fold_in(root, 0)
    try:
        params, state = jax.jit(init, compiler_options={"xla_backend_optimization_level": 0})(key)
    except ValueError:  # inside an outer jit, where compiler options cannot be set
        params, state = jax.jit(init)(key)
    return TrainState(
        params=params,
        state=state,
        opt_state=optimizer.init(params),
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.key_data(jax.random.fold_in(root, 1)),
    )


def step_key(ts: TrainState) -> jax.Array:
    """The PRNG key of the current step: ``fold_in(rng, step)``."""
    return jax.random.fold_in(jax.random.wrap_key_data(ts.rng), ts.step)


def default_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """Accuracy for integer-labelled classification; nothing for anything else."""
    if logits.ndim == 2 and labels.ndim == 1 and jnp.issubdtype(labels.dtype, jnp.integer):
        return {"accuracy": accuracy(logits, labels)}
    return {}


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
        loss = loss_fn(out, y)
        return loss, (new_state, {"loss": loss, **metrics_fn(out, y)})

    return jax.value_and_grad(objective, has_aux=True)(params)


def apply_gradients(
    ts: TrainState, grads: Any, new_state: Any, optimizer: optax.GradientTransformation
) -> TrainState:
    """One optimiser update; also stores the new layer state and advances the step."""
    updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
    return TrainState(
        params=optax.apply_updates(ts.params, updates),
        state=new_state,
        opt_state=opt_state,
        step=ts.step + 1,
        rng=ts.rng,
    )


def _split_microbatches(batch: Batch, microbatches: int) -> Batch:
    """``(B, ...)`` leaves -> ``(microbatches, B // microbatches, ...)``; B must divide evenly."""
    size = jax.tree_util.tree_leaves(batch)[0].shape[0]
    if not isinstance(microbatches, int) or microbatches < 1 or size % microbatches:
        raise ValueError(
            f"microbatches={microbatches!r} must be a positive int dividing the batch size {size}"
        )
    return jax.tree_util.tree_map(
        lambda a: a.reshape(microbatches, size // microbatches, *a.shape[1:]), batch
    )


def accumulated_loss_and_grads(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    params: Any,
    state: Any,
    batch: Batch,
    microbatches: int,
    *,
    key: jax.Array | None,
    train: bool = True,
    metrics_fn: Callable[..., dict] = default_metrics,
) -> tuple[tuple[jax.Array, tuple[Any, dict]], Any]:
    """:func:`loss_and_grads` over ``microbatches`` equal slices of the batch, by ``lax.scan``.

    Gradients, loss and metrics are the means over the slices, so for a loss that is a mean over
    examples and a network without BatchNorm the result equals the full-batch one up to float
    rounding. BatchNorm normalises each slice with that slice's statistics ("ghost batch norm",
    Hoffer et al. 2017) and its running statistics are updated once per slice, in order.
    Slice ``i`` gets the key ``fold_in(key, i)``. Small slices keep XLA:CPU's working set in
    cache, which makes large batches faster per example.

    Shapes:
        batch leaves: ``(B, ...)`` with ``B % microbatches == 0``.
    """
    parts = _split_microbatches(batch, microbatches)

    def body(carry, inputs):
        grads_sum, layer_state = carry
        i, part = inputs
        sub = None if key is None else jax.random.fold_in(key, i)
        (loss, (new_state, metrics)), grads = loss_and_grads(
            apply, loss_fn, params, layer_state, part, key=sub, train=train, metrics_fn=metrics_fn
        )
        grads_sum = jax.tree_util.tree_map(jnp.add, grads_sum, grads)
        return (grads_sum, new_state), (loss, metrics)

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    (grads_sum, new_state), (losses, metrics) = jax.lax.scan(
        body, (zeros, state), (jnp.arange(microbatches), parts)
    )
    grads = jax.tree_util.tree_map(lambda g: g / microbatches, grads_sum)
    metrics = jax.tree_util.tree_map(lambda m: jnp.mean(m, axis=0), metrics)
    return (jnp.mean(losses), (new_state, metrics)), grads


def train_step(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    ts: TrainState,
    batch: Batch,
    metrics_fn: Callable[..., dict] = default_metrics,
    microbatches: int | None = None,
) -> tuple[TrainState, dict]:
    """One training step (not jitted): loss, gradients, update, with ``train=True``.

    ``microbatches=m`` splits the batch into ``m`` equal slices inside the step and accumulates
    their gradients with ``lax.scan`` (see :func:`accumulated_loss_and_grads`: the same update
    up to float rounding without BatchNorm; per-slice "ghost" statistics with BatchNorm).
    """
    if microbatches is None:
        (_, (new_state, metrics)), grads = loss_and_grads(
            apply, loss_fn, ts.params, ts.state, batch, key=step_key(ts), metrics_fn=metrics_fn
        )
    else:
        (_, (new_state, metrics)), grads = accumulated_loss_and_grads(
            apply,
            loss_fn,
            ts.params,
            ts.state,
            batch,
            microbatches,
            key=step_key(ts),
            metrics_fn=metrics_fn,
        )
    return apply_gradients(ts, grads, new_state, optimizer), metrics


def make_train_step(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    metrics_fn: Callable[..., dict] = default_metrics,
    donate: bool = True,
    microbatches: int | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """A jit-compiled ``step(ts, (x, y)) -> (ts, metrics)``; the old train state is donated.

    ``microbatches``: split each batch into that many equal slices inside the compiled step and
    accumulate gradients (see :func:`train_step`); the batch size must be a multiple of it.
    """

    def step(ts, batch):
        return train_step(apply, loss_fn, optimizer, ts, batch, metrics_fn, microbatches)

    return jax.jit(step, donate_argnums=(0,) if donate else ())


def make_eval_step(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    *,
    metrics_fn: Callable[..., dict] = default_metrics,
) -> Callable[[TrainState, Batch], dict]:
    """A jit-compiled ``evaluate(ts, (x, y)) -> metrics`` with ``train=False`` (running stats)."""

    def evaluate(ts, batch):
        x, y = batch
        out, _ = batched(apply)(ts.params, ts.state, x, train=False)
        return {"loss": loss_fn(out, y), **metrics_fn(out, y)}

    return jax.jit(evaluate)


def epoch_permutation(data_rng: jax.Array, epoch: int | jax.Array, n: int) -> jax.Array:
    """The shuffling of epoch ``epoch``: a permutation of ``range(n)`` drawn on device."""
    key = jax.random.fold_in(jax.random.wrap_key_data(data_rng), epoch)
    return jax.random.permutation(key, n)


def data_rng(seed: int) -> jax.Array:
    """Raw key data of the data-shuffling stream for ``seed`` (independent of the step keys)."""
    return jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 2))


def make_epoch(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    *,
    metrics_fn: Callable[..., dict] = default_metrics,
    transform: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    donate: bool = True,
    microbatches: int | None = None,
) -> Callable[..., tuple[TrainState, dict]]:
    """A whole epoch of shuffled minibatches in ONE compiled call (``lax.scan`` over steps).

    The returned ``run_epoch(ts, images, labels, epoch, *, data_rng, start=0, num_steps=None)``
    draws the epoch's permutation on device, drops the remainder (``n // batch_size`` steps),
    and runs steps ``start .. start+num_steps`` of it. ``transform(key, x_batch)`` (e.g. data
    augmentation from ``jcnn.data``) runs inside the compiled loop. ``microbatches`` splits
    every step's batch as in :func:`train_step` (``batch_size`` must be a multiple of it).

    Returns:
        ``(ts, metrics)`` with each metric stacked per step, shape ``(num_steps,)``.
    """

    def body(ts, xs, ys, perm, i):
        idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
        x, y = jnp.take(xs, idx, axis=0), jnp.take(ys, idx, axis=0)
        if transform is not None:
            x = transform(jax.random.fold_in(step_key(ts), 1), x)
        return train_step(apply, loss_fn, optimizer, ts, (x, y), metrics_fn, microbatches)

    if microbatches is not None and (
        not isinstance(microbatches, int) or microbatches < 1 or batch_size % microbatches
    ):
        raise ValueError(
            f"microbatches={microbatches!r} must be a positive int dividing batch_size={batch_size}"
        )

    def run(ts, images, labels, epoch, data_rng, start, num_steps):
        perm = epoch_permutation(data_rng, epoch, images.shape[0])

        def scan_body(carry, i):
            return body(carry, images, labels, perm, i)

        return jax.lax.scan(scan_body, ts, start + jnp.arange(num_steps))

    compiled = jax.jit(run, static_argnums=(6,), donate_argnums=(0,) if donate else ())

    def run_epoch(ts, images, labels, epoch, *, data_rng, start=0, num_steps=None):
        steps = images.shape[0] // batch_size
        if steps == 0:
            raise ValueError(f"run_epoch: {images.shape[0]} examples < batch_size {batch_size}")
        num_steps = steps - start if num_steps is None else num_steps
        if start < 0 or num_steps < 1 or start + num_steps > steps:
            raise ValueError(f"run_epoch: steps {start}..{start + num_steps} outside 0..{steps}")
        return compiled(ts, images, labels, epoch, data_rng, start, num_steps)

    return run_epoch


def host_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    perm: np.ndarray,
    *,
    start: int = 0,
    prefetch: int = 2,
) -> Iterator[Batch]:
    """Minibatches in ``perm`` order from host memory, moved to the device by a prefetch thread.

    For data that does not fit on the device. Drops the remainder, like :func:`make_epoch`.
    """
    steps = len(perm) // batch_size
    out: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
    done = object()

    def produce():
        for i in range(start, steps):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            out.put((jax.device_put(images[idx]), jax.device_put(labels[idx])))
        out.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := out.get()) is not done:
        yield item


def freeze(
    optimizer: optax.GradientTransformation, params: Any, frozen: Sequence[str]
) -> optax.GradientTransformation:
    """``optimizer`` for every parameter except those whose path matches a pattern in ``frozen``.

    Paths join dict keys with ``/``, e.g. ``"features/Conv_0/kernel"``; patterns are fnmatch
    globs, and a pattern also matches everything below it (``"features"`` freezes the whole
    sub-network named ``features``). Frozen leaves get zero updates (``optax.set_to_zero``) and
    no optimiser state. Built on ``optax.multi_transform``.
    """
    labels = param_labels(params, frozen)
    if frozen and "frozen" not in jax.tree_util.tree_leaves(labels):
        paths = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        raise ValueError(
            f"freeze: no parameter path matches {list(frozen)}; paths are {paths[:8]}..."
        )
    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def param_path(path: Sequence[Any]) -> str:
    """``"a/b/kernel"`` from a ``jax.tree_util`` key path."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def param_labels(params: Any, frozen: Sequence[str]) -> Any:
    """``"frozen"`` or ``"train"`` per leaf, by path pattern (see :func:`freeze`)."""

    def label(path, _):
        p = param_path(path)
        hit = any(fnmatch(p, pat) or fnmatch(p, pat.rstrip("/") + "/*") for pat in frozen)
        return "frozen" if hit else "train"

    return jax.tree_util.tree_map_with_path(label, params)
