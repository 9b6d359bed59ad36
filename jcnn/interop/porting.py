"""Helpers to convert PyTorch weights and tensors to jcnn layouts.

Nothing here imports torch: every function accepts a numpy array or anything
``np.asarray`` understands (for a torch tensor pass ``t.detach().cpu().numpy()``)
and returns a numpy array.

Layout summary (``*k`` = spatial kernel dims, ``*s`` = spatial dims):

=====================  ==========================  ==========================
What                   PyTorch                     jcnn
=====================  ==========================  ==========================
activations            ``(N, C, *s)``              ``(N, *s, C)``
Conv kernel            ``(out, in/groups, *k)``    ``(*k, in/groups, out)``
ConvTranspose kernel   ``(in, out, *k)``           ``(*k, in, out)``
Linear/Dense kernel    ``(out, in)``               ``(in, out)``
=====================  ==========================  ==========================

No kernel is spatially flipped: jcnn's ``Conv`` is a cross-correlation like
``torch.nn.Conv*d`` and jcnn's ``ConvTranspose`` flips internally, like
``torch.nn.ConvTranspose*d``, so it is the adjoint (gradient) of ``Conv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "TorchLeaf",
    "batchnorm_from_torch",
    "dense_kernel_after_flatten_to_torch",
    "from_torch",
    "load_safetensors",
    "save_safetensors",
    "to_torch",
    "torch_leaves",
    "conv_kernel_from_torch",
    "conv_kernel_to_torch",
    "conv_transpose_kernel_from_torch",
    "conv_transpose_kernel_to_torch",
    "dense_kernel_after_flatten_from_torch",
    "dense_kernel_from_torch",
    "nchw_to_nhwc",
    "nhwc_to_nchw",
]


def _check_ndim(a: np.ndarray, min_ndim: int, name: str) -> None:
    if a.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dims, got shape {a.shape}")


def conv_kernel_from_torch(w: Any) -> np.ndarray:
    """Converts a ``torch.nn.Conv{1,2,3}d`` weight to a jcnn ``Conv`` kernel.

    Args:
        w: Torch weight of shape ``(out, in // groups, *k)`` with ``len(k)`` in
            ``{1, 2, 3}`` (any spatial rank >= 1 works).

    Returns:
        Array of shape ``(*k, in // groups, out)`` (no spatial flip).

    Raises:
        ValueError: If ``w`` has fewer than 3 dims.
    """
    w = np.asarray(w)
    _check_ndim(w, 3, "conv_kernel_from_torch")
    nk = w.ndim - 2
    return np.transpose(w, (*range(2, 2 + nk), 1, 0))


def conv_kernel_to_torch(k: Any) -> np.ndarray:
    """Inverse of :func:`conv_kernel_from_torch`.

    Args:
        k: jcnn kernel of shape ``(*k, in // groups, out)``.

    Returns:
        Array of shape ``(out, in // groups, *k)``.
    """
    k = np.asarray(k)
    _check_ndim(k, 3, "conv_kernel_to_torch")
    nk = k.ndim - 2
    return np.transpose(k, (nk + 1, nk, *range(nk)))


def conv_transpose_kernel_from_torch(w: Any) -> np.ndarray:
    """Converts a ``torch.nn.ConvTranspose{1,2,3}d`` weight to a jcnn kernel.

    The kernel is not flipped: jcnn's ``ConvTranspose`` flips it internally,
    exactly as torch does, so outputs match torch.

    Args:
        w: Torch weight of shape ``(in, out, *k)`` (``groups=1``).

    Returns:
        Array of shape ``(*k, in, out)``.

    Raises:
        ValueError: If ``w`` has fewer than 3 dims.
    """
    w = np.asarray(w)
    _check_ndim(w, 3, "conv_transpose_kernel_from_torch")
    nk = w.ndim - 2
    return np.transpose(w, (*range(2, 2 + nk), 0, 1))


def conv_transpose_kernel_to_torch(k: Any) -> np.ndarray:
    """Inverse of :func:`conv_transpose_kernel_from_torch`.

    Args:
        k: jcnn kernel of shape ``(*k, in, out)``.

    Returns:
        Array of shape ``(in, out, *k)``.
    """
    k = np.asarray(k)
    _check_ndim(k, 3, "conv_transpose_kernel_to_torch")
    nk = k.ndim - 2
    return np.transpose(k, (nk, nk + 1, *range(nk)))


def dense_kernel_from_torch(w: Any) -> np.ndarray:
    """Converts a ``torch.nn.Linear`` weight to a jcnn ``Dense`` kernel.

    Args:
        w: Torch weight of shape ``(out, in)``.

    Returns:
        Array of shape ``(in, out)``.

    Raises:
        ValueError: If ``w`` is not 2-D.
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"dense_kernel_from_torch: expected 2 dims, got shape {w.shape}")
    return w.T


def batchnorm_from_torch(
    weight: Any, bias: Any, running_mean: Any, running_var: Any
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Converts ``torch.nn.BatchNorm*d`` tensors to jcnn ``BatchNorm`` params/state.

    Note the momentum conventions differ: torch ``momentum=m`` corresponds to
    jcnn ``momentum=1 - m``, and torch's running variance is unbiased
    (use ``BatchNorm(unbiased_running_var=True)`` to reproduce it).

    Args:
        weight: Torch ``weight`` (gamma), shape ``(C,)``.
        bias: Torch ``bias`` (beta), shape ``(C,)``.
        running_mean: Torch ``running_mean``, shape ``(C,)``.
        running_var: Torch ``running_var``, shape ``(C,)``.

    Returns:
        ``(params, state)`` with ``params = {"scale": (C,), "offset": (C,)}`` and
        ``state = {"mean": (C,), "var": (C,)}``.

    Raises:
        ValueError: If the four arrays are not 1-D of the same length.
    """
    arrs = [np.asarray(a) for a in (weight, bias, running_mean, running_var)]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1 or arrs[0].ndim != 1:
        raise ValueError(
            "batchnorm_from_torch: expected four 1-D arrays of equal length, got "
            f"{[a.shape for a in arrs]}"
        )
    scale, offset, mean, var = arrs
    return {"scale": scale, "offset": offset}, {"mean": mean, "var": var}


def nchw_to_nhwc(x: Any) -> np.ndarray:
    """Moves the channel axis from position 1 to last, for any spatial rank.

    Args:
        x: Array of shape ``(N, C, *s)`` with ``len(s) >= 0``.

    Returns:
        Array of shape ``(N, *s, C)``.

    Raises:
        ValueError: If ``x`` has fewer than 2 dims.
    """
    x = np.asarray(x)
    _check_ndim(x, 2, "nchw_to_nhwc")
    return np.moveaxis(x, 1, -1)


def nhwc_to_nchw(x: Any) -> np.ndarray:
    """Moves the channel axis from last to position 1, for any spatial rank.

    Args:
        x: Array of shape ``(N, *s, C)`` with ``len(s) >= 0``.

    Returns:
        Array of shape ``(N, C, *s)``.

    Raises:
        ValueError: If ``x`` has fewer than 2 dims.
    """
    x = np.asarray(x)
    _check_ndim(x, 2, "nhwc_to_nchw")
    return np.moveaxis(x, -1, 1)


def dense_kernel_after_flatten_from_torch(w: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    """Converts a ``torch.nn.Linear`` weight that follows a ``Flatten`` of NC* data.

    Torch flattens one example in ``(C, *s)`` order; jcnn (channels-last) flattens
    in ``(*s, C)`` order. This permutes the weight's input columns accordingly.

    Args:
        w: Torch weight of shape ``(out, C * prod(s))``.
        input_shape: Torch shape of ONE example before the flatten, ``(C, *s)``.

    Returns:
        Array of shape ``(prod(s) * C, out)`` for a jcnn ``Dense`` applied to
        ``x.reshape(-1)`` where ``x`` has shape ``(*s, C)``.

    Raises:
        ValueError: If ``w`` is not 2-D or its input size does not match ``input_shape``.
    """
    w = np.asarray(w)
    size = int(np.prod(input_shape))
    if w.ndim != 2 or w.shape[1] != size:
        raise ValueError(
            f"dense_kernel_after_flatten_from_torch: weight shape {w.shape} does not match "
            f"input_shape {tuple(input_shape)} (expected (out, {size}))"
        )
    out = w.shape[0]
    w = w.reshape(out, *input_shape)  # (out, C, *s)
    w = np.moveaxis(w, 1, -1)  # (out, *s, C)
    return w.reshape(out, size).T


def dense_kernel_after_flatten_to_torch(k: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`dense_kernel_after_flatten_from_torch`.

    Args:
        k: jcnn kernel of shape ``(prod(s) * C, out)``.
        input_shape: Torch shape of ONE example before the flatten, ``(C, *s)``.

    Returns:
        Array of shape ``(out, C * prod(s))``.
    """
    k = np.asarray(k)
    size = int(np.prod(input_shape))
    if k.ndim != 2 or k.shape[0] != size:
        raise ValueError(
            f"dense_kernel_after_flatten_to_torch: kernel shape {k.shape} does not match "
            f"input_shape {tuple(input_shape)} (expected ({size}, out))"
        )
    c, spatial = input_shape[0], tuple(input_shape[1:])
    w = k.T.reshape(k.shape[1], *spatial, c)  # (out, *s, C)
    return np.moveaxis(w, -1, 1).reshape(k.shape[1], size)


# ---------------------------------------------------------------------------------------------
# Whole networks: read the layers' facts, map every tensor exactly once
# ---------------------------------------------------------------------------------------------

#: jcnn params / state leaf names -> the ``torch.nn`` tensor names (jcnn's naming convention).
TORCH_PARAM_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "offset": "bias"}
TORCH_STATE_NAMES = {"mean": "running_mean", "var": "running_var"}
#: Torch buffers with no jcnn counterpart (BatchNorm's step counter): read and dropped.
TORCH_IGNORED = ("num_batches_tracked",)
#: Leaf kinds whose params torch names differently: ConvNeXt's ``CNBlock.layer_scale`` is a
#: ``(C, 1, 1)`` parameter of the block module itself, so its key is ``f"{prefix}.layer_scale"``.
TORCH_KIND_PARAM_NAMES = {"LayerScale": {"scale": "layer_scale"}}


class TorchLeaf(NamedTuple):
    """A leaf of a jcnn network that holds params or state, as the porting walk sees it.

    Attributes:
        path: its params path, ``"features/Conv_0"``.
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


def torch_leaves(net: Any, input_shape: Sequence[int]) -> list[TorchLeaf]:
    """The leaves of ``net`` holding params or state, in the order torch registers modules.

    The walk reads each layer's facts: children and ``combine`` for the order and the child
    input shapes, ``window`` and ``pointwise`` to recognise convolutions and to see through
    activations between a ``Flatten`` and a ``Dense``; one ``jax.eval_shape`` of the init gives
    the trees.

    Raises:
        ValueError: a ``repeat`` (stacked params have no torch layout) or a leaf with leaves
            other than jcnn's ``kernel``/``bias``/``scale``/``offset``/``mean``/``var``.
    """
    from jcnn.layers.core import init_shapes

    _, params, state = init_shapes(net, tuple(input_shape))
    out: list[TorchLeaf] = []
    flat: list[tuple[int, ...] | None] = [None]

    def walk(layer, shape, path, p, s):
        if layer.combine == "repeat":
            raise ValueError(f"porting: {path or layer.name} is a repeat (stacked params)")
        if layer.children:
            ins = layer.child_input_shapes(shape)
            for (key, child), child_in in zip(layer.children, ins):
                walk(child, child_in, f"{path}/{key}" if path else key, p[key], s[key])
            return
        if p or s:
            names = {**TORCH_PARAM_NAMES, **TORCH_KIND_PARAM_NAMES.get(layer.kind, {})}
            unknown = (set(p) - set(names)) | (set(s) - set(TORCH_STATE_NAMES))
            if unknown:
                raise ValueError(f"porting: {path} has leaves {sorted(unknown)} with no torch name")
            out.append(TorchLeaf(path, layer, shape, flat[0], p, s))
        if _flattens(layer, shape):
            flat[0] = tuple(shape)
        elif not (layer.pointwise and not p):
            flat[0] = None

    walk(net, tuple(input_shape), "", params, state)
    return out


def _flattens(layer: Any, shape: tuple[int, ...]) -> bool:
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


def _param_converters(leaf: TorchLeaf) -> dict[str, tuple[str, Any, Any]]:
    """jcnn param name -> (torch name, from_torch, to_torch) for this leaf, by its facts."""
    from_kernel, to_kernel = _kernel_converters(leaf)
    names = {**TORCH_PARAM_NAMES, **TORCH_KIND_PARAM_NAMES.get(leaf.layer.kind, {})}
    out = {}
    for k in leaf.params:
        if k == "kernel":
            out[k] = (names[k], from_kernel, to_kernel)
        elif leaf.layer.kind == "LayerScale":
            spatial = (1,) * (len(leaf.input_shape) - 1)
            out[k] = (
                names[k],
                lambda w: np.asarray(w).reshape(-1),
                lambda v, spatial=spatial: np.asarray(v).reshape(-1, *spatial),
            )
        else:
            out[k] = (names[k], np.asarray, np.asarray)
    return out


def _prefixes(
    leaves: list[TorchLeaf], names: Sequence[str], prefixes: Mapping[str, str] | None
) -> dict[str, str]:
    """jcnn path -> torch module prefix: given, or the i-th leaf <-> the i-th torch module."""
    if prefixes is not None:
        missing = [leaf.path for leaf in leaves if leaf.path not in prefixes]
        if missing:
            raise ValueError(f"porting: no torch prefix given for jcnn paths {missing}")
        return {leaf.path: prefixes[leaf.path] for leaf in leaves}
    modules = list(dict.fromkeys(name.rpartition(".")[0] for name in names))
    if len(modules) != len(leaves):
        raise ValueError(
            f"porting: the state dict has {len(modules)} modules with tensors ({modules[:6]}...) "
            f"but the jcnn net has {len(leaves)} layers with params or state "
            f"({[leaf.path for leaf in leaves][:6]}...); pass prefixes= to map them by name"
        )
    return {leaf.path: module for leaf, module in zip(leaves, modules)}


def from_torch(
    net: Any,
    input_shape: Sequence[int],
    state_dict: Mapping[str, Any],
    *,
    prefixes: Mapping[str, str] | None = None,
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
    leaves = torch_leaves(net, input_shape)
    where = _prefixes(leaves, list(state_dict), prefixes)
    unused = dict.fromkeys(state_dict)
    params: dict = {}
    state: dict = {}

    def take(leaf, prefix, name, expected, convert):
        key = f"{prefix}.{name}" if prefix else name
        if key not in state_dict:
            raise ValueError(f"porting: torch key {key!r} (for jcnn {leaf.path}) is missing")
        unused.pop(key, None)
        try:
            value = convert(np.asarray(state_dict[key]))
        except ValueError as err:
            raise ValueError(f"porting: torch key {key!r} for jcnn {leaf.path}: {err}") from None
        if tuple(value.shape) != tuple(expected.shape):
            raise ValueError(
                f"porting: torch key {key!r} of shape {np.shape(state_dict[key])} gives "
                f"{tuple(value.shape)} for jcnn {leaf.path}, which needs {tuple(expected.shape)}"
            )
        return value.astype(expected.dtype, copy=False)

    for leaf in leaves:
        prefix = where[leaf.path]
        convert = _param_converters(leaf)
        p = {k: take(leaf, prefix, convert[k][0], v, convert[k][1]) for k, v in leaf.params.items()}
        s = {
            k: take(leaf, prefix, TORCH_STATE_NAMES[k], v, np.asarray)
            for k, v in leaf.state.items()
        }
        for name in TORCH_IGNORED:
            unused.pop(f"{prefix}.{name}" if prefix else name, None)
        _nest(params, leaf.path, p)
        _nest(state, leaf.path, s)
    if unused:
        raise ValueError(f"porting: torch keys with no jcnn counterpart: {sorted(unused)}")
    return _fill(net, input_shape, params, state)


def to_torch(
    net: Any,
    input_shape: Sequence[int],
    params: Any,
    state: Any,
    *,
    prefixes: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """The exact inverse of :func:`from_torch`: a torch-layout ``state_dict`` of numpy arrays.

    Args:
        net, input_shape: as :func:`from_torch`.
        params, state: the network's trees.
        prefixes: jcnn leaf path -> torch module prefix; default: the jcnn path with ``/``
            replaced by ``.`` (``"features.Conv_0"``).

    Returns:
        ``{f"{prefix}.weight": ..., ...}``; a leaf with BatchNorm statistics also gets
        ``num_batches_tracked`` (0), which torch's ``load_state_dict(strict=True)`` expects.
    """
    out: dict[str, np.ndarray] = {}
    for leaf in torch_leaves(net, input_shape):
        prefix = leaf.path.replace("/", ".") if prefixes is None else prefixes[leaf.path]
        convert = _param_converters(leaf)
        p, s = _get(params, leaf.path), _get(state, leaf.path)
        for k in leaf.params:
            torch_name, _, to_torch_fn = convert[k]
            # C order: a transposed view would be written scrambled by writers that copy raw
            # memory (safetensors.numpy.save_file does, silently).
            out[f"{prefix}.{torch_name}"] = np.asarray(to_torch_fn(np.asarray(p[k])), order="C")
        for k in leaf.state:
            out[f"{prefix}.{TORCH_STATE_NAMES[k]}"] = np.asarray(s[k], order="C")
        if leaf.state:
            out[f"{prefix}.num_batches_tracked"] = np.zeros((), np.int64)
    return out


def _nest(tree: dict, path: str, value: dict) -> None:
    *parents, last = path.split("/")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[last] = value


def _get(tree: Any, path: str) -> Any:
    for key in path.split("/"):
        tree = tree[key]
    return tree


def _fill(net: Any, input_shape: Sequence[int], params: dict, state: dict) -> tuple[dict, dict]:
    """The full params/state trees of ``net``: empty dicts where layers hold nothing."""
    from jcnn.layers.core import init_shapes

    _, p_shapes, s_shapes = init_shapes(net, tuple(input_shape))

    def fill(template, got):
        if not isinstance(template, dict):
            return got
        return {k: fill(v, got.get(k, {})) for k, v in template.items()}

    return fill(p_shapes, params), fill(s_shapes, state)


# ------------------------------------------------------------------ safetensors

#: ``save_safetensors`` marks its files so ``load_safetensors`` can tell them from a torch file.
SAFETENSORS_FORMAT = "jcnn"


def _flatten_tree(tree: Any, top: str) -> dict[str, Any]:
    """``{"params/layer1/Conv_0/kernel": leaf, ...}``: "/"-joined dict keys; empty dicts vanish."""
    out: dict[str, Any] = {}

    def walk(node, path):
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not isinstance(key, str) or "/" in key:
                    raise ValueError(
                        f"save_safetensors: key {key!r} under {path!r} must be a str without '/'"
                    )
                walk(value, f"{path}/{key}")
        else:
            out[path] = node

    walk(tree, top)
    return out


def save_safetensors(path: Any, params: Any, state: Any) -> None:
    """Writes jcnn ``params`` and ``state`` to a safetensors file, atomically.

    Keys are the trees' paths joined by ``/`` under ``params/`` and ``state/``
    (``"params/layer1/serial_0/residual_0/block/serial_0/Conv_0/kernel"``), in jcnn's layouts;
    the file's metadata says ``format: jcnn``. Nothing in a safetensors file executes on load.
    For a torchvision-layout file use :func:`jcnn.models.to_torchvision` and
    ``safetensors.numpy.save_file``.

    Raises:
        ValueError: a leaf that is not an array (a Python number, None) or a key with ``/``.
    """
    import os
    import pathlib
    import tempfile

    from safetensors.numpy import save_file

    flat = {**_flatten_tree(params, "params"), **_flatten_tree(state, "state")}
    arrays = {}
    for key, value in flat.items():
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise ValueError(
                f"save_safetensors: {key} is a {type(value).__name__}, not an array; params and "
                "state hold arrays only"
            )
        arrays[key] = np.asarray(value, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    target = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata={"format": SAFETENSORS_FORMAT})
        os.replace(tmp, target)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def load_safetensors(path: Any, net: Any, input_shape: Sequence[int]) -> tuple[dict, dict]:
    """Reads :func:`save_safetensors`'s file for ``net``: ``(params, state)`` as jax arrays.

    Every key, shape and dtype is checked against ``net``'s init tree at ``input_shape`` (one
    ``jax.eval_shape``, no weights initialised) before anything is returned.

    Raises:
        ValueError: a file in torchvision's layout (use
            ``jcnn.models.from_torchvision(name, safetensors.numpy.load_file(path))``), or
            keys missing, left over, or of the wrong shape or dtype, each named with its path.
    """
    import jax
    from safetensors import safe_open

    from jcnn.layers.core import init_shapes

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata() or {}
        keys = list(f.keys())
        if meta.get("format") != SAFETENSORS_FORMAT and not all(
            k.startswith(("params/", "state/")) for k in keys
        ):
            raise ValueError(
                f"load_safetensors: {path} is not a jcnn file (metadata {meta}, keys like "
                f"{keys[:3]}); a torchvision-layout file loads with "
                "jcnn.models.from_torchvision(name, safetensors.numpy.load_file(path))"
            )
        _, p_shapes, s_shapes = init_shapes(net, tuple(input_shape))
        expected = {**_flatten_tree(p_shapes, "params"), **_flatten_tree(s_shapes, "state")}
        missing = [k for k in expected if k not in keys]
        extra = [k for k in keys if k not in expected]
        if missing or extra:
            raise ValueError(
                f"load_safetensors: {path} does not fit this net at input {tuple(input_shape)}: "
                f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}, "
                f"left over {extra[:6]}{' ...' if len(extra) > 6 else ''}"
            )
        flat = {}
        for key, want in expected.items():
            value = f.get_tensor(key)
            if value.shape != tuple(want.shape) or value.dtype != want.dtype:
                raise ValueError(
                    f"load_safetensors: {key} is {value.dtype}{list(value.shape)} in {path}, "
                    f"but the net needs {want.dtype}{list(want.shape)}"
                )
            flat[key] = jax.numpy.asarray(value)

    def rebuild(template, top):
        if isinstance(template, Mapping):
            return {k: rebuild(v, f"{top}/{k}") for k, v in template.items()}
        return flat[top]

    return rebuild(p_shapes, "params"), rebuild(s_shapes, "state")
