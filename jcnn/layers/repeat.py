"""``repeat(layer, n)``: ``n`` copies of one block with stacked params, applied by ``lax.scan``.

A deep stack of identical blocks written as ``serial(block, block, ...)`` is unrolled into the
compiled program, so compile time grows with the depth. ``repeat`` traces and compiles the block
ONCE and loops over a leading axis of stacked parameters, so 50 residual blocks compile in about
the time of one [Flax ``nn.scan``, Equinox's scan-over-layers idiom].
"""

from __future__ import annotations

import jax
from jax import lax

from jcnn.layers.core import Fns, Layer, check_tree, in_child, layer_error
from jcnn.layers.shapes import positive_int


def repeat(layer: Layer, n: int, *, name: str = "repeat") -> Layer:
    """``layer`` applied ``n`` times in sequence, each copy with its own parameters.

    Equals ``serial(layer, ..., layer)`` (``n`` copies) numerically; the copies' params and
    state are stacked along a new leading axis and the copies run in a ``lax.scan``. Copy ``i``
    is initialised with ``split(key, n)[i]`` and, when a key is given to ``apply``, runs with
    ``split(key, n)[i]``.

    Args:
        layer: the block; its output shape must equal its input shape.
        n: number of copies (``>= 1``).
        name: params key inside a parent combinator.

    Shapes:
        ``x -> x`` (same shape); params ``{"blocks": tree of (n, *leaf_shape)}``, state likewise.

    Raises:
        ShapeError: at init, when the block changes the shape of its input.

    Example:
        >>> block = residual(serial(Conv(8, 3, padding=1), Relu()))
        >>> net = repeat(block, 50)
        >>> net.init(jax.random.key(0), (16, 16, 8))[0]
        (16, 16, 8)
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"repeat: expected a Layer (call the constructor), got {layer!r}")
    n = positive_int(n, "repeat n")
    return Layer(
        _repeat_rule,
        "repeat",
        name=name,
        explicit_name=name != "repeat",
        hparams={"n": n},
        children=(("blocks", layer),),
        combine="repeat",
    )


def _repeat_rule(layer: Layer) -> Fns:
    name, n = layer.name, layer.hparams["n"]
    ((_, block),) = layer.children

    def output_shape(input_shape):
        out_shape = in_child(name, "blocks", block, block.output_shape, input_shape)
        if out_shape != input_shape:
            raise layer_error(
                name,
                input_shape,
                f"the repeated block must keep the shape, but it gives {out_shape}",
            )
        return out_shape

    def init(key, input_shape):
        out_shape = output_shape(tuple(input_shape))

        def init_one(k):
            return in_child(name, "blocks", block, block.init, k, input_shape)[1:]

        params, state = jax.vmap(init_one)(jax.random.split(key, n))
        return out_shape, {"blocks": params}, {"blocks": state}

    def apply(params, state, x, *, key=None, train=False):
        check_tree(name, params, ("blocks",), "params")
        check_tree(name, state, ("blocks",), "state")
        keys = None if key is None or not block.stochastic else jax.random.split(key, n)

        def body(h, xs):
            p, s, k = xs
            h2, s2 = in_child(name, "blocks", block, block.apply, p, s, h, key=k, train=train)
            if h2.shape != h.shape or h2.dtype != h.dtype:
                raise layer_error(
                    name, h.shape, f"the repeated block must keep the shape, got {h2.shape}"
                )
            return h2, s2

        y, new_state = lax.scan(body, x, (params["blocks"], state["blocks"], keys), length=n)
        return y, {"blocks": new_state}

    return Fns(init, apply, output_shape)
