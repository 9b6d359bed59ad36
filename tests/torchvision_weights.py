"""Seeded random weights in torchvision's layout, from a list of state-dict keys and shapes.

The torchvision fixture script (``tests/fixtures/make_torchvision_fixtures.py``) loads these
into torch; the tests regenerate the same arrays, so no weight file is committed. Numpy only.

Weights are scaled so deep nets stay finite and every tensor matters: convolution and linear
weights ``N(0, gain^2 / fan_in)`` (gain sqrt(2) for convs, 1 for linears), BatchNorm/LayerNorm
scales and ConvNeXt's layer scales ``U(0.5, 1.5)``, biases ``N(0, 0.1^2)``, running means
``N(0, 0.2^2)`` and running variances ``U(0.5, 1.5)``: never the default init, so a tensor that
lands in the wrong place shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def random_state_dict(
    keys: Sequence[str], shapes: Sequence[Sequence[int]], seed: int
) -> dict[str, np.ndarray]:
    """``{key: array}`` in ``keys`` order, drawn from one ``numpy.random.default_rng(seed)``."""
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
    return out
