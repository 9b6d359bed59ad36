"""The training engine: small parts joined by one builder and one loop.

* :func:`make_train_step` -- a step = loss + gradient estimator (plain, micro-batched, DP-SGD or
  yours) + optax optimiser + optional EMA + augmentation, placed on one device or a mesh
  (:mod:`~jcnn.training.step`, :mod:`~jcnn.training.estimators`,
  :mod:`~jcnn.training.placement`);
* :class:`~jcnn.training.loops.HostLoop` and :class:`~jcnn.training.loops.DeviceLoop` -- run
  any step over a data set, in chunks (:mod:`~jcnn.training.loops`);
* :func:`fit` -- epochs, validation, history, checkpoints that resume exactly, preemption,
  callbacks (:mod:`~jcnn.training.fit`, :mod:`~jcnn.training.callbacks`);
* :func:`evaluate`, :func:`predict` -- batched and jitted (:mod:`~jcnn.training.evaluation`).
"""

from jcnn.training.callbacks import (
    Callback,
    EarlyStopping,
    EpochEnd,
    KeepBest,
    LearningRate,
    MetricsLogger,
    RunInfo,
    TensorBoard,
    learning_rate_of,
)
from jcnn.training.estimators import (
    DPSGD,
    default_metrics,
    loss_and_grads,
    loss_and_metrics,
)
from jcnn.training.evaluation import evaluate, predict
from jcnn.training.fit import FitResult, NonFiniteLossError, fit
from jcnn.training.freeze import freeze, param_labels, param_path
from jcnn.training.loops import Chunk, DeviceLoop, HostLoop
from jcnn.training.placement import Placement
from jcnn.training.preemption import Preempted
from jcnn.training.state import TrainState, create_train_state, init_key, step_key
from jcnn.training.step import TrainStep, apply_gradients, make_eval_step, make_train_step

__all__ = [
    "DPSGD",
    "Callback",
    "Chunk",
    "DeviceLoop",
    "EarlyStopping",
    "EpochEnd",
    "FitResult",
    "HostLoop",
    "KeepBest",
    "LearningRate",
    "MetricsLogger",
    "NonFiniteLossError",
    "Placement",
    "Preempted",
    "RunInfo",
    "TensorBoard",
    "TrainState",
    "TrainStep",
    "apply_gradients",
    "create_train_state",
    "default_metrics",
    "evaluate",
    "fit",
    "freeze",
    "init_key",
    "learning_rate_of",
    "loss_and_grads",
    "loss_and_metrics",
    "make_eval_step",
    "make_train_step",
    "param_labels",
    "param_path",
    "predict",
    "step_key",
]
