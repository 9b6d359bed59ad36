"""Whole torchvision models in and out of jcnn: ``from_torchvision`` and ``to_torchvision``.

``from_torchvision(name, state_dict)`` builds the jcnn model that matches torchvision's builder
``name`` (with PyTorch's BatchNorm conventions, :func:`jcnn.models.common.torch_batch_norm`) and
moves every tensor of ``state_dict`` into jcnn's params and state. Each family says where its
jcnn layers sit in torchvision's module tree (a *prefix map*: jcnn leaf path -> torch module
prefix, ``"layer1/serial_0/residual_0/block/serial_0/Conv_0" -> "layer1.0.conv1"``); the layout
conversions themselves are :func:`jcnn.porting.from_torch`'s, read from each layer's facts.

jcnn never imports torch: a state dict is ``str -> array-like`` (numpy arrays, the arrays of a
``safetensors.numpy.load_file``, or CPU torch tensors, converted with ``np.asarray``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jcnn.interop import porting
from jcnn.layers.core import Layer

__all__ = ["SUPPORTED", "from_torchvision", "to_torchvision", "torchvision_prefixes"]

#: The input shape the key maps are computed at. Parameter shapes of every supported model do not
#: depend on the input size (adaptive or global pooling before the classifier).
PROBE_SHAPE = (224, 224, 3)

PrefixMap = Callable[[Layer, Sequence[str]], dict[str, str]]


class _Family(NamedTuple):
    builder: Callable[..., Layer]
    prefixes: PrefixMap


def _unknown(path: str, family: str) -> ValueError:
    return ValueError(
        f"from_torchvision: jcnn path {path!r} has no place in torchvision's {family}"
    )


def _resnet_prefixes(net: Layer, paths: Sequence[str]) -> dict[str, str]:
    """ResNet / ResNeXt / Wide ResNet: ``stem`` -> ``conv1``/``bn1``; block ``b`` of stage ``s``
    -> ``layer{s}.{b}``, its ``j``-th conv+BN -> ``conv{j+1}``/``bn{j+1}``, the projection
    shortcut -> ``downsample.0``/``.1``; ``fc``."""
    del net
    kinds = {"Conv_0": 0, "BatchNorm_0": 1}
    out = {}
    for path in paths:
        if path == "fc":
            out[path] = "fc"
            continue
        if path in ("stem/Conv_0", "stem/BatchNorm_0"):
            out[path] = "conv1" if path.endswith("Conv_0") else "bn1"
            continue
        m = re.fullmatch(
            r"(layer[1-4])/serial_(\d+)/residual_0/(block/serial_(\d+)|shortcut)/(\w+)", path
        )
        if m is None or m.group(5) not in kinds:
            raise _unknown(path, "ResNet")
        stage, block, part, j, leaf = m.groups()
        if part == "shortcut":
            out[path] = f"{stage}.{block}.downsample.{kinds[leaf]}"
        else:
            out[path] = f"{stage}.{block}.{('conv', 'bn')[kinds[leaf]]}{int(j) + 1}"
    return out


def _sequential_prefixes(net: Layer, paths: Sequence[str], family: str) -> dict[str, str]:
    """VGG / AlexNet: a leaf ``features/Conv_3`` sits at its position in jcnn's serial, which is
    its index in torch's ``nn.Sequential`` (``features.7``); likewise ``classifier``."""
    position = {
        f"{top}/{key}": f"{top}.{i}"
        for top, block in net.children
        if block.children
        for i, (key, _) in enumerate(block.children)
    }
    out = {}
    for path in paths:
        if path not in position:
            raise _unknown(path, family)
        out[path] = position[path]
    return out


def _googlenet_prefixes(net: Layer, paths: Sequence[str]) -> dict[str, str]:
    """GoogLeNet: ``conv1`` .. ``conv3`` and each Inception module's branches ``branch1`` ..
    ``branch4`` (a branch of two ``BasicConv2d`` is ``branchK.0``/``.1``; the pool branch's conv is
    ``branch4.1``), each ``BasicConv2d`` holding ``conv`` and ``bn``; ``fc``."""
    del net
    part = {"Conv_0": "conv", "BatchNorm_0": "bn"}
    out = {}
    for path in paths:
        if path == "fc":
            out[path] = "fc"
            continue
        m = re.fullmatch(r"(conv[123])/(\w+)", path)
        if m and m.group(2) in part:
            out[path] = f"{m.group(1)}.{part[m.group(2)]}"
            continue
        m = re.fullmatch(r"(inception\d[a-e])/serial_([0-3])(?:/serial_([01]))?/(\w+)", path)
        if m is None or m.group(4) not in part:
            raise _unknown(path, "GoogLeNet")
        module, branch, inner, leaf = m.groups()
        branch = int(branch)
        if branch == 0:
            at = "branch1"
        elif branch == 3:
            at = "branch4.1"
        else:
            at = f"branch{branch + 1}.{inner}"
        out[path] = f"{module}.{at}.{part[leaf]}"
    return out


@functools.cache
def _families() -> dict[str, _Family]:
    import importlib

    from jcnn.models.alexnet import alexnet
    from jcnn.models.googlenet import googlenet

    resnet = importlib.import_module("jcnn.models.resnet")
    vgg = importlib.import_module("jcnn.models.vgg")
    modern = {
        "mobilenet_v2": "jcnn.models.mobilenet",
        "efficientnet_b0": "jcnn.models.efficientnet",
        "convnext_tiny": "jcnn.models.convnext",
        "densenet121": "jcnn.models.densenet",
    }
    families = {}
    for name in ("resnet18", "resnet34", "resnet50", "resnext50_32x4d", "wide_resnet50_2"):
        families[name] = _Family(getattr(resnet, name), _resnet_prefixes)
    for depth in (11, 13, 16, 19):
        for suffix in ("", "_bn"):
            name = f"vgg{depth}{suffix}"
            families[name] = _Family(
                getattr(vgg, name), lambda net, paths: _sequential_prefixes(net, paths, "VGG")
            )
    families["alexnet"] = _Family(
        alexnet, lambda net, paths: _sequential_prefixes(net, paths, "AlexNet")
    )
    families["googlenet"] = _Family(googlenet, _googlenet_prefixes)
    for name, module_name in modern.items():
        module = importlib.import_module(module_name)
        families[name] = _Family(
            getattr(module, name), lambda net, paths, m=module: m.torchvision_prefixes(paths)
        )
    return families


#: The torchvision builder names ``from_torchvision`` and ``to_torchvision`` accept.
SUPPORTED: tuple[str, ...] = tuple(sorted(_families()))


def _family(name: str) -> _Family:
    families = _families()
    if name not in families:
        raise ValueError(
            f"from_torchvision: unknown model {name!r}; supported torchvision names: "
            f"{', '.join(sorted(families))}"
        )
    return families[name]


def torchvision_prefixes(name: str, net: Layer | None = None) -> dict[str, str]:
    """The prefix map of ``name``: jcnn leaf path -> torchvision module prefix.

    Example:
        >>> torchvision_prefixes("resnet18")["layer2/serial_0/residual_0/shortcut/Conv_0"]
        'layer2.0.downsample.0'
    """
    family = _family(name)
    net = family.builder() if net is None else net
    paths = [leaf.path for leaf in porting.torch_leaves(net, PROBE_SHAPE)]
    prefixes = family.prefixes(net, paths)
    torch_modules = list(prefixes.values())
    if len(set(torch_modules)) != len(torch_modules):  # a bug in a family's map, not user input
        raise AssertionError(f"{name}: two jcnn leaves map to one torch module")
    return prefixes


def _expected_keys(net: Layer, prefixes: Mapping[str, str]) -> dict[str, tuple[str, tuple]]:
    """torch key -> (jcnn path, torch shape) that ``to_torchvision`` writes for ``net``."""
    from jcnn.layers.core import init_shapes

    _, params, state = init_shapes(net, PROBE_SHAPE)
    # Zero-stride views: the key list costs no memory even for VGG's 500 MB of weights.
    zeros = jax.tree_util.tree_map(
        lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), (params, state)
    )
    torch_sd = porting.to_torch(net, PROBE_SHAPE, *zeros, prefixes=prefixes)
    path_of = {prefix: path for path, prefix in prefixes.items()}
    return {key: (path_of[key.rpartition(".")[0]], tuple(v.shape)) for key, v in torch_sd.items()}


def _num_classes(
    name: str, state_dict: Mapping[str, Any], family: _Family
) -> tuple[Layer, dict[str, str]]:
    """The net for ``state_dict``'s head width (torchvision's default 1000, or a retrained head)."""
    net = family.builder()
    prefixes = torchvision_prefixes(name, net)
    head = prefixes[porting.torch_leaves(net, PROBE_SHAPE)[-1].path] + ".weight"
    if head in state_dict:
        width = int(np.shape(state_dict[head])[0])
        if width != 1000:
            net = family.builder(num_classes=width)
            prefixes = torchvision_prefixes(name, net)
    return net, prefixes


def from_torchvision(
    name: str, state_dict: Mapping[str, Any]
) -> tuple[Layer, dict[str, Any], dict[str, Any]]:
    """The jcnn model, params and state of torchvision's ``name`` with ``state_dict``'s weights.

    The model follows PyTorch's conventions: BatchNorm eps 1e-5 (GoogLeNet 1e-3), momentum 0.1
    and unbiased running variance (:func:`jcnn.models.common.torch_batch_norm`); GoogLeNet
    without auxiliary heads and ``transform_input=False``. The head width is read from the
    state dict (a retrained 10-class ``fc`` gives a 10-class model). Inputs are channels-last:
    ``x_jcnn = x_torch.transpose(0, 2, 3, 1)``.

    Args:
        name: torchvision's builder name (one of :data:`SUPPORTED`), e.g. ``"resnet18"``.
        state_dict: ``str -> array-like`` in torchvision's layout, e.g.
            ``{k: v.numpy() for k, v in model.state_dict().items()}`` or
            ``safetensors.numpy.load_file(path)``.

    Returns:
        ``(net, params, state)``, params and state as jax arrays (float32 as stored).

    Raises:
        ValueError: an unknown name, or a key that is missing, left over or of the wrong shape
            (the message names each key and the jcnn path it maps to).

    Example:
        >>> _, params, state = models.resnet18().init(key, (64, 64, 3))
        >>> sd = to_torchvision("resnet18", params, state)
        >>> net, params, state = from_torchvision("resnet18", sd)
        >>> params["layer1"]["serial_0"]["residual_0"]["block"]["serial_0"]["Conv_0"]["kernel"].shape
        (3, 3, 64, 64)
    """
    family = _family(name)
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"from_torchvision: state_dict must be a mapping str -> array, got "
            f"{type(state_dict).__name__}; pass model.state_dict() or safetensors.numpy.load_file"
        )
    net, prefixes = _num_classes(name, state_dict, family)
    expected = _expected_keys(net, prefixes)
    # torch itself accepts a BatchNorm without its step counter (older checkpoints).
    missing = [
        k
        for k in expected
        if k not in state_dict and not k.endswith(f".{porting.TORCH_IGNORED[0]}")
    ]
    if missing:
        listed = "; ".join(
            f"{k!r} (for jcnn {expected[k][0]}, shape {expected[k][1]})" for k in missing[:8]
        )
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise ValueError(
            f"from_torchvision({name!r}): the state dict lacks {len(missing)} key(s): {listed}"
            f"{more}; is it a state dict of torchvision.models.{name}()?"
        )
    extra = [k for k in state_dict if k not in expected]
    if extra:
        hint = ""
        if any(k.startswith("aux") for k in extra):
            hint = " (jcnn's GoogLeNet has no auxiliary heads: drop the aux1.*/aux2.* keys)"
        raise ValueError(
            f"from_torchvision({name!r}): {len(extra)} key(s) with no place in the jcnn model: "
            f"{sorted(extra)[:8]}{hint}"
        )
    for key, (path, shape) in expected.items():
        if key not in state_dict:
            continue
        got = tuple(np.shape(state_dict[key]))
        if got != shape:
            raise ValueError(
                f"from_torchvision({name!r}): key {key!r} has shape {got}, but jcnn {path} needs "
                f"torch shape {shape}"
            )
    params, state = porting.from_torch(net, PROBE_SHAPE, state_dict, prefixes=prefixes)
    return (
        net,
        jax.tree_util.tree_map(jax.numpy.asarray, params),
        jax.tree_util.tree_map(jax.numpy.asarray, state),
    )


def to_torchvision(name: str, params: Any, state: Any) -> dict[str, np.ndarray]:
    """The exact inverse of :func:`from_torchvision`: a torchvision ``state_dict`` of numpy arrays.

    ``torchvision.models.<name>(num_classes=...).load_state_dict({k: torch.from_numpy(v) ...},
    strict=True)`` accepts it (``num_batches_tracked`` is written as 0).

    Args:
        name: torchvision's builder name (:data:`SUPPORTED`).
        params, state: the jcnn model's trees (from :func:`from_torchvision`, ``init`` of the
            matching builder, or training).

    Returns:
        ``{torch key: numpy array}`` in torchvision's layout.
    """
    family = _family(name)
    net = family.builder()
    prefixes = torchvision_prefixes(name, net)
    last = porting.torch_leaves(net, PROBE_SHAPE)[-1].path
    node = params
    for key in last.split("/"):
        node = node[key]
    width = int(np.shape(node["kernel"])[-1])
    if width != 1000:
        net = family.builder(num_classes=width)
        prefixes = torchvision_prefixes(name, net)
    return porting.to_torch(net, PROBE_SHAPE, params, state, prefixes=prefixes)
