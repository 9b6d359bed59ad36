"""jcnn: a small functional CNN library on JAX.

Layers are ``(init, apply)`` pairs written for one example and batched with ``vmap``::

    import jax, jcnn
    from jcnn import layers as L

    net = L.serial(L.Conv(8, (5, 5)), L.Relu(), L.MaxPool((2, 2)), L.Flatten(), L.Dense(10))
    out_shape, params, state = net.init(jax.random.key(0), (28, 28, 1))
    ys, state = jcnn.batched(net.apply)(params, state, xs)

The training loop is at the top level too: ``jcnn.fit(net, (x, y), ...)``, ``jcnn.evaluate``,
``jcnn.create_train_state`` (``jcnn.fit`` is the function; its module is ``jcnn.fit``'s home,
reached with ``from jcnn.fit import ...``).

Modules loaded on demand: ``jcnn.train`` (steps, train state), ``jcnn.transfer``
(transfer learning), ``jcnn.checkpoint``, ``jcnn.data``, ``jcnn.viz``, ``jcnn.distributed``,
``jcnn.precision``, ``jcnn.remat``, ``jcnn.receptive``, ``jcnn.localization``, ``jcnn.porting``,
``jcnn.lowering``.
"""

from jcnn import initializers, layers, losses, models, shapes, signal
from jcnn.batch import batched
from jcnn.fit import FitResult, evaluate, fit
from jcnn.layers import Layer
from jcnn.summary import count_params, init_shapes, output_shape, summary
from jcnn.train import TrainState, create_train_state

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
    "models",
    "output_shape",
    "shapes",
    "signal",
    "summary",
]
