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


def split_body_head(
    net: Layer | Sequence[Layer], head: str | None = None
) -> tuple[list[tuple[str, Layer]], list[tuple[str, Layer]]]:
    """The children of a serial network before and from the child keyed ``head`` (default: last).

    Returns:
        ``(body, old_head)`` as lists of ``(key, layer)``.

    Raises:
        ValueError: ``head`` is not a child key, or it is the first child (nothing to keep).
    """
    children, _ = _children(net)
    keys = [k for k, _ in children]
    cut = len(children) - 1 if head is None else (keys.index(head) if head in keys else -1)
    if cut < 0:
        raise ValueError(f"replace_head: no child keyed {head!r}; children are {keys}")
    if cut == 0:
        raise ValueError("replace_head: the head is the first child; nothing would be kept")
    return children[:cut], children[cut:]


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

    Args:
        net: a ``serial`` network (its children are used), or a list of layers.
        new_head: the replacement, e.g. ``Dense(num_classes)`` or a small ``serial``.
        head: key of the first child to drop (default: the last child; ``"classifier"`` for VGG
            and AlexNet, ``"fc"`` for ResNets, ``"Dense_0"`` for the course CNN).
        head_name: params key of the new head.
        body_inference: run the kept part with ``train=False`` (frozen BatchNorm statistics).

    Shapes:
        ``x -> new_head(body(x))``.

    Example:
        >>> net = replace_head(models.cnn(), L.Dense(3))
        >>> jcnn.output_shape(net, (28, 28, 1))
        (3,)
    """
    body, _ = split_body_head(net, head)
    _, name = _children(net)
    if head_name in {k for k, _ in body}:
        raise ValueError(f"replace_head: head_name {head_name!r} is already a child key")
    kept = [(inference_mode(c) if body_inference else c).named(k) for k, c in body]
    return L.serial(*kept, new_head.named(head_name), name=name)
