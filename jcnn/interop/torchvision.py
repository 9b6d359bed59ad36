"""Whole torchvision models in and out of jcnn: ``from_torchvision`` and ``to_torchvision``.

``from_torchvision(name, state_dict)`` builds the jcnn model that matches torchvision's builder
``name`` (with PyTorch's BatchNorm conventions, :func:`jcnn.models.common.torch_batch_norm`) and
moves every tensor of ``state_dict`` into jcnn's params and state. The zoo names its children
as torchvision's module tree does, so the mapping is one rule (:func:`torch_key`)::

    torch key = the jcnn layer's path with "/" as "." + "." + the torch name of its leaf
    "layer1.0.conv1.weight"  <->  params["layer1"]["0"]["conv1"]["kernel"]

with the leaf names of :data:`LEAF_NAMES` (``kernel``/``bias``/``scale``/``offset`` ->
``weight``/``bias``/``weight``/``bias``, state ``mean``/``var`` -> ``running_mean``/
``running_var``), and the few places torchvision departs from it listed in :data:`EXCEPTIONS`
and :data:`TORCH_ONLY`. The layout conversions themselves are :func:`jcnn.porting.from_torch`'s,
read from each layer's facts.

jcnn never imports torch: a state dict is ``str -> array-like`` (numpy arrays, the arrays of a
``safetensors.numpy.load_file``, or CPU torch tensors, converted with ``np.asarray``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from jcnn.interop import porting
from jcnn.layers.core import Layer

__all__ = [
    "EXCEPTIONS",
    "LEAF_NAMES",
    "SUPPORTED",
    "TORCH_ONLY",
    "from_torchvision",
    "to_torchvision",
    "torch_key",
]

#: The input shape the key maps are computed at. Parameter shapes of every supported model do not
#: depend on the input size (adaptive or global pooling before the classifier).
PROBE_SHAPE = (224, 224, 3)

#: jcnn leaf name -> torch tensor name: params (Conv/Dense ``kernel``, BatchNorm/LayerNorm
#: ``scale`` and ``offset``) and BatchNorm's state (its running statistics).
LEAF_NAMES = {
    "kernel": "weight",
    "bias": "bias",
    "scale": "weight",
    "offset": "bias",
    "mean": "running_mean",
    "var": "running_var",
}

#: Where torchvision's keys depart from the rule, by the jcnn child's key (its torchvision
#: name): jcnn leaf name -> (torch name in the layer's PARENT module, torch's shape as
#: ``np.reshape`` takes it). ConvNeXt's ``CNBlock`` stores its layer scale as a ``(C, 1, 1)``
#: parameter of the block itself: jcnn ``features/1/0/layer_scale`` + ``scale`` (shape ``(C,)``)
#: is torchvision's ``features.1.0.layer_scale``.
EXCEPTIONS: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {
    "layer_scale": {"scale": ("layer_scale", (-1, 1, 1))},
}

#: Torch buffers with no jcnn leaf: BatchNorm's step counter, written as 0 by
#: :func:`to_torchvision` and optional in :func:`from_torchvision` (as for torch itself).
TORCH_ONLY = ("num_batches_tracked",)


def _exception(path: str, leaf: str) -> tuple[str, tuple[int, ...]] | None:
    """The :data:`EXCEPTIONS` entry of leaf ``leaf`` of the layer at ``path``, if any."""
    return EXCEPTIONS.get(path.rpartition("/")[2], {}).get(leaf)


def torch_key(path: str, leaf: str) -> str:
    """The torchvision state-dict key of the jcnn leaf ``leaf`` of the layer at ``path``: the
    rule of this module, with :data:`EXCEPTIONS`.

    Example:
        >>> torch_key("layer1/0/conv1", "kernel"), torch_key("layer1/0/bn1", "mean")
        ('layer1.0.conv1.weight', 'layer1.0.bn1.running_mean')
        >>> torch_key("features/1/0/layer_scale", "scale")
        'features.1.0.layer_scale'
    """
    exception = _exception(path, leaf)
    if exception is not None:
        parent = path.rpartition("/")[0]
        return f"{parent.replace('/', '.')}.{exception[0]}"
    return f"{path.replace('/', '.')}.{LEAF_NAMES[leaf]}"


#: The module of each torchvision builder name jcnn has (imported on first use).
_MODULES: dict[str, tuple[str, ...]] = {
    "jcnn.models.alexnet": ("alexnet",),
    "jcnn.models.vgg": tuple(f"vgg{d}{s}" for d in (11, 13, 16, 19) for s in ("", "_bn")),
    "jcnn.models.resnet": (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
        "wide_resnet50_2",
    ),
    "jcnn.models.googlenet": ("googlenet",),
    "jcnn.models.mobilenet": ("mobilenet_v2",),
    "jcnn.models.mobilenet_v3": ("mobilenet_v3_small", "mobilenet_v3_large"),
    "jcnn.models.efficientnet": tuple(f"efficientnet_b{i}" for i in range(5)),
    "jcnn.models.squeezenet": ("squeezenet1_1",),
    "jcnn.models.shufflenet": ("shufflenet_v2_x1_0",),
    "jcnn.models.mnasnet": ("mnasnet1_0",),
    "jcnn.models.regnet": ("regnet_y_400mf",),
    "jcnn.models.inception": ("inception_v3",),
    "jcnn.models.convnext": ("convnext_tiny",),
    "jcnn.models.densenet": ("densenet121", "densenet161", "densenet169", "densenet201"),
}  # fmt: skip

#: The torchvision builder names ``from_torchvision`` and ``to_torchvision`` accept.
SUPPORTED: tuple[str, ...] = tuple(sorted(n for names in _MODULES.values() for n in names))


@functools.cache
def _builders() -> dict[str, Callable[..., Layer]]:
    import importlib

    return {
        name: getattr(importlib.import_module(module), name)
        for module, names in _MODULES.items()
        for name in names
    }


def _builder(name: str) -> Callable[..., Layer]:
    if name not in SUPPORTED:
        raise ValueError(
            f"from_torchvision: unknown model {name!r}; supported torchvision names: "
            f"{', '.join(SUPPORTED)}"
        )
    return _builders()[name]


class _Ported:
    """``net`` as :mod:`jcnn.porting` takes it: the torch module of each leaf with params or
    state (its path, by the rule) and the torch keys of the exceptions."""

    def __init__(self, net: Layer) -> None:
        self.net = net
        self.leaves = porting.torch_leaves(net, PROBE_SHAPE)
        self.prefixes = {leaf.path: leaf.path.replace("/", ".") for leaf in self.leaves}
        self.names = {}
        #: torch key -> the jcnn path of its layer
        self.path_of = {}
        for leaf in self.leaves:
            for name in (*leaf.params, *leaf.state):
                key = torch_key(leaf.path, name)
                self.path_of[key] = leaf.path
                exception = _exception(leaf.path, name)
                if exception is not None:
                    self.names[f"{leaf.path}/{name}"] = porting.TorchName(key, exception[1])
            for name in TORCH_ONLY:
                self.path_of[f"{self.prefixes[leaf.path]}.{name}"] = leaf.path

    @property
    def head(self) -> str:
        """The path of the last leaf with params (the classifier)."""
        return self.leaves[-1].path

    def expected_keys(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """torch key -> (jcnn path, torch shape) that ``to_torchvision`` writes."""
        from jcnn.layers.core import init_shapes

        _, params, state = init_shapes(self.net, PROBE_SHAPE)
        # Zero-stride views: the key list costs no memory even for VGG's 500 MB of weights.
        zeros = jax.tree_util.tree_map(
            lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), (params, state)
        )
        torch_sd = self.to_torch(*zeros)
        return {key: (self.path_of[key], tuple(v.shape)) for key, v in torch_sd.items()}

    def from_torch(self, state_dict: Mapping[str, Any]) -> tuple[Any, Any]:
        return porting.from_torch(
            self.net, PROBE_SHAPE, state_dict, prefixes=self.prefixes, names=self.names
        )

    def to_torch(self, params: Any, state: Any) -> dict[str, np.ndarray]:
        return porting.to_torch(
            self.net, PROBE_SHAPE, params, state, prefixes=self.prefixes, names=self.names
        )


def _ported(name: str, width: int | None) -> _Ported:
    """The ported net of ``name`` for a head of ``width`` classes (torchvision's default 1000)."""
    build = _builder(name)
    return _Ported(build() if width in (None, 1000) else build(num_classes=width))


def from_torchvision(
    name: str, state_dict: Mapping[str, Any]
) -> tuple[Layer, dict[str, Any], dict[str, Any]]:
    """The jcnn model, params and state of torchvision's ``name`` with ``state_dict``'s weights.

    The model follows PyTorch's conventions: BatchNorm eps 1e-5 (GoogLeNet 1e-3), momentum 0.1
    and unbiased running variance (:func:`jcnn.models.common.torch_batch_norm`); GoogLeNet
    without auxiliary heads and ``transform_input=False``. The head width is read from the
    state dict (a retrained 10-class ``fc`` gives a 10-class model). Inputs are channels-last:
    ``x_jcnn = x_torch.transpose(0, 2, 3, 1)``. Each key lands at its jcnn path by
    :func:`torch_key`'s rule.

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
        >>> sd["layer1.0.conv1.weight"].shape
        (64, 64, 3, 3)
        >>> net, params, state = from_torchvision("resnet18", sd)
        >>> params["layer1"]["0"]["conv1"]["kernel"].shape
        (3, 3, 64, 64)
    """
    _builder(name)
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"from_torchvision: state_dict must be a mapping str -> array, got "
            f"{type(state_dict).__name__}; pass model.state_dict() or safetensors.numpy.load_file"
        )
    ported = _ported(name, None)
    head = f"{ported.head.replace('/', '.')}.weight"
    if head in state_dict:
        ported = _ported(name, int(np.shape(state_dict[head])[0]))
    expected = ported.expected_keys()
    missing = [
        k for k in expected if k not in state_dict and k.rpartition(".")[2] not in TORCH_ONLY
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
        if any(k.lower().startswith("aux") for k in extra):
            hint = (
                f" (jcnn's {name} has no auxiliary heads: drop the aux1.*/aux2.* (GoogLeNet) or "
                "AuxLogits.* (Inception v3) keys)"
            )
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
    params, state = ported.from_torch(state_dict)
    return (
        ported.net,
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
        ``{torch key: numpy array}`` in torchvision's layout (keys by :func:`torch_key`).
    """
    ported = _ported(name, None)
    node = params
    for key in ported.head.split("/"):
        node = node[key]
    width = int(np.shape(node["kernel"])[-1])
    if width != 1000:
        ported = _ported(name, width)
    return ported.to_torch(params, state)
