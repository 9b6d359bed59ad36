"""Evaluation and prediction of a trained network, batched and jitted."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jcnn.layers.arguments import count
from jcnn.layers.batch import batched
from jcnn.layers.core import Layer
from jcnn.training import checks
from jcnn.training.estimators import LossFn, MetricsFn, default_metrics, loss_and_metrics
from jcnn.training.losses import softmax_cross_entropy
from jcnn.training.placement import Placement
from jcnn.training.state import TrainState
from jcnn.training.step import make_eval_step

Arrays = tuple[Any, Any]


def evaluate_with(
    eval_step: Callable[[TrainState, Any], dict], ts: TrainState, data: Any, batch_size: int
) -> dict[str, float]:
    """Metrics of ``eval_step`` over all of the arrays ``data = (x, y)`` in batches of
    ``batch_size`` (the last may be smaller), weighted by batch size."""
    x, y = checks.data_pair("evaluate", "data", data)
    batch_size = count(batch_size, "evaluate: batch_size")
    totals: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        metrics = eval_step(ts, (x[i : i + batch_size], y[i : i + batch_size]))
        n = len(x[i : i + batch_size])
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v) * n
    return {k: v / len(x) for k, v in totals.items()}


def evaluate_source(
    sums_step: Callable[[TrainState, Any], tuple[dict, Any]],
    ts: TrainState,
    source: Any,
    placement: Placement | None = None,
) -> dict[str, float]:
    """Metrics over epoch 0 of ``source`` (:class:`jcnn.training.checks.DataSource`): the
    per-example means of :func:`cached_sums_step` over every real row, on every process.

    Each batch is padded to the source's local batch with rows of label
    :data:`~jcnn.training.checks.PAD_LABEL` (a source with several shards pads its last batch
    itself, so that every process runs the same steps), which count for nothing; on a mesh
    (``placement``) the processes' rows make one global batch split over it, so the sums
    cover all shards."""
    rows = getattr(source, "local_batch_size", None)
    source.set_epoch(0)
    totals: dict[str, float] = {}
    seen = 0.0
    for x, y in source:
        rows = rows or len(x)
        if len(x) < rows:
            x, y = _padded(np.asarray(x), np.asarray(y), rows)
        batch = (x, y) if placement is None else placement.place_batch((x, y))
        sums, n = sums_step(ts, batch)
        seen += float(n)
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    if not seen:
        raise ValueError("evaluate: the data source yielded no example")
    return {k: v / seen for k, v in totals.items()}


def _padded(x: np.ndarray, y: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` with zero images and :data:`~jcnn.training.checks.PAD_LABEL` labels appended
    up to ``rows``."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"evaluate: a partial batch of {len(x)} rows with labels of shape {y.shape} and dtype "
            f"{y.dtype}: padding it to {rows} rows needs integer class labels (N,); give a "
            "source whose batches are all full"
        )
    extra = rows - len(x)
    x = np.concatenate([x, np.zeros((extra, *x.shape[1:]), x.dtype)])
    return x, np.concatenate([y, np.full(extra, checks.PAD_LABEL, y.dtype)])


@functools.lru_cache(maxsize=64)
def cached_eval_step(
    apply: Callable[..., Any], loss_fn: LossFn, metrics_fn: MetricsFn, ema: bool
) -> Callable[[TrainState, Any], dict]:
    """:func:`jcnn.training.step.make_eval_step`, one per arguments (compiled once)."""
    return make_eval_step(apply, loss_fn, metrics_fn=metrics_fn, ema=ema)


@functools.lru_cache(maxsize=64)
def cached_sums_step(
    apply: Callable[..., Any], loss_fn: LossFn, metrics_fn: MetricsFn, ema: bool
) -> Callable[[TrainState, Any], tuple[dict, Any]]:
    """A jitted ``(ts, (x, y)) -> ({name: sum over real rows}, real rows)``: the loss and the
    metrics of each example alone (so a row's value does not depend on the others in its
    batch, as for every mean-over-examples loss and metric), summed over the rows whose label
    is not :data:`~jcnn.training.checks.PAD_LABEL` (integer labels; all rows count for soft
    labels)."""

    def sums(ts, batch):
        x, y = batch
        params = ts.ema if ema else ts.params
        out, _ = batched(apply)(params, ts.state, x, train=False)
        one = lambda o, t: loss_and_metrics(loss_fn, metrics_fn, o[None], t[None])[1]  # noqa: E731
        each = jax.vmap(one)(out, y)
        if y.ndim == 1 and jnp.issubdtype(y.dtype, jnp.integer):
            real = (y != checks.PAD_LABEL).astype(jnp.float32)
        else:
            real = jnp.ones(y.shape[:1], jnp.float32)
        return {k: jnp.sum(v * real) for k, v in each.items()}, jnp.sum(real)

    return jax.jit(sums)


def _params_check(ts: Any, ema: bool, where: str) -> None:
    if not isinstance(ts, TrainState):
        raise TypeError(
            f"{where}: train_state must be a jcnn TrainState (a FitResult's train_state, or "
            f"create_train_state), got {type(ts).__name__}"
        )
    if ema and ts.ema is None:
        raise ValueError(
            f"{where}: ema=True but this train state keeps no EMA of its params; train with "
            "fit(..., ema=0.999) (or make_train_step(..., ema=...)) to keep one"
        )


def evaluate(
    net: Layer,
    train_state: TrainState,
    data: Arrays | checks.DataSource,
    *,
    batch_size: int | None = None,
    loss_fn: LossFn = softmax_cross_entropy,
    metrics_fn: MetricsFn = default_metrics,
    ema: bool = False,
    mesh: Any = None,
) -> dict[str, float]:
    """The loss and metrics of ``net`` on all of ``data = (x, y)``, in inference mode.

    Batches of ``batch_size`` (default 1000; the last may be smaller), one jitted evaluation step, means
    weighted by batch size. ``data`` may also be a data source (e.g.
    :class:`jcnn.data.stream.StreamSource` with ``shuffle=False, drop_remainder=False``): one
    pass over its batches (leave ``batch_size`` out, or give the source's own), each example's
    loss and metrics alone, averaged over its real rows; on several processes give the
    ``mesh`` the train state lives on, so the processes' shards make global batches on it and
    every process gets the metrics of all of them. ``ema=True`` evaluates the EMA of the
    params.

    Raises:
        TypeError: data that are not a pair of arrays, non-floating ``x``, a train state that
            is not a :class:`TrainState`.
        ValueError: lengths that differ, no examples, ``batch_size`` < 1 or not a source's own,
            ``ema=True`` without an EMA.

    Example:
        >>> net = L.serial(L.Flatten(), L.Dense(2))
        >>> ts = jcnn.create_train_state(net, (3,), optax.sgd(0.1))
        >>> x, y = np.ones((5, 3), np.float32), np.zeros(5, np.int32)
        >>> sorted(evaluate(net, ts, (x, y), batch_size=2))
        ['accuracy', 'loss']
    """
    _params_check(train_state, ema, "evaluate")
    size = checks.batch_size_for("evaluate", "given", data, batch_size, 1000)
    if checks.is_source(data):
        placement = None if mesh is None else Placement(mesh)
        sums = cached_sums_step(net.apply, loss_fn, metrics_fn, bool(ema))
        return evaluate_source(sums, train_state, data, placement)
    step = cached_eval_step(net.apply, loss_fn, metrics_fn, bool(ema))
    return evaluate_with(step, train_state, data, size)


@functools.lru_cache(maxsize=64)
def _predict_step(apply: Callable[..., Any], ema: bool) -> Callable:
    def predict_batch(ts, x):
        out, _ = batched(apply)(ts.ema if ema else ts.params, ts.state, x, train=False)
        return out

    return jax.jit(predict_batch)


def predict(
    net: Layer,
    train_state: TrainState,
    x: Any,
    *,
    batch_size: int = 1000,
    ema: bool = False,
) -> np.ndarray:
    """``net``'s outputs for every example of ``x``, in inference mode, as one NumPy array.

    Batches of ``batch_size``; the last is padded to that size, so one program is compiled.
    ``ema=True`` uses the EMA of the params.

    Shapes:
        x: ``(N, *example_shape)`` -> ``(N, *net.output_shape(example_shape))``.

    Example:
        >>> net = L.serial(L.Flatten(), L.Dense(2))
        >>> ts = jcnn.create_train_state(net, (3,), optax.sgd(0.1))
        >>> predict(net, ts, np.ones((5, 3), np.float32), batch_size=2).shape
        (5, 2)
    """
    _params_check(train_state, ema, "predict")
    batch_size = count(batch_size, "predict: batch_size")
    if not hasattr(x, "shape") or len(x.shape) == 0 or len(x) == 0:
        raise ValueError(
            f"predict: x must be an array of examples along axis 0, got {type(x).__name__} "
            f"{getattr(x, 'shape', '')}"
        )
    net.output_shape(tuple(x.shape[1:]))  # a ShapeError now, naming the layer
    step = _predict_step(net.apply, bool(ema))
    size = min(batch_size, len(x))
    outputs = []
    for i in range(0, len(x), size):
        part = np.asarray(x[i : i + size])
        rows = len(part)
        if rows < size:
            part = np.concatenate([part, np.repeat(part[-1:], size - rows, axis=0)])
        outputs.append(np.asarray(step(train_state, part))[:rows])
    return np.concatenate(outputs)
