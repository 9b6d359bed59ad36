"""U-Net (Ronneberger, Fischer and Brox 2015): a contracting path, an expanding path, and skip
connections that hand each resolution's features across, for per-pixel classification.

Each level is two 3x3 convolutions (each followed by ReLU, and BatchNorm before it with
``batch_norm=True``); the contracting path halves the resolution with a 2x2 max-pool and
doubles the channels, the expanding path doubles the resolution (a 2x2 stride-2 transposed
convolution, or nearest-neighbour upsampling followed by a 3x3 convolution) and halves them,
concatenating the skip features of the same level before its two convolutions; a 1x1
convolution maps the last features to ``num_classes`` logits per pixel.

``padding="same"`` keeps every map at its level's size (the common modern form: the output is
the input's size). ``padding="valid"`` is the original: unpadded convolutions, each skip
centre-cropped to the expanding path's size, so the output is smaller than the input (the
original's 572x572 input gives 388x388, ``unet(2, base=64, depth=4, padding="valid")``).

The recursive form: ``level(d) = serial(double_conv, concat(skip, serial(MaxPool(2),
level(d + 1), up)), double_conv)``, so each skip is a branch of a ``concat`` and the whole net
is one value whose shapes are inferred at ``init``.
"""

from __future__ import annotations

from typing import Any

from jcnn.layers import (
    BatchNorm,
    Conv,
    ConvTranspose,
    Identity,
    MaxPool,
    Relu,
    Upsample,
    concat,
    custom,
    serial,
)
from jcnn.layers.core import Layer

__all__ = ["unet"]


def _double_conv(channels: int, padding: str, batch_norm: bool, name: str) -> Layer:
    parts: list[Layer] = []
    for i in (1, 2):
        conv = Conv(channels, 3, padding=padding.upper(), use_bias=not batch_norm)
        parts.append(conv.named(f"conv{i}"))
        if batch_norm:
            parts.append(BatchNorm().named(f"bn{i}"))
        parts.append(Relu().named(f"relu{i}"))
    return serial(*parts, name=name)


def _center_crop_to(target: Layer) -> Layer:
    """The input centre-cropped to ``target``'s output size (channels kept): the original
    U-Net's skip for unpadded convolutions."""

    def output_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
        size = target.output_shape(shape)[:-1]
        return (*size, shape[-1])

    def init(key: Any, shape: tuple[int, ...]) -> tuple[tuple[int, ...], dict, dict]:
        del key
        return output_shape(tuple(shape)), {}, {}

    def apply(params: Any, state: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del params, key, train
        size = output_shape(tuple(x.shape))[:-1]
        starts = [(n - m) // 2 for n, m in zip(x.shape[:-1], size)]
        crop = tuple(slice(s, s + m) for s, m in zip(starts, size))
        return x[crop], state

    return custom(init, apply, "CenterCrop", output_shape=output_shape, stochastic=False)


def unet(
    num_classes: int,
    *,
    base: int = 64,
    depth: int = 4,
    up: str = "transpose",
    padding: str = "same",
    batch_norm: bool = True,
) -> Layer:
    """U-Net for ``num_classes`` per-pixel classes (per example, channels last).

    Args:
        num_classes: logits per pixel.
        base: channels of the first level (each level down doubles them).
        depth: number of 2x2 max-pools (the input's sides must divide by ``2 ** depth`` with
            ``padding="same"``).
        up: ``"transpose"`` (2x2 stride-2 transposed conv, the original) or ``"upsample"``
            (nearest-neighbour x2 then a 3x3 conv).
        padding: ``"same"`` (output the input's size) or ``"valid"`` (the original).
        batch_norm: BatchNorm after each 3x3 conv (not in the 2015 paper; standard since).

    Shapes:
        ``(H, W, C) -> (H, W, num_classes)`` with ``padding="same"``.

    Example:
        >>> net = unet(3, base=8, depth=2)
        >>> net.output_shape((32, 32, 1))
        (32, 32, 3)
        >>> unet(2, base=64, depth=4, padding="valid").output_shape((572, 572, 1))
        (388, 388, 2)
    """
    if up not in ("transpose", "upsample"):
        raise ValueError(f"unet: up={up!r}; expected 'transpose' or 'upsample'")
    if padding not in ("same", "valid"):
        raise ValueError(f"unet: padding={padding!r}; expected 'same' or 'valid' (the original)")
    if depth < 1 or base < 1 or num_classes < 1:
        raise ValueError(
            f"unet: num_classes={num_classes}, base={base}, depth={depth}: give positive ints"
        )

    def level(d: int) -> Layer:
        channels = base * 2**d
        if d == depth:
            return _double_conv(channels, padding, batch_norm, "bottleneck")
        if up == "transpose":
            upsample = ConvTranspose(channels, 2, stride=2).named("up")
        else:
            upsample = serial(
                Upsample(2, mode="nearest"), Conv(channels, 3, padding="SAME"), name="up"
            )
        inner = serial(MaxPool(2).named("pool"), level(d + 1), upsample, name="down")
        skip = Identity() if padding == "same" else _center_crop_to(inner)
        return serial(
            _double_conv(channels, padding, batch_norm, "encode"),
            concat(skip.named("skip"), inner, name="merge"),
            _double_conv(channels, padding, batch_norm, "decode"),
            name=f"level{d}",
        )

    return serial(level(0), Conv(num_classes, 1).named("head"), name="unet")
