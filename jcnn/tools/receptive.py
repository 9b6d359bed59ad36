"""Receptive fields computed analytically, layer by layer (no forward pass, nothing allocated).

For a stack of windowed layers with kernel ``k``, stride ``s``, low-side padding ``p`` and
dilation ``d`` (effective kernel ``k' = d*(k-1) + 1``), per spatial dim::

    j_out     = j_in * s                                   (jump: input pixels between units)
    r_out     = r_in + (k' - 1) * j_in                     (receptive-field size)
    start_out = start_in + ((k' - 1) / 2 - p) * j_in       (centre of the first unit's field)

starting from ``r = 1, j = 1, start = 0`` (Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019; the course text "Mechanisms of Convolutional
Networks" introduces the receptive field). Coordinates are input pixel indices: pixel ``i`` has
centre ``i``, so unit ``n`` of a layer sees input pixels
``start + n*j - (r-1)/2 .. start + n*j + (r-1)/2`` (negative indices and indices past the end
are padding). Only the low-side padding moves the field; the high side changes the output size.

Pointwise layers (``layer.pointwise``: activations, BatchNorm, Dropout, Identity, Dense on the
channel axis) leave the field as it is. Branches applied to the same input (``residual``, ``concat``) give the union of their fields
(the bounding interval; exact for the support of the gradient when no path cancels another).
The walk stops at the first layer that is neither pointwise nor windowed (``Flatten``, global
and adaptive pooling, ``Reshape``, ``GroupNorm``): after it every unit sees the whole input.
Windowed layers are read from ``layer.window`` (kernel size, stride, padding, dilation) and how
combinators join their children from ``layer.combine``; every layer's path and input shape come
from :meth:`jcnn.layers.Layer.walk`, so a step is named by the address of its params.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from jcnn.layers import shapes
from jcnn.layers.core import Layer, Visit
from jcnn.tools.summary import text_table

IntOrTuple = int | Sequence[int]


class RFSpec(NamedTuple):
    """One windowed step: per spatial dim kernel, stride, LOW-side padding and dilation.

    ``out_size`` (the layer's output spatial size) is optional and only shown in tables.
    """

    name: str
    kind: str
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out_size: tuple[int, ...] | None = None


class RFRow(NamedTuple):
    """A layer's step and the receptive field of its output units (per spatial dim).

    Attributes:
        spec: the layer's :class:`RFSpec`.
        rf: receptive-field size ``r`` in input pixels.
        jump: ``j``, input pixels between neighbouring output units (product of strides).
        start: centre of output unit 0's field in input pixel coordinates (may be negative).
    """

    spec: RFSpec
    rf: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]

    def field(self, index: Sequence[int]) -> tuple[tuple[float, float], ...]:
        """``(first, last)`` input pixel of output unit ``index``'s field, per dim (unclipped)."""
        return tuple(
            (s + i * j - (r - 1) / 2, s + i * j + (r - 1) / 2)
            for s, i, j, r in zip(self.start, index, self.jump, self.rf)
        )


def _low_padding(padding: Any, rank: int) -> tuple[int, ...]:
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return (0,) * rank
        raise ValueError(
            f"receptive_field: padding {padding!r} depends on the input size; give the low-side "
            "padding as ints (or use layer_specs(net, input_shape), which resolves it)"
        )
    if isinstance(padding, int):
        return (padding,) * rank
    items = tuple(padding)
    if len(items) != rank:
        raise ValueError(f"receptive_field: padding {padding!r} does not have {rank} entries")
    return tuple(p if isinstance(p, int) else int(tuple(p)[0]) for p in items)


def _rank(item: Sequence[Any]) -> int:
    lengths = [len(v) for v in item[2:5] if not isinstance(v, (int, str))]
    lengths += [len(item[1])] if not isinstance(item[1], int) else []
    return max(lengths, default=1)


def as_spec(item: RFSpec | Sequence[Any], rank: int | None = None) -> RFSpec:
    """An :class:`RFSpec` from ``(kind, kernel, stride, padding, dilation)`` (ints or per dim).

    ``padding`` is the low-side padding: an int, one int or ``(lo, hi)`` pair per dim, or
    ``"VALID"``. The rank is the length of the longest per-dim entry (1 when all are ints).
    """
    if isinstance(item, RFSpec):
        return item
    if len(item) != 5:
        raise ValueError(
            f"receptive_field: expected (kind, kernel, stride, padding, dilation), got {item!r}"
        )
    kind, kernel, stride, padding, dilation = tuple(item)  # five, checked above
    rank = rank or _rank(item)
    spec = RFSpec(
        name=str(kind),
        kind=str(kind),
        kernel_size=shapes.as_tuple(kernel, rank, "kernel"),
        stride=shapes.as_tuple(stride, rank, "stride"),
        padding=_low_padding(padding, rank),
        dilation=shapes.as_tuple(dilation, rank, "dilation"),
    )
    for field in (spec.kernel_size, spec.stride, spec.dilation):
        shapes.check_positive(field, f"receptive_field {spec.name}")
    return spec


def receptive_field(specs: Iterable[RFSpec | Sequence[Any]]) -> list[RFRow]:
    """The receptive field after every step of a chain of windowed layers.

    Args:
        specs: :class:`RFSpec` objects or ``(kind, kernel, stride, padding, dilation)`` tuples,
            first layer first. Pointwise layers are ``(kind, 1, 1, 0, 1)``.

    Returns:
        One :class:`RFRow` per spec.

    Example:
        >>> rows = receptive_field([("conv", 3, 1, 0, 1), ("pool", 2, 2, 0, 1)])
        >>> [(r.rf, r.jump, r.start) for r in rows]
        [((3,), (1,), (1.0,)), ((4,), (2,), (1.5,))]
    """
    rows: list[RFRow] = []
    r: tuple[int, ...] = ()
    j: tuple[int, ...] = ()
    start: tuple[float, ...] = ()
    for item in specs:
        spec = as_spec(item)
        if not rows:
            rank = len(spec.kernel_size)
            r, j, start = (1,) * rank, (1,) * rank, (0.0,) * rank
        if len(spec.kernel_size) != len(r):
            raise ValueError(f"receptive_field: {spec.name} has another rank than the first layer")
        eff = tuple(shapes.dilated_size(k, d) for k, d in zip(spec.kernel_size, spec.dilation))
        start = tuple(
            s + ((e - 1) / 2 - p) * jj for s, e, p, jj in zip(start, eff, spec.padding, j)
        )
        r = tuple(rr + (e - 1) * jj for rr, e, jj in zip(r, eff, j))
        j = tuple(jj * s for jj, s in zip(j, spec.stride))
        rows.append(RFRow(spec, r, j, start))
    return rows


# ---------------------------------------------------------------------------------------------
# Walking a jcnn network
# ---------------------------------------------------------------------------------------------


class _Node(NamedTuple):
    """A visit of :meth:`Layer.walk` with the nodes of its children (its subtree)."""

    visit: Visit
    children: tuple[_Node, ...]


def _tree(visits: Iterator[Visit]) -> _Node:
    """The next visit of a walk and, as the walk yields them depth first in order, the visits
    of its children: every path and shape is the walk's."""
    visit = next(visits)
    return _Node(visit, tuple(_tree(visits) for _ in visit.layer.children))


def _label(visit: Visit) -> str:
    return visit.path or visit.layer.name


def _leaf_spec(visit: Visit) -> RFSpec | None:
    """The step of a windowed leaf; ``None`` for a pointwise one (the field is unchanged)."""
    layer, shape = visit.layer, visit.in_shape
    if layer.pointwise:
        return None
    win = layer.window
    if win is None:
        raise ValueError(
            f"receptive field: layer {_label(visit)} ({layer.kind}) states neither a window nor "
            "pointwise; give it window= (or pointwise=True) where it is made"
        )
    if win.transposed:
        raise ValueError(
            f"receptive field: layer {_label(visit)} ({layer.kind}) is a transposed "
            "convolution; its field is not a single window of the input"
        )
    pads = shapes.resolve_padding(
        win.padding, shape[:-1], win.kernel_size, win.stride, win.dilation
    )
    return RFSpec(
        name=_label(visit),
        kind=layer.kind,
        kernel_size=tuple(win.kernel_size),
        stride=tuple(win.stride),
        padding=tuple(p[0] for p in pads),
        dilation=tuple(win.dilation),
        out_size=tuple(visit.out_shape[:-1]),
    )


def _union(specs_per_branch: list[list[RFSpec]], visit: Visit) -> RFSpec:
    """One equivalent step for branches on the same input: the union (bounding interval)."""
    name, rank = _label(visit), len(visit.in_shape) - 1
    los, his, jumps = [], [], set()
    for specs in specs_per_branch:
        rows = receptive_field(specs)
        if rows:
            last = rows[-1]
            lo_hi = last.field((0,) * rank)
            jumps.add(last.jump)
        else:  # an identity branch (e.g. the residual shortcut)
            lo_hi = ((0.0, 0.0),) * rank
            jumps.add((1,) * rank)
        los.append([a for a, _ in lo_hi])
        his.append([b for _, b in lo_hi])
    if len(jumps) != 1:
        raise ValueError(f"receptive field: branches of {name} have different strides {jumps}")
    jump = jumps.pop()
    lo = [min(v[i] for v in los) for i in range(rank)]
    hi = [max(v[i] for v in his) for i in range(rank)]
    # As one window: kernel r = hi - lo + 1, stride j, low padding -lo (lo is an integer index).
    return RFSpec(
        name=name,
        kind=visit.layer.kind,
        kernel_size=tuple(int(round(h - lw)) + 1 for lw, h in zip(lo, hi)),
        stride=jump,
        padding=tuple(int(round(-lw)) for lw in lo),
        dilation=(1,) * rank,
        out_size=tuple(visit.out_shape[:-1]),
    )


def _mixes_all(layer: Layer) -> bool:
    """A leaf that is neither pointwise nor windowed: every output sees every input position."""
    return not layer.children and not layer.pointwise and layer.window is None


def _steps(node: _Node, out: list[RFSpec]) -> bool:
    """Appends the steps of ``node``'s layer to ``out``; True when it reached a layer that
    mixes all positions (Flatten, global pooling, ...), where the walk stops."""
    visit, layer = node.visit, node.visit.layer
    shape = visit.in_shape
    if isinstance(shape, tuple) and shape and isinstance(shape[0], tuple):
        raise ValueError(f"receptive field: {_label(visit)} takes several inputs")
    if _mixes_all(layer):
        return True
    if not layer.children:
        spec = _leaf_spec(visit)
        if spec is not None:
            out.append(spec)
        return False
    if layer.combine == "serial":
        return any(_steps(child, out) for child in node.children)
    if layer.combine == "repeat":  # the block, walked once, applied n times on one shape
        (block,) = node.children
        for i in range(layer.hparams["n"]):
            specs: list[RFSpec] = []
            stops = _steps(block, specs)
            out.extend(spec._replace(name=f"{spec.name}[{i}]") for spec in specs)
            if stops:
                return True
        return False
    if layer.combine == "gate":  # x * chain(x): the identity and the chain see the same input
        chain: list[RFSpec] = []
        if any(_steps(child, chain) for child in node.children):
            return True  # the factor depends on every position (squeeze-excitation)
        out.append(_union([[], chain], visit))
        return False
    if layer.combine == "parallel":
        raise ValueError(f"receptive field: {_label(visit)} takes several inputs (parallel)")
    branches = []  # "sum" and "concat": every branch sees the same input
    for child in node.children:
        specs = []
        if _steps(child, specs):
            raise ValueError(
                f"receptive field: branch {_label(child.visit)} of {_label(visit)} mixes all "
                "positions"
            )
        branches.append(specs)
    out.append(_union(branches, visit))
    return False


def layer_specs(net: Layer, input_shape: Sequence[int]) -> list[RFSpec]:
    """The windowed steps of ``net`` for ``input_shape``, up to its first global layer.

    SAME and other size-dependent paddings are resolved for the actual input. Pointwise layers
    are left out (they do not change the field); a ``residual`` or ``concat`` block becomes one
    equivalent step.

    Args:
        net: a jcnn network (serial, residual, concat and repeat combinators, any nesting).
        input_shape: one example's shape, channels last.

    Every layer states the facts the walk needs (``layer.pointwise``, ``layer.window``,
    ``layer.combine``), so a new layer made with the public factories needs no registration.

    Raises:
        ValueError: a layer whose field is not one window of its input (``ConvTranspose``), or
            several inputs (``parallel``).
    """
    specs: list[RFSpec] = []
    _steps(_tree(net.walk(tuple(input_shape))), specs)
    return specs


def network_receptive_field(net: Layer, input_shape: Sequence[int]) -> list[RFRow]:
    """:func:`receptive_field` of :func:`layer_specs`: one row per windowed layer of ``net``.

    Example:
        >>> rows = network_receptive_field(models.alexnet(), (224, 224, 3))
        >>> rows[-1].rf   # after pool5 (the walk stops at the adaptive avgpool)
        (195, 195)
    """
    return receptive_field(layer_specs(net, input_shape))


def _fmt(values: Sequence[Any]) -> str:
    vals = [int(v) if float(v).is_integer() else v for v in values]
    return str(vals[0]) if len(set(vals)) == 1 else "x".join(str(v) for v in vals)


def receptive_table(
    rows_or_net: Sequence[RFRow] | Layer, input_shape: Sequence[int] | None = None
) -> str:
    """A text table: layer, kind, k, s, p (low side), d, output size, r, j, start.

    Square values print once (``3``), others per dim (``3x5``).

    Args:
        rows_or_net: rows from :func:`receptive_field`, or a network (then ``input_shape``).
        input_shape: one example's shape when a network is given.
    """
    if isinstance(rows_or_net, Layer):
        if input_shape is None:
            raise ValueError("receptive_table: give input_shape with a network")
        rows = network_receptive_field(rows_or_net, input_shape)
    else:
        rows = list(rows_or_net)
    header = ("layer", "kind", "k", "s", "p", "d", "out", "r", "j", "start")
    body = [
        (
            row.spec.name,
            row.spec.kind,
            _fmt(row.spec.kernel_size),
            _fmt(row.spec.stride),
            _fmt(row.spec.padding),
            _fmt(row.spec.dilation),
            _fmt(row.spec.out_size) if row.spec.out_size else "-",
            _fmt(row.rf),
            _fmt(row.jump),
            _fmt(row.start),
        )
        for row in rows
    ]
    return text_table(header, body, left=2)


def rows_as_dicts(rows: Sequence[RFRow]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (lists for per-dim values)."""
    return [
        {
            "layer": r.spec.name,
            "kind": r.spec.kind,
            "kernel_size": list(r.spec.kernel_size),
            "stride": list(r.spec.stride),
            "padding": list(r.spec.padding),
            "dilation": list(r.spec.dilation),
            "out_size": list(r.spec.out_size) if r.spec.out_size else None,
            "rf": list(r.rf),
            "jump": list(r.jump),
            "start": [float(s) for s in r.start],
        }
        for r in rows
    ]
