"""Inspecting a network without allocating it: output shapes, parameter counts, a summary table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jcnn.layers import paths
from jcnn.layers.core import Layer, Visit, init_shapes
from jcnn.tools import flops


def output_shape(layer: Layer, input_shape: Any) -> Any:
    """The output shape of one example, by the layer's integer shape arithmetic (no tracing).

    Example:
        >>> output_shape(models.cnn(), (28, 28, 1))
        (10,)
    """
    return layer.output_shape(input_shape)


def _size(tree: Any) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def count_params(layer: Layer, input_shape: Any) -> int:
    """Number of trainable parameters (leaves of ``params``; BatchNorm statistics not counted).

    Example:
        >>> count_params(models.cnn(), (28, 28, 1))
        5386
    """
    return _size(init_shapes(layer, input_shape)[1])


class SummaryRow(NamedTuple):
    """One row of :func:`summary`: a layer met by :meth:`jcnn.layers.Layer.walk`.

    Attributes:
        path: its walk path, the address of its params (``""`` for the root).
        depth: its indentation: the depth of its params in the tree (an inlined combinator sits
            at the level of its children, whose keys it shares with its parent).
        label: its key in its parent (the root's name; an inlined combinator's name in
            parentheses).
        kind: :meth:`jcnn.layers.Layer.describe`.
        out_shape: the output shape of one example.
        params, state: the number of parameters and state values it holds.
        macs: its multiply-adds per example (convolutions and dense layers; a combinator's
            summed over its subtree): :mod:`jcnn.tools.flops`.
        other_ops: its pooling and normalisation element operations, apart from ``macs``.
    """

    path: str
    depth: int
    label: str
    kind: str
    out_shape: Any
    params: int
    state: int
    macs: int = 0
    other_ops: int = 0


def _own(tree: Any, visit: Visit) -> Any:
    """The part of ``tree`` that belongs to ``visit``'s layer: the subtree at its path, of which
    an inlined combinator owns only its own children's keys."""
    node = paths.subtree(tree, visit.path)
    if visit.path and visit.layer.inline:
        return {key: node[key] for key in visit.layer.tree_keys}
    return node


def summary_rows(layer: Layer, input_shape: Any) -> list[SummaryRow]:
    """The rows of :func:`summary`, one per visit of ``layer.walk(input_shape)``, in its order.

    Example:
        >>> rows = summary_rows(L.serial(L.Conv(8, 3), L.Relu(), name="net"), (10, 10, 1))
        >>> [(r.path, r.label, r.out_shape, r.params) for r in rows]  # doctest: +NORMALIZE_WHITESPACE
        [('', 'net', (8, 8, 8), 80), ('Conv_0', 'Conv_0', (8, 8, 8), 80),
         ('Relu_0', 'Relu_0', (8, 8, 8), 0)]
    """
    _, params, state = init_shapes(layer, input_shape)
    rows = []
    for visit, macs, other_ops in flops.counts(layer, input_shape):
        keys = paths.split(visit.path)
        inlined = bool(keys) and visit.layer.inline
        if not keys:
            label = visit.layer.name
        else:
            label = f"({visit.layer.name})" if inlined else keys[-1]
        rows.append(
            SummaryRow(
                path=visit.path,
                depth=len(keys) + inlined,
                label=label,
                kind=visit.layer.describe(),
                out_shape=visit.out_shape,
                params=_size(_own(params, visit)),
                state=_size(_own(state, visit)),
                macs=macs,
                other_ops=other_ops,
            )
        )
    return rows


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int) -> str:
    """A plain-text table: the first ``left`` columns left-aligned, the others right-aligned,
    a rule under the header.

    Example:
        >>> print(text_table(("layer", "n"), [("Conv_0", 208), ("Dense_0", 4010)], left=1))
        layer       n
        -------------
        Conv_0    208
        Dense_0  4010
    """
    table = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for i, r in enumerate(table):
        cells = [c.ljust(w) if k < left else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def summary(layer: Layer, input_shape: Any) -> str:
    """A table of every layer: its params path, kind, output shape, parameter count and
    multiply-adds.

    One row per visit of :meth:`jcnn.layers.Layer.walk` (:func:`summary_rows`): one
    ``jax.eval_shape`` of the whole init gives the params and state trees (nothing is
    allocated), each row reads its subtree by its walk path, and output shapes come from the
    layers' shape arithmetic, so a summary costs about one :func:`count_params`. Rows are
    indented by the depth of their params; the total counts each parameter once. ``MACs`` are
    one example's multiply-adds in convolutions and dense layers (:func:`jcnn.count_macs`);
    pooling and normalisation show their element operations in parentheses instead.

    Example:
        >>> print(summary(L.serial(L.Conv(8, 5), L.Relu(), L.MaxPool(2), L.Dense(10)), (12, 12, 1)))
        layer        kind                                      output shape  params  state    MACs
        ------------------------------------------------------------------------------------------
        serial       serial()                                  (4, 4, 10)       298      0  14,080
          Conv_0     Conv(out_channels=8, kernel_size=(5, 5))  (8, 8, 8)        208      0  12,800
          Relu_0     Relu()                                    (8, 8, 8)          0      0       0
          MaxPool_0  MaxPool(window=(2, 2))                    (4, 4, 8)          0      0   (512)
          Dense_0    Dense(out_features=10)                    (4, 4, 10)        90      0   1,280
        ------------------------------------------------------------------------------------------
        input (12, 12, 1); total params 298; state 0; total multiply-adds 14,080
    """
    rows = summary_rows(layer, input_shape)
    header = ("layer", "kind", "output shape", "params", "state", "MACs")
    body = [
        (f"{'  ' * r.depth}{r.label}", r.kind, str(r.out_shape), f"{r.params:,}", f"{r.state:,}",
         f"({r.other_ops:,})" if r.other_ops and not r.macs else f"{r.macs:,}")
        for r in rows
    ]  # fmt: skip
    lines = text_table(header, body, left=3).splitlines()
    total, total_state = rows[0].params, rows[0].state
    lines.append("-" * len(lines[0]))
    lines.append(
        f"input {tuple(input_shape)}; total params {total:,}; state {total_state:,}; "
        f"total multiply-adds {rows[0].macs:,}"
    )
    return "\n".join(lines)
