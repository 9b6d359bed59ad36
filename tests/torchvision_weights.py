"""Seeded random weights in torchvision's layout, from a list of state-dict keys and shapes.

The torchvision fixture script (``tests/fixtures/make_torchvision_fixtures.py``) loads these
into torch; the tests regenerate the same arrays, so no weight file is committed. Numpy only.

Weights are scaled so deep nets stay finite and every tensor matters: convolution and linear
weights ``N(0, gain^2 / fan_in)`` (gain sqrt(2) for convs, 1 for linears), BatchNorm/LayerNorm
scales and ConvNeXt's layer scales ``U(0.5, 1.5)``, biases ``N(0, 0.1^2)``, running means
``N(0, 0.2^2)`` and running variances ``U(0.5, 1.5)``: never the default init, so a tensor that
lands in the wrong place shows.

A fixture entry may also name keys to scale after drawing (``<name>/scale_keys``, a regular
expression, and ``<name>/scale``): EfficientNet B3 and B4 scale the BatchNorm that closes each
residual branch by 0.8. With every branch at full gain their residual streams grow block by
block and float32 rounding is amplified to 1.5e-2 (B3) and 0.10 (B4) of the logits, in torch
itself; at 0.8 it is 3e-6, and swapping two channels of a tensor (every 23rd key tried) still
moves the logits by 1.8e-5 or more (median 5e-3 in B3, 9e-3 in B4; B2 at full gain: 7e-3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np


def random_state_dict(
    keys: Sequence[str],
    shapes: Sequence[Sequence[int]],
    seed: int,
    *,
    scaled: tuple[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """``{key: array}`` in ``keys`` order, drawn from one ``numpy.random.default_rng(seed)``.

    ``scaled=(pattern, factor)`` multiplies the keys ``re.search(pattern, key)`` matches by
    ``factor`` after every array is drawn (so the others are unchanged).
    """
    rng = np.random.default_rng(seed)

    def normal(shape):
        return rng.standard_normal(shape, dtype=np.float32)

    out: dict[str, np.ndarray] = {}
    for key, shape in zip(keys, shapes):
        shape = tuple(int(n) for n in shape)
        name = key.rpartition(".")[2]
        if name == "num_batches_tracked":
            out[key] = np.zeros(shape, np.int64)
        elif name == "running_mean":
            out[key] = np.float32(0.2) * normal(shape)
        elif name == "running_var" or name == "layer_scale" or len(shape) == 1 and name == "weight":
            out[key] = np.float32(0.5) + rng.random(shape, dtype=np.float32)
        elif name == "bias":
            out[key] = np.float32(0.1) * normal(shape)
        elif name == "weight":
            fan_in = int(np.prod(shape[1:]))
            gain = np.sqrt(2.0) if len(shape) > 2 else 1.0
            out[key] = np.float32(gain / np.sqrt(fan_in)) * normal(shape)
        else:
            raise ValueError(f"random_state_dict: no rule for key {key!r} of shape {shape}")
    if scaled is not None:
        pattern, factor = scaled
        hits = [key for key in out if re.search(pattern, key)]
        if not hits:
            raise ValueError(f"random_state_dict: scale pattern {pattern!r} matches no key")
        for key in hits:
            out[key] = out[key] * np.float32(factor)
    return out


def fixture_state_dict(fixture: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The weights of ``name``'s entry in ``tests/fixtures/torchvision_models.npz``."""
    keys = [str(k) for k in fixture[f"{name}/keys"]]
    shapes = [tuple(int(n) for n in row if n >= 0) for row in fixture[f"{name}/shapes"]]
    scaled = None
    if f"{name}/scale_keys" in fixture:
        scaled = (str(fixture[f"{name}/scale_keys"]), float(fixture[f"{name}/scale"]))
    return random_state_dict(keys, shapes, int(fixture[f"{name}/seed"]), scaled=scaled)
