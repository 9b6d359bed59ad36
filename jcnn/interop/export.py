"""Serving a trained network without jcnn: a serialized ``jax.export`` artifact.

:func:`save` writes the network in inference mode (``train=False``: BatchNorm's running
statistics, no dropout), its params and state embedded, as the bytes of
``jax.export.Exported.serialize()`` with a symbolic batch dimension: any batch size runs. The
file needs only JAX to run, on any of the platforms it was exported for, in any process::

    import jax, numpy as np
    exported = jax.export.deserialize(open("model.jax", "rb").read())
    logits = exported.call(np.zeros((7, 224, 224, 3), np.float32))   # (7, 1000)

:func:`to_onnx` writes an ONNX model instead (through ``jax2onnx``, the optional ``onnx``
extra: ``pip install "jcnn[onnx]"``), run by ``onnxruntime`` or any ONNX runtime.

Nothing in the ``jax.export`` file is Python: it is StableHLO plus a description of its inputs and outputs
(JAX's serialization, which needs the ``flatbuffers`` package), so loading it executes no code
of the file's author. A program exported for ``("cpu", "cuda")`` picks its platform when called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jcnn.data.download import write_atomic
from jcnn.layers.batch import batched
from jcnn.layers.core import Layer

__all__ = ["PLATFORMS", "load", "onnx_friendly", "save", "to_onnx"]

#: The platforms ``jax.export`` lowers for.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def _example_shape(where: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` as one example's shape of positive ints (ValueError otherwise)."""
    shape = tuple(input_shape)
    if not shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(
            f"{where}: input_shape={input_shape!r}: give one example's shape, positive "
            "ints without the batch (e.g. (224, 224, 3)); the batch is symbolic"
        )
    return shape


def save(
    path: str | os.PathLike[str],
    net: Layer,
    params: Any,
    state: Any,
    input_shape: Sequence[int],
    *,
    platforms: Sequence[str] = ("cpu",),
    dtype: Any = jnp.float32,
) -> jax.export.Exported:
    """Writes ``net`` with ``params`` and ``state`` in inference mode to ``path`` (atomically)
    as a serialized ``jax.export`` artifact taking a batch ``(b, *input_shape)`` of ``dtype``
    for any ``b``; returns the ``jax.export.Exported``.

    Shapes:
        the artifact: ``(b, *input_shape) -> (b, *net.output_shape(input_shape))``.

    Raises:
        ValueError: an input shape that is not one example's shape of positive ints, or
            platforms ``jax.export`` does not know.
        jcnn.shapes.ShapeError: a network that does not take ``input_shape``.

    Example:
        >>> net = L.serial(L.Conv(4, 3), L.GlobalAvgPool(), L.Dense(2))
        >>> _, params, state = net.init(jax.random.key(0), (8, 8, 1))
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/net.jax"
        >>> exported = save(path, net, params, state, (8, 8, 1))
        >>> load(path).call(np.zeros((5, 8, 8, 1), np.float32)).shape
        (5, 2)
    """
    shape, chosen = _example_shape("jcnn.export.save", input_shape), tuple(platforms)
    if not chosen or any(p not in PLATFORMS for p in chosen):
        raise ValueError(
            f"jcnn.export.save: platforms={platforms!r}: give one or more of {list(PLATFORMS)}"
        )
    net.output_shape(shape)  # a ShapeError now, naming the layer

    def infer(x: jax.Array) -> Any:
        out, _ = batched(net.apply)(params, state, x, train=False)
        return out

    (batch,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, *shape), jnp.dtype(dtype))
    exported = jax.export.export(jax.jit(infer), platforms=chosen)(spec)
    write_atomic(path, bytes(exported.serialize()))
    return exported


def load(path: str | os.PathLike[str]) -> jax.export.Exported:
    """The ``jax.export.Exported`` in the file at ``path`` (what :func:`save` wrote); call it
    with ``.call(x)``. Without jcnn: ``jax.export.deserialize(open(path, "rb").read())``."""
    return jax.export.deserialize(bytearray(Path(path).read_bytes()))


def to_onnx(
    path: str | os.PathLike[str],
    net: Layer,
    params: Any,
    state: Any,
    input_shape: Sequence[int],
    *,
    opset: int = 23,
) -> Path:
    """Writes ``net`` with ``params`` and ``state`` in inference mode to ``path`` as an ONNX
    model with a dynamic batch (``"B"``) through ``jax2onnx`` (the optional ``onnx`` extra);
    returns the path. Inputs stay channels-last ``(B, *input_shape)``, float32.

    Max-pooling layers are exported as a fold of strided slices (:func:`onnx_friendly`, the
    same values): jax2onnx 0.17 turns a channels-last ``lax.reduce_window`` into an ONNX
    ``MaxPool`` over the channel axis too, which onnxruntime refuses.

    Raises:
        ImportError: ``jax2onnx`` is not installed (``pip install "jcnn[onnx]"``).
        ValueError: an input shape that is not one example's shape of positive ints.
    """
    shape = _example_shape("jcnn.export.to_onnx", input_shape)
    net.output_shape(shape)
    try:
        import jax2onnx
    except ImportError as err:
        raise ImportError(
            'jcnn.export.to_onnx needs jax2onnx: pip install "jcnn[onnx]" (jax2onnx and '
            "onnxruntime)"
        ) from err

    net = onnx_friendly(net, shape)

    def infer(x: jax.Array) -> Any:
        out, _ = batched(net.apply)(params, state, x, train=False)
        return out

    model = jax2onnx.to_onnx(infer, [("B", *shape)], model_name=type(net).__name__, opset=opset)
    return write_atomic(path, model.SerializeToString())


def onnx_friendly(net: Layer, input_shape: Sequence[int]) -> Layer:
    """``net`` with each max-pooling layer replaced by the equal ``Pool(lax.max, -inf, ...)``
    (a fold of strided slices; found by the walk, replaced by path): the same params, state
    and outputs.

    Example:
        >>> net = L.serial(L.Conv(2, 3), L.MaxPool(3, stride=2, padding=1), L.Flatten())
        >>> _, p, s = net.init(jax.random.key(0), (9, 9, 1))
        >>> x = jax.random.normal(jax.random.key(1), (9, 9, 1))
        >>> bool((onnx_friendly(net, (9, 9, 1)).apply(p, s, x)[0] == net.apply(p, s, x)[0]).all())
        True
    """
    from jcnn.layers import pool

    for visit in list(net.walk(tuple(input_shape))):
        window = visit.layer.window
        if visit.path and visit.layer.rule is pool._max_pool_rule and window is not None:
            folded = pool.Pool(
                lax.max, -float("inf"), window.kernel_size, stride=window.stride,
                padding=window.padding,
            )  # fmt: skip
            net = net.replace_at(visit.path, folded)
    return net
