"""Multiply-adds from the layers' facts: per layer and in total, by integer arithmetic.

A multiply-add (MAC) is one ``a * b + c``; the "GFLOPS" column of torchvision's model tables
and PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` divided by 2 count exactly the
multiply-adds of the convolutions and matrix products, which is what :func:`count_macs`
returns (biases, activations, pooling and normalisation not included):

* ``Conv``: ``prod(out spatial) * out_channels * in_channels / groups * prod(kernel_size)``
  (every output position times the full window, whatever the padding or dilation); the same
  for ``ConvLocal`` (its kernels are unshared, its multiply-adds those of a ``Conv``);
* ``ConvTranspose``: ``prod(in spatial) * in_channels * out_channels / groups * prod(kernel_size)``
  (every input position scattered through the full window);
* ``Dense``: ``prod(out_shape) * in_features`` (a ``Dense`` over positions ``(..., C)`` is a
  1x1 convolution).

Pooling and normalisation are counted apart, as element operations (:func:`layer_other_ops`):
a windowed pool ``prod(out_shape) * prod(kernel_size)``, a global or adaptive pool and a
normalisation one per input value. Shapes are one example's (jcnn's layers are per example),
so the counts are per image, as torchvision's tables are.

Example:
    >>> count_macs(L.Conv(8, 3), (10, 10, 2))  # 8*8 positions * 8 filters * 2 channels * 9
    9216
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from jcnn.layers import conv, dense, local, norm, pool
from jcnn.layers.core import Layer, Rule, Visit

__all__ = ["count_macs", "counts", "layer_macs", "layer_other_ops"]

Shape = tuple[int, ...]


def _conv_macs(layer: Layer, in_shape: Shape, out_shape: Shape) -> int:
    hp = layer.hparams
    in_channels = in_shape[-1]
    return (
        math.prod(out_shape[:-1])
        * hp["out_channels"]
        * (in_channels // hp.get("groups", 1))
        * math.prod(hp["kernel_size"])
    )


def _conv_transpose_macs(layer: Layer, in_shape: Shape, out_shape: Shape) -> int:
    hp = layer.hparams
    return (
        math.prod(in_shape[:-1])
        * in_shape[-1]
        * (hp["out_channels"] // hp.get("groups", 1))
        * math.prod(hp["kernel_size"])
    )


def _dense_macs(layer: Layer, in_shape: Shape, out_shape: Shape) -> int:
    del layer
    return math.prod(out_shape) * in_shape[-1]


_MACS: dict[Rule, Callable[[Layer, Shape, Shape], int]] = {
    conv._conv_rule: _conv_macs,
    conv._conv_transpose_rule: _conv_transpose_macs,
    local._conv_local_rule: _conv_macs,
    dense._dense_rule: _dense_macs,
}


def _window_ops(layer: Layer, in_shape: Shape, out_shape: Shape) -> int:
    del in_shape
    assert layer.window is not None  # every windowed pool states its window
    return math.prod(out_shape) * math.prod(layer.window.kernel_size)


def _per_input(layer: Layer, in_shape: Shape, out_shape: Shape) -> int:
    del layer, out_shape
    return math.prod(in_shape)


_OTHER: dict[Rule, Callable[[Layer, Shape, Shape], int]] = {
    pool._max_pool_rule: _window_ops,
    pool._sum_pool_rule: _window_ops,
    pool._avg_pool_rule: _window_ops,
    pool._global_avg_rule: _per_input,
    pool._global_max_rule: _per_input,
    pool._adaptive_avg_rule: _per_input,
    pool._adaptive_max_rule: _per_input,
    norm._batch_norm_rule: _per_input,
    norm._layer_norm_rule: _per_input,
    norm._group_norm_rule: _per_input,
}


def _shapes(visit: Visit) -> tuple[Shape, Shape] | None:
    """The visit's input and output shapes when both are single shapes (not tuples of them)."""
    ins, outs = visit.in_shape, visit.out_shape
    if not (isinstance(ins, tuple) and all(isinstance(d, int) for d in ins)):
        return None
    if not (isinstance(outs, tuple) and all(isinstance(d, int) for d in outs)):
        return None
    return ins, outs


def layer_macs(visit: Visit) -> int:
    """The multiply-adds of one walk visit's own layer (0 for any but conv, transposed conv and
    dense; a combinator's are its children's, see :func:`count_macs`)."""
    rule, shapes = _MACS.get(visit.layer.rule), _shapes(visit)
    return 0 if rule is None or shapes is None else rule(visit.layer, *shapes)


def layer_other_ops(visit: Visit) -> int:
    """The element operations of one walk visit's pooling or normalisation layer (0 for any
    other): not multiply-adds, and not in :func:`count_macs`."""
    rule, shapes = _OTHER.get(visit.layer.rule), _shapes(visit)
    return 0 if rule is None or shapes is None else rule(visit.layer, *shapes)


def counts(net: Layer, input_shape: Any) -> list[tuple[Visit, int, int]]:
    """``(visit, multiply-adds, other element ops)`` for every visit of ``net.walk``, in its
    order: a leaf's own, a combinator's summed over its subtree; a ``repeat``'s block counted
    times its ``n``.

    Example:
        >>> net = L.serial(L.Conv(4, 3), L.MaxPool(2), L.Flatten(), L.Dense(2))
        >>> [(v.path, m, o) for v, m, o in counts(net, (6, 6, 1))]  # doctest: +NORMALIZE_WHITESPACE
        [('', 608, 64), ('Conv_0', 576, 0), ('MaxPool_0', 0, 64), ('Flatten_0', 0, 0),
         ('Dense_0', 32, 0)]
    """
    visits = list(net.walk(input_shape))
    own = [(layer_macs(v), layer_other_ops(v)) for v in visits]
    totals: list[tuple[int, int]] = [(0, 0)] * len(visits)

    def total(i: int) -> int:
        """Fills ``totals`` for visit ``i``'s subtree; returns the index after it."""
        macs, ops = own[i]
        j = i + 1
        for _ in visits[i].layer.children:
            start = j
            j = total(start)
            macs, ops = macs + totals[start][0], ops + totals[start][1]
        times = int(visits[i].layer.hparams["n"]) if visits[i].layer.combine == "repeat" else 1
        totals[i] = (macs * times, ops * times)
        return j

    end = total(0)
    assert end == len(visits), (end, len(visits))  # the walk's order is the children's
    return [(v, m, o) for v, (m, o) in zip(visits, totals)]


def count_macs(net: Layer, input_shape: Any) -> int:
    """The multiply-adds of one example through ``net``'s convolutions, transposed
    convolutions and dense layers: torchvision's "GFLOPS" (times 1e9) and ``FlopCounterMode``
    over 2. Integer arithmetic on the layers' facts; nothing is traced or allocated.

    Example:
        >>> count_macs(models.cnn(), (28, 28, 1))  # 24*24*8*25 + 10*10*16*8*9 + 400*10
        234400
    """
    return counts(net, input_shape)[0][1]
