"""What :func:`jcnn.fit` takes: :class:`FitArgs`, checked before anything is compiled.

The counts are ints in range, the optimiser is an optax one, the functions are callable, the
callbacks are :class:`~jcnn.training.hooks.Callback` values, and the data are checked by
:mod:`jcnn.training.checks` (pairs of arrays, floating ``x``, labels of the network's classes,
finite values), each failing with a message that says what arrived and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optax

from jcnn.layers.arguments import count
from jcnn.layers.core import Layer
from jcnn.training import checks
from jcnn.training.estimators import DPSGD, Gradients, LossFn, MetricsFn, default_metrics
from jcnn.training.hooks import Callback
from jcnn.training.losses import softmax_cross_entropy, takes_integer_labels
from jcnn.training.state import TrainState
from jcnn.training.step import Transform

__all__ = ["Arrays", "FitArgs"]

Arrays = tuple[Any, Any]


def _optimizer(optimizer: Any) -> optax.GradientTransformation:
    if optimizer is None:
        return optax.adam(1e-3)
    if hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        return optimizer
    name = getattr(optimizer, "__qualname__", None) or type(optimizer).__name__
    hint = f": {name} looks like an optimiser factory; call it, e.g. optimizer=optax.adam(1e-3)"
    raise TypeError(
        "fit: optimizer must be an optax.GradientTransformation (with init and update), got "
        f"{optimizer!r}{hint if callable(optimizer) else ''}"
    )


@dataclass
class FitArgs:
    """:func:`fit`'s arguments, checked by :meth:`checked` before anything is compiled."""

    net: Layer
    train: Any  # Arrays or a checks.DataSource
    val: Any = None  # the same, or None
    optimizer: Any = None
    epochs: int = 10
    #: None (the default: 128 for arrays, a source's own) until :meth:`checked` resolves it.
    batch_size: int = None  # type: ignore[assignment]
    loss_fn: LossFn = softmax_cross_entropy
    metrics_fn: MetricsFn = default_metrics
    seed: int = 0
    mesh: Any = None
    fsdp: bool = False
    microbatches: int = 1
    privacy: DPSGD | None = None
    ema: float | None = None
    gradients: Gradients | None = None
    transform: Transform | None = None
    on_device: bool = True
    frozen: Sequence[str] = ()
    train_state: TrainState | None = None
    callbacks: Sequence[Callback] = ()
    checkpoint_dir: str | Path | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 3
    #: Likewise (1000 for arrays).
    eval_batch_size: int = None  # type: ignore[assignment]
    log_every: int | None = None
    prefetch: int = 2
    progress: bool = True
    stop_on_nonfinite: bool = True
    #: One example's shape (set by :meth:`checked`).
    example_shape: tuple[int, ...] = field(default=(), init=False)

    @property
    def streamed(self) -> bool:
        """Whether the training data are a :class:`~jcnn.training.checks.DataSource`."""
        return checks.is_source(self.train)

    def checked(self) -> FitArgs:
        """The arguments with counts as ints and the data checked (see :func:`fit`)."""
        for name in ("batch_size", "eval_batch_size"):
            count(getattr(self, name), f"fit: {name}", optional=True)
        self.batch_size = checks.batch_size_for("fit", "training", self.train, self.batch_size, 128)
        self.eval_batch_size = checks.batch_size_for(
            "fit", "validation", self.val, self.eval_batch_size, 1000, "eval_batch_size"
        )
        for name in ("epochs", "batch_size", "eval_batch_size", "keep_checkpoints", "microbatches"):
            setattr(self, name, count(getattr(self, name), f"fit: {name}"))
        self.prefetch = count(self.prefetch, "fit: prefetch", minimum=0)
        for name in ("checkpoint_every", "log_every"):
            setattr(self, name, count(getattr(self, name), f"fit: {name}", optional=True))
        count(self.seed, "fit: seed", minimum=None)
        if self.checkpoint_every is not None and self.checkpoint_dir is None:
            raise ValueError(
                f"fit: checkpoint_every={self.checkpoint_every} but no checkpoint_dir, so nothing "
                "would be saved: give checkpoint_dir=... (or use log_every to cut the chunks)"
            )
        self.optimizer = _optimizer(self.optimizer)
        for name in ("loss_fn", "metrics_fn", "transform", "gradients"):
            fn = getattr(self, name)
            if fn is not None and not callable(fn):
                raise TypeError(f"fit: {name} must be callable, got {fn!r}")
        bad = [c for c in self.callbacks if not isinstance(c, Callback)]
        if isinstance(self.callbacks, Callback) or bad:
            raise TypeError(
                "fit: callbacks must be a sequence of jcnn.training.callbacks.Callback values "
                f"(e.g. [MetricsLogger('log.jsonl')]), got {bad[0] if bad else self.callbacks!r}"
            )
        if self.batch_size % self.microbatches:
            raise ValueError(
                f"fit: microbatches={self.microbatches} does not divide batch_size="
                f"{self.batch_size}; use a batch size that is a multiple of it"
            )
        self._check_data()
        return self

    def _check_data(self) -> None:
        if self.streamed:
            self._check_source()
            return
        self.train = x, y = checks.data_pair("fit", "train", self.train)
        if len(x) < self.batch_size:
            raise ValueError(
                f"fit: {len(x)} training examples are fewer than batch_size={self.batch_size}"
            )
        self.example_shape = shape = tuple(x.shape[1:])
        output = self.net.output_shape(shape)  # a ShapeError now, by integer arithmetic
        sets = {"train": self.train}
        if checks.is_source(self.val):
            raise TypeError(
                "fit: val is a data source but train is arrays: give both as arrays, or both as "
                "data sources"
            )
        if self.val is not None:
            self.val = checks.data_pair("fit", "val", self.val)
            if tuple(self.val[0].shape[1:]) != shape:
                raise ValueError(
                    f"fit: val examples have shape {tuple(self.val[0].shape[1:])} but train "
                    f"examples {shape}: the network is built for the training examples' shape; "
                    "give validation examples of that shape"
                )
            sets["val"] = self.val
        for name, (xs, ys) in sets.items():
            if takes_integer_labels(self.loss_fn):
                checks.check_class_labels("fit", name, ys, output)
            if self.stop_on_nonfinite:
                checks.check_finite("fit", name, xs, ys)

    def _check_source(self) -> None:
        """A data source: its example shape fits the net; labels are checked by the loss."""
        if len(self.train) < 1:
            raise ValueError("fit: the training data source has no batch per epoch")
        self.example_shape = checks.source_example_shape("fit", self.train)
        self.net.output_shape(self.example_shape)  # a ShapeError now, by integer arithmetic
        if self.val is not None and not checks.is_source(self.val):
            self.val = checks.data_pair("fit", "val", self.val)
