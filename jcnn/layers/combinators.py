"""Combinators: build networks from layers. Each returns a ``Layer`` whose params and state are
dicts keyed by child name, so every parameter has a readable path such as
``params["features"]["Conv_0"]["kernel"]``.

Children are keyed by their ``name``: a layer renamed with ``.named("stem")`` keeps that name
exactly; others get ``f"{name}_{i}"`` numbered per name (``Conv_0``, ``Conv_1``, ``Relu_0``), as in
Flax. Combinators split the PRNG key once per child.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jcnn.layers.core import Layer, layer_error, shape_of, split_key
from jcnn.layers.dense import Identity


def _child_keys(layers: Sequence[Layer], where: str) -> list[str]:
    if not layers:
        raise ValueError(f"{where} needs at least one layer")
    keys, counts = [], {}
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
    return keys


def _check_tree(where: str, tree: Any, keys: Sequence[str], what: str) -> None:
    if not isinstance(tree, dict) or set(tree) != set(keys):
        got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(
            f"{where}: {what} from another architecture: expected children {sorted(keys)}, got {got}"
        )


def _output_shape(layer: Layer, input_shape: Any) -> Any:
    """Output shape of ``layer`` for ``input_shape`` without allocating parameters."""
    box = []

    def run(key):
        out, params, state = layer.init(key, input_shape)
        box.append(out)
        return params, state

    jax.eval_shape(run, jax.random.key(0))
    return box[0]


def serial(*layers: Layer, name: str = "serial") -> Layer:
    """Layers applied one after another: ``serial(f, g)(x) = g(f(x))``.

    Shapes:
        each child's output shape is the next child's input shape.

    Example:
        >>> net = serial(Conv(8, 3), Relu(), MaxPool(2))
        >>> net.init(jax.random.key(0), (28, 28, 1))[0]
        (13, 13, 8)
    """
    keys = _child_keys(layers, name)

    def init(key, input_shape):
        params, state, shape = {}, {}, input_shape
        for k, layer, sub in zip(keys, layers, jax.random.split(key, len(layers))):
            shape, params[k], state[k] = layer.init(sub, shape)
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        _check_tree(name, params, keys, "params")
        _check_tree(name, state, keys, "state")
        new_state = {}
        for k, layer, sub in zip(keys, layers, split_key(key, len(layers))):
            x, new_state[k] = layer.apply(params[k], state[k], x, key=sub, train=train)
        return x, new_state

    def child_inputs(input_shape):
        shapes_in, shape = [], input_shape
        for layer in layers:
            shapes_in.append(shape)
            shape = _output_shape(layer, shape)
        return shapes_in

    return Layer(
        init,
        apply,
        name=name,
        children=list(zip(keys, layers)),
        child_inputs=child_inputs,
        explicit_name=name != "serial",
        kind="serial",
    )


def parallel(*layers: Layer, name: str = "parallel") -> Layer:
    """Applies the i-th layer to the i-th element of a tuple input.

    Shapes:
        ``(x_1, ..., x_n) -> (f_1(x_1), ..., f_n(x_n))``.
    """
    keys = _child_keys(layers, name)

    def check(input_shape):
        if not isinstance(input_shape, tuple) or len(input_shape) != len(layers):
            raise ValueError(
                f"{name}: expected a tuple of {len(layers)} inputs, got shape {input_shape}"
            )

    def init(key, input_shape):
        check(input_shape)
        outs, params, state = [], {}, {}
        for k, layer, sub, shape in zip(
            keys, layers, jax.random.split(key, len(layers)), input_shape
        ):
            out, params[k], state[k] = layer.init(sub, shape)
            outs.append(out)
        return tuple(outs), params, state

    def apply(params, state, xs, *, key=None, train=False):
        check(shape_of(xs))
        _check_tree(name, params, keys, "params")
        outs, new_state = [], {}
        for k, layer, sub, x in zip(keys, layers, split_key(key, len(layers)), xs):
            y, new_state[k] = layer.apply(params[k], state[k], x, key=sub, train=train)
            outs.append(y)
        return tuple(outs), new_state

    return Layer(
        init,
        apply,
        name=name,
        children=list(zip(keys, layers)),
        child_inputs=lambda s: list(s),
        explicit_name=name != "parallel",
        kind="parallel",
    )


def fan_out(num: int) -> Layer:
    """Copies the input into a tuple of ``num`` references. Shapes: ``x -> (x,) * num``."""
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"fan_out num must be a positive int, got {num!r}")

    def init(key, input_shape):
        del key
        return (input_shape,) * num, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        return (x,) * num, state

    return Layer(init, apply, name="fan_out", config=str(num))


def _check_same(where: str, shapes_in: Any) -> None:
    if not isinstance(shapes_in, tuple) or not all(isinstance(s, tuple) for s in shapes_in):
        raise ValueError(f"{where}: expected a tuple of inputs, got shape {shapes_in}")
    if len(set(shapes_in)) != 1:
        raise layer_error(where, shapes_in, "all inputs must have the same shape (no broadcasting)")


def fan_in_sum() -> Layer:
    """Sums a tuple of same-shape inputs. Shapes: ``(x, ..., x) -> x`` (no broadcasting)."""

    def init(key, input_shape):
        del key
        _check_same("fan_in_sum", input_shape)
        return input_shape[0], {}, {}

    def apply(params, state, xs, *, key=None, train=False):
        del key, train
        _check_same("fan_in_sum", shape_of(xs))
        return sum(xs[1:], xs[0]), state

    return Layer(init, apply, name="fan_in_sum")


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


def fan_in_concat(axis: int = -1) -> Layer:
    """Concatenates a tuple of inputs along ``axis`` (default channels).

    Shapes:
        ``((..., c_1), ..., (..., c_n)) -> (..., sum c_i)``; other axes must agree.
    """

    def init(key, input_shape):
        del key
        return _concat_shape("fan_in_concat", input_shape, axis), {}, {}

    def apply(params, state, xs, *, key=None, train=False):
        del key, train
        _concat_shape("fan_in_concat", shape_of(xs), axis)
        return jnp.concatenate(xs, axis=axis), state

    return Layer(init, apply, name="fan_in_concat", config=f"axis={axis}")


def concat(*branches: Layer, axis: int = -1, name: str = "concat") -> Layer:
    """Applies every branch to the same input and concatenates the results (Inception modules).

    Equivalent to ``serial(fan_out(n), parallel(*branches), fan_in_concat(axis))`` with the
    branches' params directly under this layer's keys.

    Shapes:
        ``x -> (..., sum of the branches' channels)``.
    """
    inner = parallel(*branches, name=name)
    joined = fan_in_concat(axis)

    def init(key, input_shape):
        outs, params, state = inner.init(key, (input_shape,) * len(branches))
        return joined.init(None, outs)[0], params, state

    def apply(params, state, x, *, key=None, train=False):
        ys, new_state = inner.apply(params, state, (x,) * len(branches), key=key, train=train)
        return joined.apply({}, {}, ys)[0], new_state

    return Layer(
        init,
        apply,
        name=name,
        children=inner.children,
        child_inputs=lambda s: [s] * len(branches),
        explicit_name=name != "concat",
        kind="concat",
    )


def residual(block: Layer, shortcut: Layer | None = None, *, name: str = "residual") -> Layer:
    """``y = block(x) + shortcut(x)`` (He et al. 2016); the shortcut defaults to ``Identity()``.

    Params and state are ``{"block": ..., "shortcut": ...}``.

    Shapes:
        ``x -> block(x)``; block and shortcut outputs must have the same shape (no broadcasting).

    Raises:
        ShapeError: at init, when the two outputs differ (give the shortcut a 1x1 strided Conv).
    """
    shortcut = Identity() if shortcut is None else shortcut
    keys = ("block", "shortcut")
    _child_keys([block.named("block") if isinstance(block, Layer) else block, shortcut], name)
    subs = (block, shortcut)

    def init(key, input_shape):
        k1, k2 = jax.random.split(key)
        out, p_block, s_block = block.init(k1, input_shape)
        out_sc, p_sc, s_sc = shortcut.init(k2, input_shape)
        if out != out_sc:
            raise layer_error(
                name, input_shape, f"block gives {out} but shortcut gives {out_sc}; they are added"
            )
        return out, {"block": p_block, "shortcut": p_sc}, {"block": s_block, "shortcut": s_sc}

    def apply(params, state, x, *, key=None, train=False):
        _check_tree(name, params, keys, "params")
        k1, k2 = split_key(key, 2)
        y, s_block = block.apply(params["block"], state["block"], x, key=k1, train=train)
        z, s_sc = shortcut.apply(params["shortcut"], state["shortcut"], x, key=k2, train=train)
        if y.shape != z.shape:
            raise layer_error(name, x.shape, f"block gives {y.shape} but shortcut gives {z.shape}")
        return y + z, {"block": s_block, "shortcut": s_sc}

    return Layer(
        init,
        apply,
        name=name,
        children=list(zip(keys, subs)),
        child_inputs=lambda s: [s, s],
        explicit_name=name != "residual",
        kind="residual",
    )
