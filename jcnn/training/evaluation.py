"""Evaluation and prediction of a trained network, batched and jitted."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jcnn.layers.arguments import count
from jcnn.layers.batch import batched
from jcnn.layers.core import Layer
from jcnn.training import checks
from jcnn.training.estimators import LossFn, MetricsFn, default_metrics
from jcnn.training.losses import softmax_cross_entropy
from jcnn.training.state import TrainState
from jcnn.training.step import make_eval_step

Arrays = tuple[Any, Any]


def evaluate_with(
    eval_step: Callable[[TrainState, Any], dict], ts: TrainState, data: Any, batch_size: int
) -> dict[str, float]:
    """Metrics of ``eval_step`` over all of ``data`` (the last batch may be smaller), weighted
    by batch size. ``data``: arrays ``(x, y)`` in batches of ``batch_size``, or a data source
    (:class:`jcnn.training.checks.DataSource`: one epoch of its batches, from its start)."""
    if checks.is_source(data):
        return _evaluate_source(eval_step, ts, data)
    x, y = checks.data_pair("evaluate", "data", data)
    batch_size = count(batch_size, "evaluate: batch_size")
    totals: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        metrics = eval_step(ts, (x[i : i + batch_size], y[i : i + batch_size]))
        n = len(x[i : i + batch_size])
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v) * n
    return {k: v / len(x) for k, v in totals.items()}


def _evaluate_source(
    eval_step: Callable[[TrainState, Any], dict], ts: TrainState, source: Any
) -> dict[str, float]:
    """Metrics over epoch 0 of ``source`` (this process's shard), weighted by batch size."""
    source.set_epoch(0)
    totals: dict[str, float] = {}
    seen = 0
    for x, y in source:
        metrics = eval_step(ts, (x, y))
        seen += len(x)
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v) * len(x)
    if not seen:
        raise ValueError("evaluate: the data source yielded no batch")
    return {k: v / seen for k, v in totals.items()}


@functools.lru_cache(maxsize=64)
def cached_eval_step(
    apply: Callable[..., Any], loss_fn: LossFn, metrics_fn: MetricsFn, ema: bool
) -> Callable[[TrainState, Any], dict]:
    """:func:`jcnn.training.step.make_eval_step`, one per arguments (compiled once)."""
    return make_eval_step(apply, loss_fn, metrics_fn=metrics_fn, ema=ema)


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
    batch_size: int = 1000,
    loss_fn: LossFn = softmax_cross_entropy,
    metrics_fn: MetricsFn = default_metrics,
    ema: bool = False,
) -> dict[str, float]:
    """The loss and metrics of ``net`` on all of ``data = (x, y)``, in inference mode.

    Batches of ``batch_size`` (the last may be smaller), one jitted evaluation step, means
    weighted by batch size. ``data`` may also be a data source (e.g.
    :class:`jcnn.data.stream.StreamSource` with ``shuffle=False, drop_remainder=False``): one
    pass over its batches (``batch_size`` is then the source's). ``ema=True`` evaluates the EMA of the params.

    Raises:
        TypeError: data that are not a pair of arrays, non-floating ``x``, a train state that
            is not a :class:`TrainState`.
        ValueError: lengths that differ, no examples, ``batch_size`` < 1, ``ema=True`` without
            an EMA.

    Example:
        >>> net = L.serial(L.Flatten(), L.Dense(2))
        >>> ts = jcnn.create_train_state(net, (3,), optax.sgd(0.1))
        >>> x, y = np.ones((5, 3), np.float32), np.zeros(5, np.int32)
        >>> sorted(evaluate(net, ts, (x, y), batch_size=2))
        ['accuracy', 'loss']
    """
    _params_check(train_state, ema, "evaluate")
    step = cached_eval_step(net.apply, loss_fn, metrics_fn, bool(ema))
    return evaluate_with(step, train_state, data, batch_size)


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
