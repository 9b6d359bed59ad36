"""jcnn: a small functional CNN library on JAX.

Layers are ``(init, apply)`` pairs written for one example and batched with ``vmap``::

    import jax, jcnn
    from jcnn import layers as L

    net = L.serial(L.Conv(8, (5, 5)), L.Relu(), L.MaxPool((2, 2)), L.Flatten(), L.Dense(10))
    out_shape, params, state = net.init(jax.random.key(0), (28, 28, 1))
    ys, state = jcnn.batched(net.apply)(params, state, xs)

Modules loaded on demand: ``jcnn.train`` and ``jcnn.fit`` (training), ``jcnn.transfer``
(transfer learning), ``jcnn.checkpoint``, ``jcnn.data``, ``jcnn.viz``, ``jcnn.distributed``,
``jcnn.precision``, ``jcnn.remat``, ``jcnn.receptive``, ``jcnn.localization``, ``jcnn.porting``,
``jcnn.lowering``.
"""

from jcnn import initializers, layers, losses, models, shapes, signal
from jcnn.batch import batched
from jcnn.layers import Layer
from jcnn.summary import count_params, init_shapes, output_shape, summary

__version__ = "0.1.0"

__all__ = [
    "Layer",
    "batched",
    "count_params",
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
