"""Training: a train-state pytree, jit-compiled steps, an on-device epoch and the step factory.

The pieces compose; use the ones you need::

    ts = create_train_state(net, (28, 28, 1), optax.adam(5e-3), seed=0)
    step = make_train_step(net.apply, softmax_cross_entropy, optax.adam(5e-3))   # jit, donated
    ts, metrics = step(ts, (x_batch, y_batch))

    epoch = make_epoch(net.apply, softmax_cross_entropy, optax.adam(5e-3), batch_size=1000)
    ts, metrics = epoch(ts, images, labels, 0, data_rng=data_rng(0))   # one compiled call

:func:`default_steps` makes the compiled functions :func:`jcnn.fit.fit` runs (its ``steps`` hook,
a :data:`StepFactory`; :func:`jcnn.distributed.sharded_steps` is the one for a mesh).

Randomness is a function of (seed, step) and (seed, epoch). A seed has three streams,
``fold_in(key(seed), i)``: 0 initialises the params (:func:`init_key`), 1 is the root of the
per-step keys (the dropout key of step ``t`` is ``fold_in(stream_1, t)``, :func:`step_key`) and 2
orders the data (:func:`data_rng`; the shuffling of epoch ``e`` is ``epoch_permutation(data_rng,
e, n)``, from :mod:`jcnn.data.batching`). So a run resumed from a checkpoint at any step replays
exactly what an uninterrupted run does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from fnmatch import fnmatch
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
from jax.tree_util import keystr

from jcnn.batch import batched
from jcnn.data.batching import batches, data_rng, epoch_permutation
from jcnn.layers.core import Layer
from jcnn.losses import accuracy

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
MetricsFn = Callable[[jax.Array, jax.Array], dict[str, jax.Array]]
Transform = Callable[[jax.Array, jax.Array], jax.Array]
Batch = tuple[jax.Array, jax.Array]

__all__ = [
    "Batch",
    "LossFn",
    "MetricsFn",
    "StepFactory",
    "StepSpec",
    "Steps",
    "TrainState",
    "Transform",
    "accumulated_loss_and_grads",
    "apply_gradients",
    "create_train_state",
    "data_rng",
    "default_metrics",
    "default_steps",
    "epoch_permutation",
    "freeze",
    "host_batches",
    "init_key",
    "loss_and_grads",
    "loss_and_metrics",
    "make_epoch",
    "make_eval_step",
    "make_train_step",
    "param_labels",
    "param_path",
    "step_key",
    "train_step",
]

INIT_STREAM, STEP_STREAM = 0, 1  # the data stream, 2, is jcnn.data.batching.DATA_STREAM


def init_key(seed: int) -> jax.Array:
    """The key that initialises the params for ``seed``: ``fold_in(key(seed), 0)``."""
    return jax.random.fold_in(jax.random.key(seed), INIT_STREAM)


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

    @classmethod
    def create(
        cls, params: Any, state: Any, optimizer: optax.GradientTransformation, *, seed: int = 0
    ) -> TrainState:
        """A train state at step 0 around given params and layer state.

        ``opt_state`` is ``optimizer.init(params)`` and ``rng`` is stream 1 of ``seed`` (the
        root of the step keys), as in :func:`create_train_state`, which calls this.

        Example:
            >>> ts = TrainState.create({"w": jnp.ones(3)}, {}, optax.sgd(0.1), seed=0)
            >>> int(ts.step), ts.rng.shape
            (0, (2,))
        """
        root = jax.random.key(seed)
        return cls(
            params=params,
            state=state,
            opt_state=optimizer.init(params),
            step=jnp.zeros((), jnp.int32),
            rng=jax.random.key_data(jax.random.fold_in(root, STEP_STREAM)),
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
    return jax.random.fold_in(jax.random.wrap_key_data(ts.rng), ts.step)


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
    program): the loss must be a floating-point scalar (the mean over the batch) and the metrics
    a mapping (of scalars for :func:`jcnn.fit.fit`, which averages them over steps and checks
    that; a hand-written loop may return arrays).

    Raises:
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
        return (otu.tree_add(grads_sum, grads), new_state), (loss, metrics)

    (grads_sum, new_state), (losses, metrics) = jax.lax.scan(
        body, (otu.tree_zeros_like(params), state), (jnp.arange(microbatches), parts)
    )
    grads = jax.tree.map(lambda g: g / microbatches, grads_sum)
    metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)
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
        return loss_and_metrics(loss_fn, metrics_fn, out, y)[1]

    return jax.jit(evaluate)


#: ``fold_in`` constant of the augmentation key of a step: ``fold_in(step_key, i)`` for small
#: ``i`` equals example ``i``'s dropout key (``split(step_key, B)[i]``), so use one no batch reaches.
TRANSFORM_FOLD = 2**32 - 2


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
    step: Callable[[TrainState, Batch], tuple[TrainState, dict]] | None = None,
) -> Callable[..., tuple[TrainState, dict]]:
    """A whole epoch of shuffled minibatches in ONE compiled call (``lax.scan`` over steps).

    The returned ``run_epoch(ts, images, labels, epoch, *, data_rng, start=0, num_steps=None)``
    draws the epoch's permutation on device, drops the remainder (``n // batch_size`` steps),
    and runs steps ``start .. start+num_steps`` of it. ``transform(key, x_batch)`` (e.g. data
    augmentation from ``jcnn.data``) runs inside the compiled loop with
    ``key = fold_in(step_key, TRANSFORM_FOLD)``. ``microbatches`` splits
    every step's batch as in :func:`train_step` (``batch_size`` must be a multiple of it).
    ``step(ts, batch) -> (ts, metrics)`` replaces the update itself (not jitted; default
    :func:`train_step` with these arguments), e.g. ``jcnn.privacy``'s DP-SGD step.

    Returns:
        ``(ts, metrics)`` with each metric stacked per step, shape ``(num_steps,)``.
    """
    if step is None:

        def step(ts, batch):
            return train_step(apply, loss_fn, optimizer, ts, batch, metrics_fn, microbatches)

    def body(ts, xs, ys, perm, i):
        idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
        x, y = jnp.take(xs, idx, axis=0), jnp.take(ys, idx, axis=0)
        if transform is not None:
            x = transform(jax.random.fold_in(step_key(ts), TRANSFORM_FOLD), x)
        return step(ts, (x, y))

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


# --------------------------------------------------------------------------- the step factory


TrainStepFn = Callable[[TrainState, Any], tuple[TrainState, dict]]
RunEpochFn = Callable[..., tuple[TrainState, dict]]
EvalStepFn = Callable[[TrainState, Any], dict]


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """What a :data:`StepFactory` builds the compiled functions of a run from.

    Hashable (functions compare by identity), so ``functools.cache(default_steps)`` is a factory
    that compiles once for every run with the same spec (several seeds, say).

    Attributes:
        apply: the network's per-example ``apply``.
        loss_fn: ``loss_fn(outputs, y) -> scalar``.
        optimizer: the optimiser (already wrapped by :func:`freeze` when params are frozen).
        metrics_fn: ``metrics_fn(outputs, y) -> {name: scalar}`` besides the loss.
        batch_size: examples per step (the global batch).
        transform: ``transform(key, x_batch)`` inside the on-device epoch, or None.
    """

    apply: Callable[..., Any]
    loss_fn: LossFn
    optimizer: optax.GradientTransformation
    metrics_fn: MetricsFn = default_metrics
    batch_size: int = 128
    transform: Transform | None = None


def _copy_state(ts: TrainState) -> TrainState:
    """A copy of every leaf: the donating steps then cannot delete the caller's arrays."""
    return jax.tree.map(jnp.copy, ts)


class Steps(NamedTuple):
    """The compiled functions of a run and how its state and data reach them.

    Attributes:
        train_step: ``train_step(ts, batch) -> (ts, metrics)``, one step of the host loop
            (``make_train_step``'s contract; it may donate ``ts``). None: no host loop.
        run_epoch: ``run_epoch(ts, images, labels, epoch, *, data_rng, start, num_steps) ->
            (ts, metrics)`` with metrics stacked per step, the on-device loop
            (:func:`make_epoch`'s contract). None: no on-device loop.
        eval_step: ``eval_step(ts, batch) -> metrics`` with ``train=False``, for validation.
        place_state: the train state the steps will own, from the initial one (default: a copy,
            since the steps donate it; :func:`jcnn.distributed.shard_params` on a mesh).
        place_data: a host ``(x, y)`` batch -> what ``train_step`` takes (default
            ``jax.device_put``; runs in the prefetch thread). The on-device loop places the
            whole training set with it.
        batch_rows: the rows of each (global) batch this process loads (all of them by
            default; :func:`jcnn.distributed.process_batch_slice` on many hosts).
    """

    train_step: TrainStepFn | None = None
    run_epoch: RunEpochFn | None = None
    eval_step: EvalStepFn | None = None
    place_state: Callable[[TrainState], TrainState] = _copy_state
    place_data: Callable[[Any], Any] = jax.device_put
    batch_rows: slice = slice(None)


#: How a run's compiled functions are made: ``factory(spec) -> Steps`` (``fit(steps=...)``).
StepFactory = Callable[[StepSpec], Steps]


def default_steps(
    spec: StepSpec, *, step: Callable[[TrainState, Batch], tuple[TrainState, dict]] | None = None
) -> Steps:
    """One device: :func:`make_train_step`, :func:`make_epoch` and :func:`make_eval_step`.

    Nothing compiles until a function is first called, so building all three costs nothing.
    ``step(ts, batch) -> (ts, metrics)`` (not jitted) replaces the update of both loops, e.g.
    ``jcnn.privacy``'s DP-SGD step; default :func:`train_step` with the spec's settings.

    Example:
        >>> net = L.serial(L.Flatten(), L.Dense(2))
        >>> spec = StepSpec(net.apply, jcnn.losses.softmax_cross_entropy, optax.sgd(0.1))
        >>> steps = default_steps(spec)
        >>> ts, metrics = steps.train_step(
        ...     create_train_state(net, (3,), optax.sgd(0.1)), (jnp.ones((4, 3)), jnp.zeros(4, int))
        ... )
        >>> sorted(metrics), int(ts.step)
        (['accuracy', 'loss'], 1)
    """
    if step is None:
        train = make_train_step(
            spec.apply, spec.loss_fn, spec.optimizer, metrics_fn=spec.metrics_fn
        )
    else:
        train = jax.jit(step, donate_argnums=(0,))
    return Steps(
        train_step=train,
        run_epoch=make_epoch(
            spec.apply,
            spec.loss_fn,
            spec.optimizer,
            spec.batch_size,
            metrics_fn=spec.metrics_fn,
            transform=spec.transform,
            step=step,
        ),
        eval_step=make_eval_step(spec.apply, spec.loss_fn, metrics_fn=spec.metrics_fn),
    )


def host_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    perm: np.ndarray,
    *,
    start: int = 0,
    prefetch: int = 2,
) -> Iterator[Batch]:
    """Minibatches in ``perm`` order, moved to the device by a prefetch thread.

    The old name of ``jcnn.data.batches(images, labels, batch_size, order=perm, start=start,
    put=jax.device_put, prefetch=prefetch)``, which it calls. Drops the remainder.
    """
    return batches(
        images,
        labels,
        batch_size,
        order=perm,
        start=start,
        put=jax.device_put,
        prefetch=max(prefetch, 1),
    )


def freeze(
    optimizer: optax.GradientTransformation, params: Any, frozen: Sequence[str]
) -> optax.GradientTransformation:
    """``optimizer`` for every parameter except those whose path matches a pattern in ``frozen``.

    Paths join dict keys with ``/``, e.g. ``"features/Conv_0/kernel"``; patterns are fnmatch
    globs, and a pattern also matches everything below it (``"features"`` freezes the whole
    sub-network named ``features``). Frozen leaves get zero updates (``optax.set_to_zero``) and
    no optimiser state. Built on ``optax.multi_transform``.

    Raises:
        TypeError: ``frozen`` is a string (a sequence of patterns is expected).
        ValueError: a pattern that matches no parameter path and no layer without params (a
            typo would freeze nothing).
    """
    _check_patterns(frozen)
    paths = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]

    # A layer without params (Relu_0: {}) is a name a pattern may hold too (a whole body).
    def no_params(v: Any) -> bool:
        return isinstance(v, dict) and not v

    empty = jax.tree_util.tree_flatten_with_path(params, is_leaf=no_params)[0]
    names = paths + [param_path(p) for p, v in empty if no_params(v)]
    unmatched = [pat for pat in frozen if not any(_matches(p, pat) for p in names)]
    if unmatched:
        shown = ", ".join(paths[:12]) + (f", ... ({len(paths)} in all)" if len(paths) > 12 else "")
        raise ValueError(
            f"freeze: {unmatched} match no parameter path, so they would freeze nothing; paths "
            f"are {shown} (patterns are fnmatch globs; a pattern also matches everything below "
            "it, e.g. 'features' freezes features/...)"
        )
    labels = param_labels(params, frozen)
    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def _check_patterns(frozen: Sequence[str]) -> None:
    if isinstance(frozen, str):
        raise TypeError(
            f"frozen must be a sequence of path patterns, got the string {frozen!r} (which "
            f"would be read letter by letter): use [{frozen!r}]"
        )


def _matches(path: str, pattern: str) -> bool:
    """Whether ``pattern`` matches the parameter ``path`` or a folder above it."""
    return fnmatch(path, pattern) or fnmatch(path, pattern.rstrip("/") + "/*")


def param_path(path: Sequence[Any]) -> str:
    """``"a/b/kernel"`` from a ``jax.tree_util`` key path (``keystr(simple=True)``).

    Example:
        >>> [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path({"a": {"b": 1}})[0]]
        ['a/b']
    """
    return keystr(tuple(path), simple=True, separator="/")


def param_labels(params: Any, frozen: Sequence[str]) -> Any:
    """``"frozen"`` or ``"train"`` per leaf, by path pattern (see :func:`freeze`)."""

    _check_patterns(frozen)

    def label(path, _):
        p = param_path(path)
        return "frozen" if any(_matches(p, pat) for pat in frozen) else "train"

    return jax.tree_util.tree_map_with_path(label, params)
