"""jcnn: a small functional CNN library on JAX.

Layers are ``(init, apply)`` pairs written for one example and batched with ``vmap``::

    import jax, jcnn
    from jcnn import layers as L

    net = L.serial(L.Conv(8, (5, 5)), L.Relu(), L.MaxPool((2, 2)), L.Flatten(), L.Dense(10))
    out_shape, params, state = net.init(jax.random.key(0), (28, 28, 1))
    ys, state = jcnn.batched(net.apply)(params, state, xs)

The training engine (:mod:`jcnn.training`) is at the top level too: ``jcnn.fit(net, (x, y),
...)`` (the function), ``jcnn.make_train_step``, ``jcnn.evaluate``, ``jcnn.predict``,
``jcnn.create_train_state``.

Modules loaded on demand (``jcnn.privacy`` works after ``import jcnn``): ``jcnn.train`` (the
older step names), ``jcnn.privacy``, ``jcnn.transfer``
(transfer learning), ``jcnn.checkpoint``, ``jcnn.data``, ``jcnn.viz``, ``jcnn.distributed``,
``jcnn.precision``, ``jcnn.remat``, ``jcnn.receptive``, ``jcnn.localization``, ``jcnn.porting``,
``jcnn.lowering``.
"""

from jcnn import initializers, layers, losses, models, shapes, signal
from jcnn.batch import batched
from jcnn.layers import Layer
from jcnn.summary import count_params, init_shapes, output_shape, summary
from jcnn.training import (
    FitResult,
    TrainState,
    create_train_state,
    evaluate,
    fit,
    make_train_step,
    predict,
)

__version__ = "0.1.0"

__all__ = [
    "FitResult",
    "Layer",
    "TrainState",
    "batched",
    "count_params",
    "create_train_state",
    "evaluate",
    "fit",
    "init_shapes",
    "initializers",
    "layers",
    "losses",
    "make_train_step",
    "models",
    "output_shape",
    "predict",
    "shapes",
    "signal",
    "summary",
]

_ON_DEMAND = (
    "checkpoint",
    "data",
    "distributed",
    "localization",
    "lowering",
    "porting",
    "precision",
    "privacy",
    "receptive",
    "remat",
    "train",
    "training",
    "transfer",
    "viz",
)


def __getattr__(name: str):  # PEP 562: submodules load when first used
    if name in _ON_DEMAND:
        import importlib

        return importlib.import_module(f"jcnn.{name}")
    raise AttributeError(f"module 'jcnn' has no attribute {name!r}")
