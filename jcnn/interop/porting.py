"""Whole networks in and out of PyTorch's ``state_dict`` layout: :func:`from_torch`, :func:`to_torch`.

One walk (:meth:`jcnn.layers.Layer.walk`) gives every layer that holds params or state with its
path and input shape (:func:`torch_leaves`); each tensor is converted by what its layer states
about itself: a windowed layer's kernel as a (transposed) convolution weight, a Dense after a
row-major flatten of a spatial map with its columns in torch's ``(C, *s)`` order, BatchNorm
statistics as state. A param's torch name follows from its leaf name (``kernel`` ->
``weight``, ``offset`` -> ``bias``, ``mean`` -> ``running_mean``); the exceptions of a model zoo
(torchvision's ConvNeXt keeps its layer scale as a ``(C, 1, 1)`` parameter of the block) are
given by the caller as ``names=``, never matched by kind here.

The tensor conversions themselves are in :mod:`jcnn.interop.layouts` and the jcnn-layout files
in :mod:`jcnn.interop.safetensors`; both are re-exported here. Nothing here imports torch: a
state dict is ``str -> array-like``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jcnn.interop.layouts import (
    batchnorm_from_torch,
    conv_kernel_from_torch,
    conv_kernel_to_torch,
    conv_transpose_kernel_from_torch,
    conv_transpose_kernel_to_torch,
    dense_kernel_after_flatten_from_torch,
    dense_kernel_after_flatten_to_torch,
    dense_kernel_from_torch,
    nchw_to_nhwc,
    nhwc_to_nchw,
)
from jcnn.interop.safetensors import SAFETENSORS_FORMAT, load_safetensors, save_safetensors
from jcnn.layers import paths
from jcnn.layers.core import Layer, init_shapes

__all__ = [
    "SAFETENSORS_FORMAT",
    "TorchLeaf",
    "TorchName",
    "batchnorm_from_torch",
    "conv_kernel_from_torch",
    "conv_kernel_to_torch",
    "conv_transpose_kernel_from_torch",
    "conv_transpose_kernel_to_torch",
    "dense_kernel_after_flatten_from_torch",
    "dense_kernel_after_flatten_to_torch",
    "dense_kernel_from_torch",
    "from_torch",
    "load_safetensors",
    "nchw_to_nhwc",
    "nhwc_to_nchw",
    "save_safetensors",
    "to_torch",
    "torch_leaves",
]

#: jcnn params / state leaf names -> the ``torch.nn`` tensor names (jcnn's naming convention).
TORCH_PARAM_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "offset": "bias"}
TORCH_STATE_NAMES = {"mean": "running_mean", "var": "running_var"}
#: Torch buffers with no jcnn counterpart (BatchNorm's step counter): read and dropped.
TORCH_IGNORED = ("num_batches_tracked",)


class TorchName(NamedTuple):
    """Where torch keeps one jcnn tensor, for ``names=`` of :func:`from_torch` / :func:`to_torch`.

    Attributes:
        key: the full torch state-dict key (``"features.1.0.layer_scale"``).
        shape: torch's shape for the same values in the same (row-major) order, when it differs
            from jcnn's (``(-1, 1, 1)`` for a ``(C,)`` vector torch keeps as ``(C, 1, 1)``;
            ``-1`` as in ``np.reshape``); ``None`` converts as the layer's facts say.
    """

    key: str
    shape: tuple[int, ...] | None = None


Names = Mapping[str, "str | TorchName | tuple[str, Sequence[int]]"]


class TorchLeaf(NamedTuple):
    """A leaf of a jcnn network that holds params or state, as the porting walk sees it.

    Attributes:
        path: its walk path, the address of its params: ``"features/Conv_0"``.
        layer: the leaf layer.
        input_shape: its input shape (one example, channels last).
        flattened_from: for a Dense that reads a ``Flatten`` of a spatial map (through pointwise
            layers only), that map's shape ``(*s, C)``: torch flattens ``(C, *s)`` instead.
        params, state: the leaf's trees of ``jax.ShapeDtypeStruct``.
    """

    path: str
    layer: Any
    input_shape: tuple[int, ...]
    flattened_from: tuple[int, ...] | None
    params: dict[str, Any]
    state: dict[str, Any]


def _leaves(net: Layer, input_shape: Sequence[int]) -> tuple[list[TorchLeaf], Any, Any]:
    """:func:`torch_leaves` and the params and state trees of ``net`` (ShapeDtypeStructs)."""
    shape = tuple(input_shape)
    _, params, state = init_shapes(net, shape)
    out: list[TorchLeaf] = []
    flat: tuple[int, ...] | None = None
    for visit in net.walk(shape):
        layer = visit.layer
        if layer.combine == "repeat":
            raise ValueError(
                f"porting: {visit.path or layer.name} is a repeat (stacked params); torch has no "
                "layout for it"
            )
        if layer.children:
            continue
        p, s = paths.subtree(params, visit.path), paths.subtree(state, visit.path)
        if p or s:
            out.append(TorchLeaf(visit.path, layer, visit.in_shape, flat, p, s))
        if _flattens(layer, visit.in_shape):
            flat = tuple(visit.in_shape)
        elif not (layer.pointwise and not p):
            flat = None
    return out, params, state


def torch_leaves(net: Layer, input_shape: Sequence[int]) -> list[TorchLeaf]:
    """The leaves of ``net`` holding params or state, in the order torch registers modules.

    The visits of ``net.walk(input_shape)`` in order, with their paths and input shapes; the
    layers' ``window`` and ``pointwise`` facts recognise convolutions and see through
    activations between a ``Flatten`` and a ``Dense``; one ``jax.eval_shape`` of the init gives
    the trees (each leaf's at its walk path).

    Raises:
        ValueError: a ``repeat`` (stacked params have no torch layout).

    Example:
        >>> net = L.serial(L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(2).named("fc"))
        >>> [(leaf.path, leaf.flattened_from) for leaf in torch_leaves(net, (5, 5, 1))]
        [('Conv_0', None), ('fc', (3, 3, 4))]
    """
    return _leaves(net, input_shape)[0]


def _flattens(layer: Layer, shape: tuple[int, ...]) -> bool:
    """A non-pointwise, unwindowed leaf that maps a spatial map to a vector of the same size: a
    row-major flatten (``Flatten``, ``Reshape((-1,))``), read from its facts, not its kind."""
    if layer.pointwise or layer.window is not None or layer.children or len(shape) < 2:
        return False
    out = layer.output_shape(shape)
    return len(out) == 1 and out[0] == int(np.prod(shape))


def _kernel_converters(leaf: TorchLeaf) -> tuple[Any, Any]:
    """(from_torch, to_torch) for this leaf's kernel, chosen by its facts."""
    win = leaf.layer.window
    if win is not None:
        if win.transposed:
            return conv_transpose_kernel_from_torch, conv_transpose_kernel_to_torch
        return conv_kernel_from_torch, conv_kernel_to_torch
    if leaf.flattened_from is not None:
        torch_shape = (leaf.flattened_from[-1], *leaf.flattened_from[:-1])
        return (
            lambda w: dense_kernel_after_flatten_from_torch(w, torch_shape),
            lambda k: dense_kernel_after_flatten_to_torch(k, torch_shape),
        )
    return dense_kernel_from_torch, lambda k: np.asarray(k).T


class _Tensor(NamedTuple):
    """One jcnn tensor and its torch key, with the conversions between the two."""

    tree: str  # "params" or "state"
    path: str  # the tensor's path in its tree: the leaf's path and the tensor's name
    key: str
    from_torch: Any
    to_torch: Any


def _as_name(value: Any) -> TorchName:
    if isinstance(value, str):
        return TorchName(value)
    key, shape = value
    return TorchName(key, None if shape is None else tuple(int(d) for d in shape))


def _tensors(leaf: TorchLeaf, prefix: str | None, names: Names) -> list[_Tensor]:
    """The tensors of ``leaf``: named by ``names`` (jcnn tensor path -> torch key) or by their
    leaf name under ``prefix``, converted by the leaf's facts."""
    out = []
    for tree, leaves, table in (
        ("params", leaf.params, TORCH_PARAM_NAMES),
        ("state", leaf.state, TORCH_STATE_NAMES),
    ):
        for name, value in leaves.items():
            path = paths.join(leaf.path, name)
            convert: tuple[Any, Any] = (np.asarray, np.asarray)
            if tree == "params" and name == "kernel":
                convert = _kernel_converters(leaf)
            if path in names:
                key, torch_shape = _as_name(names[path])
                if torch_shape is not None:  # the same values, in torch's shape
                    convert = (
                        lambda w, s=tuple(value.shape): np.reshape(w, s),
                        lambda v, s=torch_shape: np.reshape(v, s),
                    )
            elif name in table:
                key = f"{prefix}.{table[name]}" if prefix else table[name]
            else:
                raise ValueError(
                    f"porting: {leaf.path or leaf.layer.name} has the {tree} leaf {name!r}, which "
                    f"has no torch name (jcnn's are {sorted(table)}); give it one with "
                    f"names={{{path!r}: 'prefix.torch_name'}}"
                )
            out.append(_Tensor(tree, path, key, *convert))
    return out


def _needs_prefix(leaf: TorchLeaf, names: Names) -> bool:
    """Whether some tensor of ``leaf`` is named by its leaf name (not all are in ``names``)."""
    return any(paths.join(leaf.path, name) not in names for name in (*leaf.params, *leaf.state))


def _prefixes(
    leaves: list[TorchLeaf],
    keys: Sequence[str],
    prefixes: Mapping[str, str] | None,
    names: Names,
) -> dict[str, str]:
    """jcnn path -> torch module prefix: given, or the i-th leaf <-> the i-th torch module."""
    leaves = [leaf for leaf in leaves if _needs_prefix(leaf, names)]
    if prefixes is not None:
        missing = [leaf.path for leaf in leaves if leaf.path not in prefixes]
        if missing:
            raise ValueError(f"porting: no torch prefix given for jcnn paths {missing}")
        return {leaf.path: prefixes[leaf.path] for leaf in leaves}
    claimed = {_as_name(v).key for v in names.values()}
    modules = list(dict.fromkeys(k.rpartition(".")[0] for k in keys if k not in claimed))
    if len(modules) != len(leaves):
        raise ValueError(
            f"porting: the state dict has {len(modules)} modules with tensors ({modules[:6]}...) "
            f"but the jcnn net has {len(leaves)} layers with params or state "
            f"({[leaf.path for leaf in leaves][:6]}...); pass prefixes= to map them by name"
        )
    return {leaf.path: module for leaf, module in zip(leaves, modules)}


def from_torch(
    net: Layer,
    input_shape: Sequence[int],
    state_dict: Mapping[str, Any],
    *,
    prefixes: Mapping[str, str] | None = None,
    names: Names | None = None,
) -> tuple[dict, dict]:
    """jcnn ``(params, state)`` for ``net`` from a torch ``state_dict`` of the same architecture.

    Every tensor is converted by what the jcnn layer it lands in states about itself: a windowed
    layer's kernel as a (transposed) convolution weight, a Dense after a ``Flatten`` of a
    spatial map with its columns permuted from torch's ``(C, *s)`` flatten order, BatchNorm's
    ``running_mean``/``running_var`` as state. Every key is used exactly once.

    Args:
        net: the jcnn network; input_shape: one example's shape, channels last.
        state_dict: ``str -> array-like`` (numpy arrays; torch CPU tensors convert through
            ``np.asarray``); jcnn never imports torch.
        prefixes: jcnn leaf path -> torch module prefix (``{"features/Conv_0": "features.0"}``);
            default: the i-th jcnn leaf with params takes the i-th torch module, in order.
        names: jcnn tensor path (the leaf's path and the tensor's name) -> its torch key, a str
            or a :class:`TorchName` ``(key, torch_shape)``, for tensors torch names otherwise
            than by the leaf names (``{"block/ls/scale": ("block.layer_scale", (-1, 1, 1))}``).

    Returns:
        ``(params, state)`` as numpy arrays (``jax.device_put`` them, or pass to ``apply``).

    Raises:
        ValueError: a key that is missing, left over or of the wrong shape; the message names
            the torch key and the jcnn path it maps to.

    Example:
        >>> net = L.serial(L.Conv(4, 3), L.BatchNorm(), L.Relu(), L.Flatten(), L.Dense(2))
        >>> sd = {"0.weight": np.ones((4, 1, 3, 3)), "0.bias": np.zeros(4),
        ...       "1.weight": np.ones(4), "1.bias": np.zeros(4), "1.running_mean": np.zeros(4),
        ...       "1.running_var": np.ones(4), "1.num_batches_tracked": np.array(0),
        ...       "4.weight": np.ones((2, 4 * 3 * 3)), "4.bias": np.zeros(2)}
        >>> params, state = from_torch(net, (5, 5, 1), sd)
        >>> params["Conv_0"]["kernel"].shape, params["Dense_0"]["kernel"].shape
        ((3, 3, 1, 4), (36, 2))
    """
    names = dict(names or {})
    leaves, params, state = _leaves(net, input_shape)
    where = _prefixes(leaves, list(state_dict), prefixes, names)
    unused = dict.fromkeys(state_dict)
    trees = {"params": params, "state": state}
    for leaf in leaves:
        prefix = where.get(leaf.path)
        for tensor in _tensors(leaf, prefix, names):
            expected = paths.subtree(trees[tensor.tree], tensor.path)
            value = _take(state_dict, tensor, leaf.path, expected)
            unused.pop(tensor.key, None)
            trees[tensor.tree] = paths.with_subtree(trees[tensor.tree], tensor.path, value)
        if prefix is not None:
            for name in TORCH_IGNORED:
                unused.pop(f"{prefix}.{name}" if prefix else name, None)
    if unused:
        raise ValueError(f"porting: torch keys with no jcnn counterpart: {sorted(unused)}")
    return trees["params"], trees["state"]


def _take(state_dict: Mapping[str, Any], tensor: _Tensor, path: str, expected: Any) -> np.ndarray:
    """``state_dict[tensor.key]`` in jcnn's layout, checked against ``expected``'s shape."""
    key = tensor.key
    if key not in state_dict:
        raise ValueError(f"porting: torch key {key!r} (for jcnn {path}) is missing")
    try:
        value = tensor.from_torch(np.asarray(state_dict[key]))
    except ValueError as err:
        raise ValueError(f"porting: torch key {key!r} for jcnn {path}: {err}") from None
    if tuple(value.shape) != tuple(expected.shape):
        raise ValueError(
            f"porting: torch key {key!r} of shape {np.shape(state_dict[key])} gives "
            f"{tuple(value.shape)} for jcnn {path}, which needs {tuple(expected.shape)}"
        )
    return value.astype(expected.dtype, copy=False)


def to_torch(
    net: Layer,
    input_shape: Sequence[int],
    params: Any,
    state: Any,
    *,
    prefixes: Mapping[str, str] | None = None,
    names: Names | None = None,
) -> dict[str, np.ndarray]:
    """The exact inverse of :func:`from_torch`: a torch-layout ``state_dict`` of numpy arrays.

    Args:
        net, input_shape: as :func:`from_torch`.
        params, state: the network's trees.
        prefixes: jcnn leaf path -> torch module prefix; default: the jcnn path with ``/``
            replaced by ``.`` (``"features.Conv_0"``).
        names: as :func:`from_torch`.

    Returns:
        ``{f"{prefix}.weight": ..., ...}``; a leaf with BatchNorm statistics also gets
        ``num_batches_tracked`` (0), which torch's ``load_state_dict(strict=True)`` expects.
    """
    names = dict(names or {})
    out: dict[str, np.ndarray] = {}
    trees = {"params": params, "state": state}
    for leaf in torch_leaves(net, input_shape):
        prefix = None
        if _needs_prefix(leaf, names):
            prefix = leaf.path.replace("/", ".") if prefixes is None else prefixes[leaf.path]
        for tensor in _tensors(leaf, prefix, names):
            value = np.asarray(paths.subtree(trees[tensor.tree], tensor.path))
            # C order: a transposed view would be written scrambled by writers that copy raw
            # memory (safetensors.numpy.save_file does, silently).
            out[tensor.key] = np.asarray(tensor.to_torch(value), order="C")
        if leaf.state and prefix is not None:
            out[f"{prefix}.num_batches_tracked" if prefix else "num_batches_tracked"] = np.zeros(
                (), np.int64
            )
    return out
