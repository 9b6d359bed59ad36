"""``LayerScale``: a learned per-channel scale (Touvron et al. 2021; ConvNeXt's ``layer_scale``)."""

from __future__ import annotations

import jax.numpy as jnp

from jcnn.layers.arguments import real_number
from jcnn.layers.core import Fns, Layer, channels_last, layer_error, leaf, per_channel


def LayerScale(init_value: float = 1e-6) -> Layer:
    """``y = x * scale``: one learned factor per channel, initialised to ``init_value``.

    ConvNeXt multiplies each block's branch by it (torchvision's ``CNBlock.layer_scale``, a
    ``(C, 1, 1)`` parameter holding the same values as jcnn's ``(C,)`` one, default 1e-6).
    Pointwise: each position is scaled on its own.

    Args:
        init_value: the initial value of every factor (a real number).

    Shapes:
        x: ``(*spatial, C) -> (*spatial, C)``; params ``{"scale": (C,)}`` (float32).

    Raises:
        TypeError: ``init_value`` is not a real number (at construction).
        ShapeError: an input whose channels differ from the params'.

    Example:
        >>> ls = LayerScale(0.5)
        >>> _, params, _ = ls.init(key, (2, 2, 3))
        >>> params["scale"].tolist(), ls.apply(params, {}, jnp.ones((2, 2, 3)))[0][0, 0].tolist()
        ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    """
    init_value = real_number(init_value, "LayerScale init_value")
    return leaf(_layer_scale_rule, "LayerScale", {"init_value": init_value}, pointwise=True)


def _layer_scale_rule(layer: Layer) -> Fns:
    init_value = layer.hparams["init_value"]

    def output_shape(input_shape):
        return channels_last("LayerScale", input_shape)

    def init(key, input_shape):
        del key
        c = output_shape(input_shape)[-1]
        return input_shape, {"scale": jnp.full((c,), init_value, jnp.float32)}, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        scale = params["scale"]
        if x.ndim < 1 or scale.shape != (x.shape[-1],):
            raise layer_error(
                "LayerScale",
                x.shape,
                f"params are for {scale.shape} channels; init the layer for this input",
            )
        return (x * per_channel(scale, x.ndim)).astype(x.dtype), state

    return Fns(init, apply, output_shape)
