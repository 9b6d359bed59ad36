"""The names of jcnn's training steps, for scripts that import them from here.

The engine lives in :mod:`jcnn.training` (one step builder, two loops, ``fit``); this module
keeps the functions a hand-written loop uses::

    ts = create_train_state(net, (28, 28, 1), optax.adam(5e-3), seed=0)
    step = make_train_step(net.apply, softmax_cross_entropy, optax.adam(5e-3))   # jit, donated
    ts, metrics = step(ts, (x_batch, y_batch))

    epoch = make_epoch(net.apply, softmax_cross_entropy, optax.adam(5e-3), batch_size=1000)
    ts, metrics = epoch(ts, images, labels, 0, data_rng=data_rng(0))   # one compiled call
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from jcnn.training.estimators import (
    DPSGD,
    Batch,
    LossFn,
    MetricsFn,
    default_metrics,
    loss_and_grads,
)
from jcnn.training.estimators import loss_and_metrics as loss_and_metrics  # older scripts
from jcnn.training.freeze import freeze
from jcnn.training.freeze import param_labels as param_labels  # older scripts
from jcnn.training.freeze import param_path as param_path  # older scripts
from jcnn.training.keys import TRANSFORM_FOLD as TRANSFORM_FOLD  # older scripts
from jcnn.training.keys import data_rng
from jcnn.training.keys import epoch_permutation as epoch_permutation  # older scripts
from jcnn.training.keys import init_key as init_key  # older scripts
from jcnn.training.loops import DeviceLoop
from jcnn.training.state import (
    TrainState,
    create_train_state,
)
from jcnn.training.state import step_key as step_key  # older scripts
from jcnn.training.step import (
    Transform,
    make_eval_step,
    make_train_step,
    make_update,
)
from jcnn.training.step import apply_gradients as apply_gradients  # older scripts

#: What a hand-written loop needs; the other names imported above stay importable from here for
#: older scripts, but live in :mod:`jcnn.training` (keys in :mod:`jcnn.training.keys`).
__all__ = [
    "TrainState",
    "create_train_state",
    "data_rng",
    "freeze",
    "loss_and_grads",
    "make_epoch",
    "make_eval_step",
    "make_train_step",
    "train_step",
]


def train_step(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    ts: TrainState,
    batch: Batch,
    metrics_fn: MetricsFn = default_metrics,
    microbatches: int | None = None,
) -> tuple[TrainState, dict]:
    """One training step, not jitted (the pure ``update`` of :func:`make_train_step`)."""
    update = make_update(
        apply, loss_fn, optimizer, microbatches=microbatches or 1, metrics_fn=metrics_fn
    )
    return update(ts, batch)


def make_epoch(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    *,
    metrics_fn: MetricsFn = default_metrics,
    transform: Transform | None = None,
    donate: bool = True,
    microbatches: int | None = None,
    privacy: DPSGD | None = None,
) -> Callable[..., tuple[TrainState, dict]]:
    """A whole epoch of shuffled minibatches in ONE compiled call (a ``fori_loop`` over steps).

    ``run_epoch(ts, images, labels, epoch, *, data_rng, start=0, num_steps=None)`` draws the
    epoch's permutation on device, drops the remainder (``n // batch_size`` steps) and runs
    steps ``start .. start+num_steps``: :class:`jcnn.training.loops.DeviceLoop` (mode
    ``"loop"``) with the step of :func:`make_train_step` for these arguments.

    Returns:
        ``(ts, metrics)`` with each metric stacked per step, shape ``(num_steps,)``.
    """
    if microbatches is not None and (
        not isinstance(microbatches, int) or microbatches < 1 or batch_size % microbatches
    ):
        raise ValueError(
            f"microbatches={microbatches!r} must be a positive int dividing batch_size={batch_size}"
        )
    step = make_train_step(
        apply,
        loss_fn,
        optimizer,
        microbatches=microbatches or 1,
        privacy=privacy,
        transform=transform,
        metrics_fn=metrics_fn,
        donate=donate,
    )
    loop: list[DeviceLoop] = []  # one loop: its compiled programs serve any data of one shape

    def run_epoch(ts, images, labels, epoch, *, data_rng, start=0, num_steps=None):
        steps = images.shape[0] // batch_size
        if steps == 0:
            raise ValueError(f"run_epoch: {images.shape[0]} examples < batch_size {batch_size}")
        num_steps = steps - start if num_steps is None else num_steps
        if start < 0 or num_steps < 1 or start + num_steps > steps:
            raise ValueError(f"run_epoch: steps {start}..{start + num_steps} outside 0..{steps}")
        data = jax.numpy.asarray(images), jax.numpy.asarray(labels)
        if not loop:
            loop.append(DeviceLoop(step, data, batch_size, data_rng, mode="loop", placed=True))
        loop[0].images, loop[0].labels = data
        return loop[0].epoch(epoch, start, data_rng)(step.prepare(ts), start, num_steps)

    return run_epoch
