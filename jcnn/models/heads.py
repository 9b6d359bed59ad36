"""Layer surgery for transfer learning: keep a trained network's body, put a new head on it.

:func:`replace_head` swaps the head of a serial network and keeps the body's child keys, so its
trained params plug in unchanged; :func:`inference_mode` runs a part with ``train=False``.
Building the train state with the body frozen is the train side's job: :mod:`jcnn.transfer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jcnn import layers as L
from jcnn.layers.core import Fns, Layer


@dataclass(frozen=True)
class InferenceMode:
    """The inference-mode wrapper (a :class:`jcnn.layers.core.Wrapper`): ``train=False``."""

    label: str = "inference_mode"

    def wrap(self, fns: Fns) -> Fns:
        inner = fns.apply

        def apply(params, state, x, *, key=None, train=False):
            del key, train
            return inner(params, state, x, train=False)

        return fns._replace(apply=apply)


def inference_mode(layer: Layer) -> Layer:
    """``layer`` that always runs with ``train=False``: BatchNorm uses (and keeps) its running
    statistics and Dropout is off, whatever the caller asks. Same params and state trees.

    Shapes:
        as ``layer``.
    """
    return layer.wrapped(InferenceMode())


def _children(net: Layer | Sequence[Layer]) -> tuple[list[tuple[str, Layer]], str]:
    if isinstance(net, Layer):
        if not net.children:
            raise ValueError(f"replace_head: {net!r} has no children; pass a serial network")
        return list(net.children), net.name
    seq = L.serial(*net)
    return list(seq.children), seq.name


def _cut(
    net: Layer | Sequence[Layer], head: str | None
) -> tuple[list[tuple[str, Layer, list[tuple[str, Layer]]]], list[tuple[str, Layer]]]:
    """The levels of the cut at ``head`` (a ``/``-joined path of child keys).

    Returns:
        ``(levels, old_head)``: per level, outermost first, ``(key, layer, kept)``: the serial
        cut into (``key`` is ``""`` at the top), its kept children; ``old_head`` holds the
        dropped children at every level as ``(path, layer)``.
    """
    children, _ = _children(net)
    top = net if isinstance(net, Layer) else L.serial(*net)
    segments = [children[-1][0]] if head is None else head.split("/")
    levels, dropped, layer, key, prefix = [], [], top, "", ""
    for depth, segment in enumerate(segments):
        if depth:
            if layer.combine != "serial":
                raise ValueError(
                    f"replace_head: child {prefix.rstrip('/')!r} is not a serial network "
                    f"(combine={layer.combine!r}); cannot cut inside it at {segment!r}"
                )
            children = list(layer.children)
        keys = [k for k, _ in children]
        if segment not in keys:
            where = f" of {prefix.rstrip('/')!r}" if depth else ""
            raise ValueError(f"replace_head: no child keyed {head!r}; children{where} are {keys}")
        cut = keys.index(segment)
        if cut == 0 and depth == 0:
            raise ValueError("replace_head: the head is the first child; nothing would be kept")
        levels.append((key, layer, children[:cut]))
        deeper = depth + 1 < len(segments)
        dropped += [(prefix + k, c) for k, c in children[cut + 1 if deeper else cut :]]
        key, layer = children[cut]
        prefix += key + "/"
    return levels, dropped


def kept_paths(net: Layer | Sequence[Layer], head: str | None = None) -> list[tuple[str, Layer]]:
    """The kept children at every level of the cut at ``head``, as ``(path, layer)``.

    Example:
        >>> [p for p, _ in kept_paths(models.vgg11(), "classifier/Dense_1")]
        ['features', 'avgpool', 'Flatten_0', 'classifier/Dense_0', 'classifier/Relu_0', \
'classifier/Dropout_0']
    """
    levels, _ = _cut(net, head)
    out, prefix = [], ""
    for i, (key, _, kept) in enumerate(levels):
        prefix += f"{key}/" if i else ""
        out += [(prefix + k, c) for k, c in kept]
    return out


def split_body_head(
    net: Layer | Sequence[Layer], head: str | None = None
) -> tuple[list[tuple[str, Layer]], list[tuple[str, Layer]]]:
    """The children of a serial network before and from the child keyed ``head`` (default: last).

    ``head`` may be a ``/``-joined path into nested serial children (``"classifier/Dense_2"``):
    then the body's last child is that serial cut short (same key and name, only its children
    before the cut), and ``old_head`` lists the dropped children at every level by path.

    Returns:
        ``(body, old_head)`` as lists of ``(key, layer)`` (``(path, layer)`` in ``old_head``).

    Raises:
        ValueError: a path segment is not a child key, a segment that the path goes into is
            not a serial network, or ``head`` is the first top-level child (nothing to keep).
    """
    levels, dropped = _cut(net, head)
    inner: list[tuple[str, Layer]] = []
    for key, layer, kept in reversed(levels[1:]):
        inner = [(key, L.serial(*[c.named(k) for k, c in kept + inner], name=layer.name))]
    return levels[0][2] + inner, dropped


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
    ``model.classifier[6] = nn.Linear(4096, 10)``: ``head="classifier/Dense_2"`` keeps the
    children before ``classifier``, and ``classifier`` becomes a serial (same key and name) of
    its children before ``Dense_2`` followed by the new head, so the kept params stay at their
    paths (``classifier/Dense_0/kernel``) and the new head's are at ``classifier/head``. The
    children after the cut are dropped at every level; ``body_inference`` wraps the kept
    children at every level (not the new head).

    Args:
        net: a ``serial`` network (its children are used), or a list of layers.
        new_head: the replacement, e.g. ``Dense(num_classes)`` or a small ``serial``.
        head: key of the first child to drop (default: the last child; ``"classifier"`` for VGG
            and AlexNet, ``"fc"`` for ResNets, ``"Dense_0"`` for the course CNN), or a
            ``/``-joined path into nested serial children (``"classifier/Dense_2"``).
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
        >>> vgg = replace_head(models.vgg11(), L.Dense(10), head="classifier/Dense_2")
        >>> [k for k, _ in vgg.children], [k for k, _ in dict(vgg.children)["classifier"].children]
        (['features', 'avgpool', 'Flatten_0', 'classifier'], \
['Dense_0', 'Relu_0', 'Dropout_0', 'Dense_1', 'Relu_1', 'Dropout_1', 'head'])
        >>> jcnn.output_shape(vgg, (64, 64, 3))
        (10,)
    """
    levels, _ = _cut(net, head)
    _, name = _children(net)
    if head_name in {k for k, _ in levels[-1][2]}:
        raise ValueError(f"replace_head: head_name {head_name!r} is already a child key")

    def keep(kept: list[tuple[str, Layer]]) -> list[Layer]:
        return [(inference_mode(c) if body_inference else c).named(k) for k, c in kept]

    inner = new_head.named(head_name)
    for key, layer, kept in reversed(levels[1:]):
        inner = L.serial(*keep(kept), inner, name=layer.name).named(key)
    return L.serial(*keep(levels[0][2]), inner, name=name)
