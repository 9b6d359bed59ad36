"""Inspecting a network without allocating it: output shapes, parameter counts, a summary table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jcnn.layers.core import Layer, init_shapes


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


def _rows(
    layer: Layer, input_shape: Any, params: Any, state: Any, label: str, depth: int, out: list
) -> None:
    shape_out = layer.output_shape(input_shape)
    out.append(
        (f"{'  ' * depth}{label}", layer.describe(), str(shape_out), _size(params), _size(state))
    )
    for (key, child), child_in in zip(layer.children, layer.child_input_shapes(input_shape)):
        _rows(child, child_in, params[key], state[key], key, depth + 1, out)


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
    """A table of every layer: its params path, kind, output shape and parameter count.

    One ``jax.eval_shape`` of the whole init gives the params and state trees (nothing is
    allocated); each row reads its subtree, and output shapes come from the layers' shape
    arithmetic, so a summary costs about one :func:`count_params`. Nested combinators are
    indented; the total counts each parameter once.

    Example:
        >>> print(summary(L.serial(L.Conv(8, 5), L.Relu(), L.Flatten(), L.Dense(10)), (12, 12, 1)))
        layer        kind                                      output shape  params  state
        ----------------------------------------------------------------------------------
        serial       serial()                                  (10,)          5,338      0
          Conv_0     Conv(out_channels=8, kernel_size=(5, 5))  (8, 8, 8)        208      0
          Relu_0     Relu()                                    (8, 8, 8)          0      0
          Flatten_0  Flatten()                                 (512,)             0      0
          Dense_0    Dense(out_features=10)                    (10,)          5,130      0
        ----------------------------------------------------------------------------------
        input (12, 12, 1); total params 5,338; state 0
    """
    rows: list[tuple[str, str, str, int, int]] = []
    _, params, state = init_shapes(layer, input_shape)
    _rows(layer, input_shape, params, state, layer.name, 0, rows)
    header = ("layer", "kind", "output shape", "params", "state")
    body = [(a, b, c, f"{d:,}", f"{e:,}") for a, b, c, d, e in rows]
    lines = text_table(header, body, left=3).splitlines()
    total, total_state = rows[0][3], rows[0][4]
    lines.append("-" * len(lines[0]))
    lines.append(f"input {tuple(input_shape)}; total params {total:,}; state {total_state:,}")
    return "\n".join(lines)
