"""Layer surgery for transfer learning: keep a trained network's body, put a new head on it.

:func:`replace_head` swaps the head of a serial network and keeps the body's child keys, so its
trained params plug in unchanged; :func:`inference_mode` (:mod:`jcnn.layers.wrappers`) runs a
part with ``train=False``. Every layer is found by its path (:meth:`jcnn.layers.Layer.at`) and
replaced there (:meth:`jcnn.layers.Layer.replace_at`), so each serial on the way keeps its name,
wrappers and kept keys. Building the train state with the body frozen is the train side's job:
:mod:`jcnn.transfer`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from jcnn import layers as L
from jcnn.layers import paths
from jcnn.layers.core import Layer
from jcnn.layers.wrappers import InferenceMode, inference_mode

__all__ = ["InferenceMode", "inference_mode", "kept_paths", "replace_head", "split_body_head"]


class _Level(NamedTuple):
    """One serial the cut goes through: its path (``""``: the top), the layer, and the index of
    the child the cut is at (the head's key at this level)."""

    path: str
    layer: Layer
    cut: int


def _top(net: Layer | Sequence[Layer]) -> Layer:
    top = net if isinstance(net, Layer) else L.serial(*net)
    if not top.children:
        raise ValueError(f"replace_head: {top!r} has no children; pass a serial network")
    return top


def _levels(top: Layer, head: str | None) -> list[_Level]:
    """The serials the cut at ``head`` (a path of child keys) goes through, outermost first,
    each found by its path (:meth:`Layer.at`)."""
    keys = paths.split(head) if head is not None else (top.children[-1][0],)
    levels = []
    for depth, key in enumerate(keys):
        where = paths.join(*keys[:depth])
        layer = top.at(where)
        if depth and layer.combine != "serial":
            raise ValueError(
                f"replace_head: child {where!r} is not a serial network "
                f"(combine={layer.combine!r}); cannot cut inside it at {key!r}"
            )
        child_keys = [k for k, _ in layer.children]
        if key not in child_keys:
            of = f" of {where!r}" if depth else ""
            raise ValueError(
                f"replace_head: no child keyed {head!r}; children{of} are {child_keys}"
            )
        cut = child_keys.index(key)
        if cut == 0 and depth == 0:
            raise ValueError("replace_head: the head is the first child; nothing would be kept")
        levels.append(_Level(where, layer, cut))
    return levels


def _cut(
    top: Layer,
    levels: list[_Level],
    keep: Callable[[Layer], Layer],
    tail: tuple[str, Layer] | None,
) -> Layer:
    """``top`` with the children from the cut on dropped at every level (:meth:`Layer.replace_at`
    on each level's path), ``keep`` applied to the kept ones, and ``tail`` (a keyed child) after
    them at the deepest level. Every serial keeps its name, wrappers and the kept keys."""
    for depth, level in enumerate(levels):
        layer = top.at(level.path)
        children = [(k, keep(c)) for k, c in layer.children[: level.cut]]
        if depth + 1 < len(levels):  # the cut goes on inside this child
            children.append(layer.children[level.cut])
        elif tail is not None:
            children.append(tail)
        top = top.replace_at(level.path, layer.replace(children=tuple(children)))
    return top


def kept_paths(net: Layer | Sequence[Layer], head: str | None = None) -> list[tuple[str, Layer]]:
    """The kept children at every level of the cut at ``head``, as ``(path, layer)``: the
    addresses of the params a transfer keeps (and freezes).

    Example:
        >>> [p for p, _ in kept_paths(models.vgg11(), "classifier/6")]
        ['features', 'avgpool', 'flatten', 'classifier/0', 'classifier/1', 'classifier/2', \
'classifier/3', 'classifier/4', 'classifier/5']
    """
    levels = _levels(_top(net), head)
    return [
        (paths.join(level.path, key), child)
        for level in levels
        for key, child in level.layer.children[: level.cut]
    ]


def split_body_head(
    net: Layer | Sequence[Layer], head: str | None = None
) -> tuple[list[tuple[str, Layer]], list[tuple[str, Layer]]]:
    """The children of a serial network before and from the child keyed ``head`` (default: last).

    ``head`` may be a ``/``-joined path into nested serial children (``"classifier/6"``):
    then the body's last child is that serial cut short (same key, name and wrappers, only its
    children before the cut), and ``old_head`` lists the dropped children at every level by path.

    Returns:
        ``(body, old_head)`` as lists of ``(key, layer)`` (``(path, layer)`` in ``old_head``).

    Raises:
        ValueError: a path segment is not a child key, a segment that the path goes into is
            not a serial network, or ``head`` is the first top-level child (nothing to keep).
    """
    top = _top(net)
    levels = _levels(top, head)
    dropped = []
    for depth, level in enumerate(levels):
        start = level.cut + 1 if depth + 1 < len(levels) else level.cut
        dropped += [(paths.join(level.path, k), c) for k, c in level.layer.children[start:]]
    body = _cut(top, levels, lambda child: child, None)
    return list(body.children), dropped


def replace_head(
    net: Layer | Sequence[Layer],
    new_head: Layer,
    *,
    head: str | None = None,
    head_name: str = "head",
    body_inference: bool = False,
) -> Layer:
    """A serial network with the children from ``head`` on replaced by ``new_head``.

    The kept children keep their keys (so trained params plug in unchanged); the new head is
    keyed ``head_name``. With ``body_inference`` every kept child runs in
    :func:`inference_mode`.

    ``head`` may be a ``/``-joined path into nested serial children, torchvision's
    ``model.classifier[6] = nn.Linear(4096, 10)``: ``head="classifier/6"`` keeps the
    children before ``classifier``, and ``classifier`` becomes the same serial (key, name and
    wrappers) with its children before ``6`` followed by the new head, so the kept params stay at
    their paths (``classifier/0/kernel``) and the new head's are at ``classifier/head``. The
    children after the cut are dropped at every level; ``body_inference`` wraps the kept
    children at every level (not the new head).

    Args:
        net: a ``serial`` network (its children are used), or a list of layers.
        new_head: the replacement, e.g. ``Dense(num_classes)`` or a small ``serial``.
        head: key of the first child to drop (default: the last child; ``"classifier"`` for VGG
            and AlexNet, ``"fc"`` for ResNets, ``"Dense_0"`` for the course CNN), or a
            ``/``-joined path into nested serial children (``"classifier/6"``).
        head_name: params key of the new head.
        body_inference: run the kept part with ``train=False`` (frozen BatchNorm statistics).

    Shapes:
        ``x -> new_head(body(x))``.

    Raises:
        ValueError: see :func:`split_body_head`; ``head_name`` is a kept key at the cut's level.

    Example:
        >>> net = replace_head(models.cnn(), L.Dense(3))
        >>> jcnn.output_shape(net, (28, 28, 1))
        (3,)
        >>> vgg = replace_head(models.vgg11(), L.Dense(10), head="classifier/6")
        >>> [k for k, _ in vgg.children], [k for k, _ in vgg.at("classifier").children]
        (['features', 'avgpool', 'flatten', 'classifier'], ['0', '1', '2', '3', '4', '5', 'head'])
        >>> jcnn.output_shape(vgg, (64, 64, 3))
        (10,)
    """
    top = _top(net)
    levels = _levels(top, head)
    last = levels[-1]
    if head_name in {k for k, _ in last.layer.children[: last.cut]}:
        raise ValueError(f"replace_head: head_name {head_name!r} is already a child key")
    keep = inference_mode if body_inference else (lambda child: child)
    return _cut(top, levels, keep, (head_name, new_head.named(head_name)))
