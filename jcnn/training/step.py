"""The train step: one builder joining a gradient estimator, an optimiser, an EMA and a placement.

::

    step = make_train_step(net.apply, softmax_cross_entropy, optax.adam(1e-3),
                           mesh=None, microbatches=1, privacy=None, ema=None, transform=None)
    ts, metrics = step(ts, (x, y))      # NumPy batches and a fresh state go straight in

Every combination is valid: a DP-SGD step with micro-batches, an EMA and augmentation on a mesh
is the same builder call as the plain one. The pieces (the pure ``step.update`` and the
placement) are what the loops of :mod:`jcnn.training.loops` run, so the host loop and the
on-device epoch take the same step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jcnn.layers.arguments import count, probability
from jcnn.layers.batch import batched
from jcnn.training.estimators import (
    DPSGD,
    Batch,
    Gradients,
    LossFn,
    MetricsFn,
    default_metrics,
    estimator,
    loss_and_metrics,
)
from jcnn.training.placement import DATA_AXIS, Placement
from jcnn.training.state import TRANSFORM_FOLD, TrainState, step_key

Transform = Callable[[jax.Array, Any], Any]
Update = Callable[[TrainState, Batch], tuple[TrainState, dict]]


def apply_gradients(
    ts: TrainState, grads: Any, new_state: Any, optimizer: optax.GradientTransformation
) -> TrainState:
    """One optimiser update; also stores the new layer state and advances the step."""
    updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
    return ts._replace(
        params=optax.apply_updates(ts.params, updates),
        state=new_state,
        opt_state=opt_state,
        step=ts.step + 1,
    )


def ema_update(average: Any, params: Any, decay: float) -> Any:
    """``decay * average + (1 - decay) * params``, leaf by leaf (in the params' dtypes).

    Example:
        >>> [round(v, 6) for v in ema_update({"w": jnp.zeros(2)}, {"w": jnp.ones(2)}, 0.9)["w"].tolist()]
        [0.1, 0.1]
    """
    return jax.tree.map(lambda a, p: (decay * a + (1 - decay) * p).astype(a.dtype), average, params)


def _check_options(microbatches: Any, ema: Any, transform: Any) -> None:
    count(microbatches, "microbatches")
    if ema is not None:
        probability(ema, "ema", hint="(a decay such as 0.999, or None for no average)")
    if transform is not None and not callable(transform):
        raise TypeError(
            "transform must be callable (key, x_batch) -> x_batch, or (key, (x, y)) -> (x, y) "
            f"when it states on_batch = True, got {transform!r}"
        )


def on_batch(transform: Any) -> bool:
    """True when ``transform`` states ``on_batch = True``: it maps the whole batch
    ``(key, (x, y)) -> (x, y)`` (e.g. :class:`jcnn.data.mixing.MixupCutmix`), not the images."""
    return getattr(transform, "on_batch", False) is True


def make_update(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    placement: Placement = Placement(),
    microbatches: int = 1,
    privacy: DPSGD | None = None,
    ema: float | None = None,
    transform: Transform | None = None,
    metrics_fn: MetricsFn = default_metrics,
    gradients: Gradients | None = None,
) -> Update:
    """The pure step ``update(ts, batch) -> (ts, metrics)`` (not jitted, not placed).

    In order: the step key; ``transform(fold_in(key, TRANSFORM_FOLD), x)`` (or, for a transform
    stating ``on_batch = True``, ``(x, y) = transform(fold_in(key, TRANSFORM_FOLD), (x, y))``);
    the estimator (see
    :func:`jcnn.training.estimators.estimator`); the optimiser; the EMA of the params.
    """
    _check_options(microbatches, ema, transform)
    gradients_of = estimator(
        apply,
        loss_fn,
        metrics_fn,
        microbatches=int(microbatches),
        privacy=privacy,
        gradients=gradients,
    )

    def update(ts: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        key = step_key(ts)
        x, y = batch
        if transform is not None and on_batch(transform):
            x, y = transform(jax.random.fold_in(key, TRANSFORM_FOLD), (x, y))
        elif transform is not None:
            x = transform(jax.random.fold_in(key, TRANSFORM_FOLD), x)
        x, y = placement.constrain_batch((x, y))
        grads, new_state, metrics = gradients_of(ts.params, ts.state, (x, y), key)
        ts = apply_gradients(ts, grads, new_state, optimizer)
        if ema is not None:
            ts = ts._replace(ema=ema_update(ts.ema, ts.params, ema))
        return ts, metrics

    return update


class TrainStep:
    """A compiled ``step(ts, batch) -> (ts, metrics)``; see :func:`make_train_step`.

    Attributes:
        update: the pure step (not jitted), for loops that compile it themselves.
        placement: where the state and the batches live.
        ema: the EMA decay, or None.
    """

    def __init__(
        self,
        update: Update,
        placement: Placement,
        *,
        ema: float | None,
        donate: bool,
        compiler_options: dict[str, Any] | None,
    ) -> None:
        self.update, self.placement, self.ema = update, placement, ema
        self.donate_argnums = (0,) if donate else ()
        self._options = compiler_options
        self._compiled: dict[Any, Callable] = {}
        #: Programs the loops compile from this step (by kind, structure and shapes), kept here
        #: so that every run with this step reuses them.
        self.programs: dict[Any, Callable] = {}

    def prepare(self, ts: TrainState) -> TrainState:
        """``ts`` with its EMA started (a copy of the params) when the step keeps one, placed
        when it is not already (NumPy leaves, another device, another layout)."""
        if not isinstance(ts, TrainState):
            raise TypeError(
                f"train step: expected a jcnn TrainState (create_train_state), got "
                f"{type(ts).__name__}"
            )
        if self.ema is not None and ts.ema is None:
            ts = ts._replace(ema=jax.tree.map(jnp.copy, ts.params))
        shardings = self.placement.state_shardings(ts)
        if shardings is not None and not self.placement.is_placed(ts, shardings):
            ts = self.placement.place_state(ts)
        return ts

    def jitted(self, ts: TrainState) -> Any:
        """The compiled step for ``ts``: one ``jax.jit`` on one device (it retraces per
        structure itself); on a mesh one per structure and shapes, whose shardings it fixes."""
        if self.placement.mesh is None:
            key = None  # no per-call flattening of the state on the default path
        else:
            leaves, treedef = jax.tree.flatten(ts)
            key = (treedef, tuple(jnp.shape(x) for x in leaves))
        if key not in self._compiled:
            shardings = self.placement.state_shardings(ts)
            kwargs: dict[str, Any] = {}
            if shardings is not None:
                data = self.placement.batch_sharding()
                mesh = self.placement.mesh
                assert mesh is not None  # state shardings exist only on a mesh
                replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
                kwargs = dict(in_shardings=(shardings, data), out_shardings=(shardings, replicated))
            self._compiled[key] = jax.jit(
                self.update,
                donate_argnums=self.donate_argnums,
                compiler_options=self._options,
                **kwargs,
            )
        return self._compiled[key]

    def __call__(self, ts: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        ts = self.prepare(ts)
        if self.placement.mesh is not None:
            batch = self.placement.place_batch(batch)
        return self.jitted(ts)(ts, batch)

    def lower(self, ts: TrainState, batch: Batch) -> Any:
        """The lowered step (``.compile().memory_analysis()``: per-device bytes)."""
        ts = self.prepare(ts)
        if self.placement.mesh is not None:
            batch = self.placement.place_batch(batch)
        return self.jitted(ts).lower(ts, batch)


@functools.lru_cache(maxsize=64)
def _cached_step(*spec: Any) -> TrainStep:
    return _build_step(*spec)


def _build_step(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    choices: tuple[tuple[str, Any], ...],
    donate: bool,
    options: tuple[tuple[str, Any], ...] | None,
) -> TrainStep:
    """The step of :func:`make_train_step`; ``choices`` are :func:`make_update`'s options."""
    chosen = dict(choices)
    update = make_update(apply, loss_fn, optimizer, **chosen)
    compiler_options = None if options is None else dict(options)
    return TrainStep(
        update, chosen["placement"], ema=chosen["ema"], donate=donate,
        compiler_options=compiler_options,
    )  # fmt: skip


def make_train_step(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    mesh: Mesh | None = None,
    microbatches: int = 1,
    privacy: DPSGD | None = None,
    ema: float | None = None,
    transform: Transform | None = None,
    metrics_fn: MetricsFn = default_metrics,
    gradients: Gradients | None = None,
    fsdp: bool = False,
    min_size: int = 2**14,
    axis_name: str = DATA_AXIS,
    donate: bool = True,
    compiler_options: dict[str, Any] | None = None,
) -> TrainStep:
    """A compiled train step ``step(ts, (x, y)) -> (ts, metrics)``: every choice composes.

    Args:
        apply: the network's per-example apply (``net.apply``).
        loss_fn: ``loss_fn(outputs, y)``, the mean loss over the batch.
        optimizer: any optax optimiser.
        mesh: None (one device) or a ``jax.sharding.Mesh``: the batch is split along
            ``axis_name``, the state replicated (or FSDP-split with ``fsdp=True``); XLA adds the
            gradient all-reduce.
        microbatches: split each batch into this many equal slices inside the step and
            average their gradients (``lax.scan``; the batch size must be a multiple).
        privacy: a :class:`jcnn.privacy.DPSGD`: per-example clipping and noise.
        ema: keep ``ts.ema``, an exponential moving average of the params with this decay
            (e.g. 0.999), updated on device after every step.
        transform: ``transform(key, x_batch) -> x_batch`` (augmentation), applied inside the
            step with ``key = fold_in(step_key, TRANSFORM_FOLD)``, so every loop has it. A
            transform stating ``on_batch = True`` (an attribute) is a batch transform
            ``transform(key, (x, y)) -> (x, y)``, e.g. mixup and cutmix
            (:class:`jcnn.data.mixing.MixupCutmix`, soft targets for
            :func:`jcnn.losses.soft_cross_entropy`); ``loss_fn`` and ``metrics_fn`` see the
            labels it returns.
        metrics_fn: ``metrics_fn(outputs, y) -> {name: scalar}`` besides the loss.
        gradients: your own estimator ``gradients(params, state, batch, key) -> (grads,
            new_state, metrics)`` in place of the plain gradient (see
            :mod:`jcnn.training.estimators`); micro-batches, EMA and placement still apply.
        fsdp, min_size, axis_name: the mesh layout (under FSDP, arrays of fewer than
            ``min_size`` elements stay replicated).
        donate: donate the input state (its arrays are reused for the output).
        compiler_options: passed to ``jax.jit``.

    Returns:
        A :class:`TrainStep`: call it with a train state (from :func:`create_train_state`; it
        is placed and its EMA started on the first call) and a batch (NumPy or device arrays;
        on a mesh, this process's rows of the global batch). Equal arguments give the same
        step object, so repeated runs share compiled programs.

    Example:
        >>> net = L.serial(L.Flatten(), L.Dense(2))
        >>> opt = optax.sgd(0.1)
        >>> step = make_train_step(net.apply, jcnn.losses.softmax_cross_entropy, opt,
        ...                        microbatches=2, ema=0.9)
        >>> ts = jcnn.create_train_state(net, (3,), opt)
        >>> ts, metrics = step(ts, (np.ones((4, 3), np.float32), np.zeros(4, np.int32)))
        >>> int(ts.step), sorted(metrics), ts.ema["Dense_0"]["kernel"].shape
        (1, ['accuracy', 'loss'], (3, 2))
    """
    choices = dict(
        placement=Placement(mesh, fsdp=fsdp, axis_name=axis_name, min_size=min_size),
        microbatches=microbatches, privacy=privacy, ema=ema, transform=transform,
        metrics_fn=metrics_fn, gradients=gradients,
    )  # fmt: skip
    options = None if compiler_options is None else tuple(sorted(compiler_options.items()))
    spec = (apply, loss_fn, optimizer, tuple(sorted(choices.items())), donate, options)
    try:
        hash(spec)
    except TypeError:  # an unhashable argument: build afresh
        return _build_step(*spec)
    return _cached_step(*spec)


def make_eval_step(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    *,
    metrics_fn: MetricsFn = default_metrics,
    ema: bool = False,
) -> Callable[[TrainState, Batch], dict]:
    """A jit-compiled ``evaluate(ts, (x, y)) -> metrics`` with ``train=False`` (running stats).

    ``ema=True`` evaluates ``ts.ema`` (the averaged params) instead of ``ts.params``.
    """

    def evaluate(ts, batch):
        x, y = batch
        params = ts.ema if ema else ts.params
        out, _ = batched(apply)(params, ts.state, x, train=False)
        return loss_and_metrics(loss_fn, metrics_fn, out, y)[1]

    return jax.jit(evaluate)
