"""Callbacks of :func:`jcnn.fit`: values that watch a run and may stop it [Keras callbacks].

The hooks, their order and what they receive are in :mod:`jcnn.training.hooks`
(:class:`Callback`, :class:`RunInfo`, :class:`EpochEnd`); every hook does nothing unless a
callback defines it. The built-in ones:

* :class:`MetricsLogger`: one row per epoch to a JSON-lines or CSV file.
* :class:`TensorBoard`: the epoch's scalars to TensorBoard (needs ``tensorboardX``).
  (Both in :mod:`jcnn.training.loggers`.)
* :class:`KeepBest`: checkpoints the train state whenever a metric improves.
* :class:`EarlyStopping`: stops when a metric has stopped improving.
  (Both in :mod:`jcnn.training.monitors`.)
* :class:`LearningRate`: adds the schedule's learning rate to each record;
  :func:`learning_rate_of` reads it from an ``optax.inject_hyperparams`` state instead
  (:mod:`jcnn.training.learning_rate`).

All of them are resume-aware: on a run resumed from a checkpoint, ``on_train_begin`` reads the
history so far (:attr:`RunInfo.history`), so no row is logged twice, a better earlier checkpoint
is not overwritten and the patience counts the epochs before the interruption.

Epochs: :attr:`EpochEnd.epoch` counts from 0 (like ``range(epochs)``); everything a callback
writes or reports (log rows, ``best_epoch``, ``stopped_epoch``, checkpoint meta) counts from 1,
as ``history["epoch"]`` does.
"""

from __future__ import annotations

from jcnn.training.hooks import Callback, EpochEnd, RunInfo
from jcnn.training.learning_rate import LearningRate, learning_rate_of
from jcnn.training.loggers import MetricsLogger, TensorBoard
from jcnn.training.monitors import EarlyStopping, KeepBest

__all__ = [
    "Callback",
    "EarlyStopping",
    "EpochEnd",
    "KeepBest",
    "LearningRate",
    "MetricsLogger",
    "RunInfo",
    "TensorBoard",
    "learning_rate_of",
]
