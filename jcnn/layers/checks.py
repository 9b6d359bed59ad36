"""Checks of a layer's inputs, and errors that name the failing layer's path.

Each layer checks its input where it is first seen (``init`` for shapes, ``apply`` for dtypes
and trees) and raises with its own label (``"Conv: input shape ..."``); each combinator on the
way up rewrites that label to the child's path (:func:`locate`), so the error a user reads starts
``resnet18/layer2/0/conv1: ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from jcnn.layers.shapes import ShapeError

if TYPE_CHECKING:
    from jcnn.layers.core import Layer


def _as_shape(shape: Any) -> Any:
    """A shape as nested tuples of ints (lists accepted)."""
    if isinstance(shape, (tuple, list)) and any(isinstance(s, (tuple, list)) for s in shape):
        return tuple(_as_shape(s) for s in shape)
    return tuple(int(s) for s in shape)


def example_shape(layer: str, shape: Any) -> Any:
    """``shape`` as a tuple of ints (nested for tuple inputs), or a TypeError that says what
    ``init`` and ``output_shape`` take: the shape of ONE example, not an array."""
    if hasattr(shape, "shape") and hasattr(shape, "dtype"):
        raise TypeError(
            f"{layer}: init takes the SHAPE of one example, e.g. (28, 28, 1), not an array; got "
            f"an array of shape {tuple(shape.shape)}: pass x.shape for one example x, or "
            "x.shape[1:] for a batch"
        )
    try:
        return _as_shape(shape)
    except (TypeError, ValueError):
        raise TypeError(
            f"{layer}: an input shape is a tuple of ints (one example, channels last), got {shape!r}"
        ) from None


#: Error types whose message a combinator rewrites to name the failing layer's path.
_LOCATED = (ShapeError, ValueError, TypeError, NameError)


def locate(err: BaseException, parent: str, key: str, child: Layer) -> BaseException:
    """``err`` raised inside ``child`` (keyed ``key`` in the combinator named ``parent``), with
    its message starting at the path ``parent/key/...`` instead of the child's own label.

    A leaf labels its errors with its kind (``"Conv: input shape ..."``); each combinator on the
    way up replaces that label by the child's key and prefixes its own name, so the error that
    reaches the user reads ``resnet18/layer2/0/conv1: ...``.
    Only jcnn's own error types are rewritten (exactly ShapeError, ValueError, TypeError,
    NameError); subclasses such as JAX's tracer errors pass through unchanged.
    """
    path = getattr(err, "jcnn_path", None)
    if path is None:
        message = str(err.args[0]) if len(err.args) == 1 else str(err)
        for label in (child.name, child.kind):
            if message.startswith(f"{label}: "):
                message = message[len(label) + 2 :]
                break
        path, detail = (key,), message
    else:
        path, detail = (key, *path[1:]), getattr(err, "jcnn_detail", "")
    if child.inline:  # its children's keys sit in the parent's tree
        path = path[1:]
    path = (parent, *path)
    new = type(err)(f"{'/'.join(path)}: {detail}")
    new.jcnn_path, new.jcnn_detail = path, detail  # type: ignore[attr-defined]
    return new


def in_child(
    parent: str,
    child_key: str,
    child: Layer,
    fn: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """``fn(*args, **kwargs)`` (one of ``child``'s functions); errors name the child's path."""
    try:
        return fn(*args, **kwargs)
    except _LOCATED as err:
        if type(err) not in _LOCATED:
            raise
        raise locate(err, parent, child_key, child) from None


def _channels_first_hint(shape: Any) -> str:
    """A hint when ``shape`` looks like a channels-first image ``(C, H, W)``."""
    if (
        len(shape) == 3
        and all(isinstance(s, int) for s in shape)
        and shape[0] in (1, 3, 4)
        and shape[1] == shape[2] >= 8
    ):
        c, h, w = shape
        return (
            f". jcnn is channels-last: an image is (H, W, C); {tuple(shape)} looks like "
            f"channels-first (C, H, W): use ({h}, {w}, {c}) (np.moveaxis(x, 1, -1) on a batch)"
        )
    return ""


def layer_error(layer: str, input_shape: Any, message: str) -> ShapeError:
    """A ShapeError whose message starts with the layer and the input shape it was given (plus a
    hint when the shape looks channels-first)."""
    shape = tuple(input_shape)
    return ShapeError(f"{layer}: input shape {shape}: {message}{_channels_first_hint(shape)}")


def channels_last(layer: str, input_shape: Any) -> Any:
    """``input_shape`` itself, after checking it has a channels axis (rank >= 1): the output
    shape of per-channel layers (BatchNorm, LayerScale)."""
    if len(input_shape) < 1:
        raise layer_error(layer, input_shape, "expected (..., C), channels last")
    return input_shape


def check_rank(layer: str, shape: Sequence[int], rank: int, layout: str) -> None:
    """Raises unless ``shape`` has ``rank`` dims (one example, no batch axis)."""
    if len(shape) != rank:
        raise layer_error(
            layer,
            shape,
            f"expected rank {rank} {layout} for ONE example (batch with jcnn.batched / vmap), "
            f"got rank {len(shape)}",
        )


def check_floating(layer: str, x: Any) -> None:
    """Raises TypeError unless ``x`` has a floating dtype (layers with weights compute in it:
    an integer input would cast the weights to integers and give zeros)."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{layer}: input dtype {x.dtype}: expected floating-point data; integer pixels "
            "would cast the weights to integers. Convert first: x.astype(np.float32) / 255 "
            "(or jcnn.data.normalize)"
        )


def check_key(layer: str, key: jax.Array | None, train: bool) -> None:
    """Raises ValueError when a random layer runs in train mode without a PRNG key."""
    if train and key is None:
        raise ValueError(
            f"{layer}: train=True needs a PRNG key: call apply(..., key=key, train=True)"
        )


def shape_of(x: Any) -> Any:
    """Python shape tuple(s) of an array or a tuple of arrays (combinator inputs)."""
    if isinstance(x, (tuple, list)):
        return tuple(shape_of(v) for v in x)
    return tuple(x.shape)


def check_tree(where: str, tree: Any, keys: Sequence[str], what: str) -> None:
    """Raises unless ``tree`` is a dict with exactly ``keys`` (params/state of a combinator)."""
    if not isinstance(tree, dict) or set(tree) != set(keys):
        got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(
            f"{where}: {what} from another architecture: expected children {sorted(keys)}, got {got}"
        )


def check_params(
    layer: str,
    params: Any,
    expected: dict[str, tuple[int, ...]],
    *,
    input_shape: tuple[int, ...] | None = None,
    in_axis: int | None = None,
    groups: int = 1,
) -> None:
    """Raises when params do not have exactly the leaves and shapes this layer and input need.

    With ``input_shape`` and ``in_axis`` (the kernel axis that counts input channels or
    features), a kernel that differs only there is reported as what it is: the input has
    another number of channels than the shape ``init`` was given.
    """
    if not isinstance(params, dict) or set(params) != set(expected):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(
            f"{layer}: params from another architecture: expected keys {sorted(expected)}, got {got}"
        )
    kernel, want = tuple(getattr(params.get("kernel"), "shape", ())), expected.get("kernel")
    if (
        in_axis is not None
        and input_shape is not None
        and want
        and len(kernel) == len(want)
        and kernel != want
    ):
        others = [(a, b) for i, (a, b) in enumerate(zip(kernel, want)) if i != in_axis % len(want)]
        if all(a == b for a, b in others):
            made_for = kernel[in_axis] * groups
            raise layer_error(
                layer,
                input_shape,
                f"the input has {input_shape[-1]} channels (last axis) but the params were made "
                f"for {made_for} (kernel {kernel}): init with the shape of the data you apply, "
                "channels last, e.g. (H, W, C) for an image (if you batched ONE example, its "
                "first axis was taken as the batch: pass x[None])",
            )
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise ValueError(
                f"{layer}: params from another architecture: {name!r} has shape "
                f"{tuple(params[name].shape)}, this layer and input need {shape}"
            )
