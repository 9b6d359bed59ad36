"""Combinators: build networks from layers. Each returns a ``Layer`` whose params and state are
dicts keyed by child name, so every parameter has a readable path such as
``params["features"]["Conv_0"]["kernel"]``.

Children are keyed by their ``name``: a layer renamed with ``.named("stem")`` keeps that name
exactly; others get ``f"{name}_{i}"`` numbered per name (``Conv_0``, ``Conv_1``, ``Relu_0``), as in
Flax. In init every child gets its own key; in apply only the children that draw random
numbers (``layer.stochastic``: Dropout, StochasticDepth) do (:func:`jcnn.layers.core.child_keys`).
Each states how it joins its children
(``layer.combine``): ``"serial"``, ``"parallel"``, ``"sum"`` (residual) or ``"concat"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jcnn.layers.core import (
    Fns,
    Layer,
    check_tree,
    child_keys,
    in_child,
    layer_error,
    leaf,
    parameter_free,
    per_channel,
    shape_of,
)
from jcnn.layers.dense import Identity
from jcnn.layers.shapes import positive_int


def _keyed(layers: Sequence[Layer], where: str) -> list[tuple[str, Layer]]:
    """``(key, layer)`` pairs: explicit names verbatim, others numbered per name."""
    if not layers:
        raise ValueError(f"{where} needs at least one layer")
    keys: list[str] = []
    counts: dict[str, int] = {}
    for layer in layers:
        if not isinstance(layer, Layer):
            raise TypeError(
                f"{where}: expected Layer objects (call constructors: Relu(), not Relu), "
                f"got {layer!r}"
            )
        if layer.explicit_name:
            key = layer.name
        else:
            key = f"{layer.name}_{counts.get(layer.name, 0)}"
            counts[layer.name] = counts.get(layer.name, 0) + 1
        if key in keys:
            raise ValueError(f"{where}: two children are named {key!r}; rename one with .named()")
        keys.append(key)
    return list(zip(keys, layers))


def _combinator(
    rule: Callable[[Layer], Fns],
    kind: str,
    name: str,
    children: Sequence[tuple[str, Layer]],
    combine: str,
    **hparams: Any,
) -> Layer:
    return Layer(
        rule,
        kind,
        name=name,
        explicit_name=name != kind,
        hparams=hparams,
        children=tuple(children),
        combine=combine,
    )


def _serial_rule(layer: Layer) -> Fns:
    where, children = layer.name, layer.children
    keys = [k for k, _ in children]

    def init(key, input_shape):
        params, state, shape = {}, {}, input_shape
        for (k, child), sub in zip(children, jax.random.split(key, len(children))):
            shape, params[k], state[k] = in_child(where, k, child, child.init, sub, shape)
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        check_tree(where, params, keys, "params")
        check_tree(where, state, keys, "state")
        new_state = {}
        for (k, child), sub in zip(children, child_keys(key, children)):
            x, new_state[k] = in_child(
                where, k, child, child.apply, params[k], state[k], x, key=sub, train=train
            )
        return x, new_state

    def output_shape(input_shape):
        for k, child in children:
            input_shape = in_child(where, k, child, child.output_shape, input_shape)
        return input_shape

    return Fns(init, apply, output_shape)


def serial(*layers: Layer, name: str = "serial") -> Layer:
    """Layers applied one after another: ``serial(f, g)(x) = g(f(x))``.

    Shapes:
        each child's output shape is the next child's input shape.

    Example:
        >>> net = serial(Conv(8, 3), Relu(), MaxPool(2))
        >>> net.init(jax.random.key(0), (28, 28, 1))[0]
        (13, 13, 8)
    """
    return _combinator(_serial_rule, "serial", name, _keyed(layers, name), "serial")


def _parallel_rule(layer: Layer) -> Fns:
    where, children = layer.name, layer.children
    keys = [k for k, _ in children]

    def check(input_shape):
        if not isinstance(input_shape, tuple) or len(input_shape) != len(children):
            raise ValueError(
                f"{where}: expected a tuple of {len(children)} inputs, got shape {input_shape}"
            )

    def init(key, input_shape):
        check(input_shape)
        outs, params, state = [], {}, {}
        for (k, child), sub, shape in zip(
            children, jax.random.split(key, len(children)), input_shape
        ):
            out, params[k], state[k] = in_child(where, k, child, child.init, sub, shape)
            outs.append(out)
        return tuple(outs), params, state

    def apply(params, state, xs, *, key=None, train=False):
        check(shape_of(xs))
        check_tree(where, params, keys, "params")
        outs, new_state = [], {}
        for (k, child), sub, x in zip(children, child_keys(key, children), xs):
            y, new_state[k] = in_child(
                where, k, child, child.apply, params[k], state[k], x, key=sub, train=train
            )
            outs.append(y)
        return tuple(outs), new_state

    def output_shape(input_shape):
        check(input_shape)
        return tuple(
            in_child(where, k, child, child.output_shape, s)
            for (k, child), s in zip(children, input_shape)
        )

    return Fns(init, apply, output_shape)


def parallel(*layers: Layer, name: str = "parallel") -> Layer:
    """Applies the i-th layer to the i-th element of a tuple input.

    Shapes:
        ``(x_1, ..., x_n) -> (f_1(x_1), ..., f_n(x_n))``.

    Example:
        >>> parallel(Dense(3), Flatten()).output_shape(((4,), (2, 3)))
        ((3,), (6,))
    """
    return _combinator(_parallel_rule, "parallel", name, _keyed(layers, name), "parallel")


def _fan_out_rule(layer: Layer) -> Fns:
    num = layer.hparams["num"]
    return parameter_free(lambda shape: (shape,) * num, lambda x: (x,) * num)


def fan_out(num: int) -> Layer:
    """Copies the input into a tuple of ``num`` references. Shapes: ``x -> (x,) * num``."""
    num = positive_int(num, "fan_out num")
    return leaf(_fan_out_rule, "fan_out", {"num": num})


def _check_same(where: str, shapes_in: Any) -> Any:
    if not isinstance(shapes_in, tuple) or not all(isinstance(s, tuple) for s in shapes_in):
        raise ValueError(f"{where}: expected a tuple of inputs, got shape {shapes_in}")
    if len(set(shapes_in)) != 1:
        raise layer_error(where, shapes_in, "all inputs must have the same shape (no broadcasting)")
    return shapes_in[0]


def _fan_in_sum_rule(layer: Layer) -> Fns:
    def forward(xs):
        _check_same("fan_in_sum", shape_of(xs))
        return sum(xs[1:], xs[0])

    return parameter_free(lambda shape: _check_same("fan_in_sum", shape), forward)


def fan_in_sum() -> Layer:
    """Sums a tuple of same-shape inputs. Shapes: ``(x, ..., x) -> x`` (no broadcasting)."""
    return leaf(_fan_in_sum_rule, "fan_in_sum")


def _concat_shape(where: str, shapes_in: Any, axis: int) -> tuple[int, ...]:
    if not isinstance(shapes_in, tuple) or not all(isinstance(s, tuple) for s in shapes_in):
        raise ValueError(f"{where}: expected a tuple of inputs, got shape {shapes_in}")
    rank = len(shapes_in[0])
    ax = axis % rank if -rank <= axis < rank else None
    others = {tuple(d for i, d in enumerate(s) if i != ax) for s in shapes_in}
    if ax is None or any(len(s) != rank for s in shapes_in) or len(others) != 1:
        raise layer_error(where, shapes_in, f"inputs must agree on every axis except {axis}")
    return tuple(
        sum(s[ax] for s in shapes_in) if i == ax else d for i, d in enumerate(shapes_in[0])
    )


def _fan_in_concat_rule(layer: Layer) -> Fns:
    axis = layer.hparams["axis"]

    def forward(xs):
        _concat_shape("fan_in_concat", shape_of(xs), axis)
        return jnp.concatenate(xs, axis=axis)

    return parameter_free(lambda shape: _concat_shape("fan_in_concat", shape, axis), forward)


def fan_in_concat(axis: int = -1) -> Layer:
    """Concatenates a tuple of inputs along ``axis`` (default channels).

    Shapes:
        ``((..., c_1), ..., (..., c_n)) -> (..., sum c_i)``; other axes must agree.
    """
    return leaf(_fan_in_concat_rule, "fan_in_concat", {"axis": axis})


def _concat_rule(layer: Layer) -> Fns:
    n, axis = len(layer.children), layer.hparams["axis"]
    # the branches run as a parallel on the same tree this rule works on (an inlined branch's
    # keys are moved up once, by this layer: hence the parallel's rule, not a parallel layer)
    inner = _parallel_rule(
        Layer(
            _parallel_rule, "parallel", name=layer.name, children=layer.children, combine="parallel"
        )
    )
    join = _fan_in_concat_rule(layer)

    def init(key, input_shape):
        outs, params, state = inner.init(key, (input_shape,) * n)
        return _concat_shape(layer.name, outs, axis), params, state

    def apply(params, state, x, *, key=None, train=False):
        ys, new_state = inner.apply(params, state, (x,) * n, key=key, train=train)
        return join.apply({}, {}, ys)[0], new_state

    def output_shape(input_shape):
        return _concat_shape(layer.name, inner.output_shape((input_shape,) * n), axis)

    return Fns(init, apply, output_shape)


def concat(*branches: Layer, axis: int = -1, name: str = "concat") -> Layer:
    """Applies every branch to the same input and concatenates the results (Inception modules).

    Equivalent to ``serial(fan_out(n), parallel(*branches), fan_in_concat(axis))`` with the
    branches' params directly under this layer's keys.

    Shapes:
        ``x -> (..., sum of the branches' channels)``.

    Example:
        >>> concat(Conv(4, 1), Conv(6, 3, padding=1)).output_shape((8, 8, 3))
        (8, 8, 10)
    """
    return _combinator(_concat_rule, "concat", name, _keyed(branches, name), "concat", axis=axis)


def _residual_rule(layer: Layer) -> Fns:
    name = layer.name
    (kb, block), (ks, shortcut) = layer.children
    keys = (kb, ks)

    def output_shape(input_shape):
        out = in_child(name, kb, block, block.output_shape, input_shape)
        out_sc = in_child(name, ks, shortcut, shortcut.output_shape, input_shape)
        if out != out_sc:
            raise layer_error(
                name, input_shape, f"{kb} gives {out} but {ks} gives {out_sc}; they are added"
            )
        return out

    def init(key, input_shape):
        output_shape(input_shape)
        k1, k2 = jax.random.split(key)
        out, p_block, s_block = in_child(name, kb, block, block.init, k1, input_shape)
        _, p_sc, s_sc = in_child(name, ks, shortcut, shortcut.init, k2, input_shape)
        return out, {kb: p_block, ks: p_sc}, {kb: s_block, ks: s_sc}

    def apply(params, state, x, *, key=None, train=False):
        check_tree(name, params, keys, "params")
        k1, k2 = child_keys(key, layer.children)
        y, s_block = in_child(
            name, kb, block, block.apply, params[kb], state[kb], x, key=k1, train=train
        )
        z, s_sc = in_child(
            name, ks, shortcut, shortcut.apply, params[ks], state[ks], x, key=k2, train=train
        )
        if y.shape != z.shape:
            raise layer_error(name, x.shape, f"{kb} gives {y.shape} but {ks} gives {z.shape}")
        return y + z, {kb: s_block, ks: s_sc}

    return Fns(init, apply, output_shape)


def residual(block: Layer, shortcut: Layer | None = None, *, name: str = "residual") -> Layer:
    """``y = block(x) + shortcut(x)`` (He et al. 2016); the shortcut defaults to ``Identity()``.

    Params and state are ``{"block": ..., "shortcut": ...}``, or keyed by the parts' own names
    when they were given with ``.named()`` (torchvision's ``downsample``); an inlined block's
    children sit directly in this layer's params (:meth:`Layer.inlined`).

    Shapes:
        ``x -> block(x)``; block and shortcut outputs must have the same shape (no broadcasting).

    Raises:
        ShapeError: at init, when the two outputs differ (give the shortcut a 1x1 strided Conv).

    Example:
        >>> residual(serial(Conv(8, 3, padding=1), Relu())).output_shape((16, 16, 8))
        (16, 16, 8)
    """
    shortcut = Identity() if shortcut is None else shortcut
    for part in (block, shortcut):
        if not isinstance(part, Layer):
            raise TypeError(
                f"{name}: expected Layer objects (call constructors: Relu(), not Relu), "
                f"got {part!r}"
            )
    keys = [p.name if p.explicit_name else d for p, d in ((block, "block"), (shortcut, "shortcut"))]
    if keys[0] == keys[1]:
        raise ValueError(f"{name}: block and shortcut are both named {keys[0]!r}; rename one")
    children = tuple(zip(keys, (block, shortcut)))
    return _combinator(_residual_rule, "residual", name, children, "sum")


def _gate_shape(where: str, input_shape: Any, gate_shape: Any) -> None:
    """Raises unless the branch's ``gate_shape`` multiplies ``input_shape`` as documented."""
    c = input_shape[-1] if input_shape else None
    per_ch = (1,) * (len(input_shape) - 1) + (c,)
    if gate_shape in (tuple(input_shape), (c,), per_ch):
        return
    raise layer_error(
        where,
        input_shape,
        f"the gate branch gives shape {tuple(gate_shape)}; x is multiplied by it, so it must be "
        f"(C,) = ({c},), (1, ..., 1, C) = {per_ch} or x's own shape {tuple(input_shape)} (no "
        f"other broadcasting): end the branch with a layer giving {c} channels, after a "
        "global or adaptive pool for a per-channel gate",
    )


def _gate_rule(layer: Layer) -> Fns:
    where, channels = layer.name, layer.hparams.get("channels")
    chain = _serial_rule(layer)

    def output_shape(input_shape):
        if channels is not None and (not input_shape or input_shape[-1] != channels):
            raise layer_error(
                where,
                input_shape,
                f"built for channels={channels} (channels last), build it with "
                f"channels={input_shape[-1] if input_shape else '?'} for this input",
            )
        _gate_shape(where, input_shape, chain.output_shape(input_shape))
        return input_shape

    def init(key, input_shape):
        output_shape(input_shape)
        _, params, state = chain.init(key, input_shape)
        return input_shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        g, new_state = chain.apply(params, state, x, key=key, train=train)
        _gate_shape(where, x.shape, g.shape)
        if g.shape != x.shape:
            g = per_channel(g.reshape(-1), x.ndim)
        return x * g.astype(x.dtype), new_state

    return Fns(init, apply, output_shape)


def gate(*branch: Layer, name: str = "gate") -> Layer:
    """``y = x * branch(x)``: the input scaled by a gate computed from it (squeeze-excitation,
    attention gates); ``branch`` is the given layers applied in series.

    The branch's params and state are directly under this layer's keys (as :func:`serial`'s:
    ``Conv_0``, or the names given with ``.named``). ``layer.combine`` is ``"gate"``: the
    children form a chain on the input whose result multiplies the input. Tools that walk
    ``combine`` see exactly that: a pooled branch (squeeze-excitation) makes every output
    position depend on every input position, so the receptive-field walk stops there; a
    same-size windowed branch widens the field like a residual branch.

    Shapes:
        ``x: (*spatial, C) -> (*spatial, C)``. The branch must give ``(C,)`` or
        ``(1, ..., 1, C)`` (one factor per channel, broadcast over the spatial axes) or exactly
        ``x.shape`` (one factor per value); any other shape is a ShapeError, never a silent
        broadcast.

    Raises:
        ShapeError: at init or apply, when the branch gives another shape.

    Example:
        >>> se = gate(GlobalAvgPool(), Dense(2), Relu(), Dense(8), Sigmoid())
        >>> se.output_shape((4, 4, 8)), sorted(se.init(key, (4, 4, 8))[1])
        ((4, 4, 8), ['Dense_0', 'Dense_1', 'GlobalAvgPool_0', 'Relu_0', 'Sigmoid_0'])
    """
    return _combinator(_gate_rule, "gate", name, _keyed(branch, name), "gate")
