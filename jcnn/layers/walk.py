"""One walk over a network, and how a combinator's tree is addressed by path.

:meth:`jcnn.layers.Layer.walk` yields a :class:`Visit` for every layer, with the path that is
also the address of its params (:mod:`jcnn.layers.paths`); every tool that reads a network
(summary, receptive fields, porting, per-example checks, head surgery) goes through it. Inlined
children (:meth:`jcnn.layers.Layer.inlined`) keep their children's keys in the parent's tree;
the conversion between that public tree and the tree a combinator's rule works on is here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from jcnn.layers.checks import check_tree

if TYPE_CHECKING:
    from jcnn.layers.core import Fns, Layer


class Visit(NamedTuple):
    """One layer met by :meth:`Layer.walk`.

    Attributes:
        path: the child keys from the root joined by ``/`` (``""`` for the root): the address
            of the layer's params and state (:func:`jcnn.layers.paths.subtree`).
        layer: the layer.
        in_shape, out_shape: the shapes of one example into and out of it.
    """

    path: str
    layer: Layer
    in_shape: Any
    out_shape: Any


def walk(layer: Layer, input_shape: Any) -> Iterator[Visit]:
    """``layer.walk(input_shape)``: every layer with its path and shapes (:meth:`Layer.walk`).

    Example:
        >>> from jcnn import layers as L
        >>> [v.path for v in walk(L.serial(L.Conv(8, 3).named("conv1")), (8, 8, 1))]
        ['', 'conv1']
    """
    return layer.walk(input_shape)


def _child(layer: Layer, key: str) -> Layer | None:
    """The child keyed ``key`` in ``layer``'s params tree (looking inside inlined children)."""
    for k, child in layer.children:
        if child.inline:
            found = _child(child, key)
            if found is not None:
                return found
        elif k == key:
            return child
    return None


def _edit_child(layer: Layer, key: str, edit: Callable[[Layer], Layer]) -> Layer:
    """``layer`` with ``edit(child)`` in place of the child keyed ``key`` (see :func:`_child`)."""
    children = list(layer.children)
    for i, (k, child) in enumerate(children):
        if child.inline and _child(child, key) is not None:
            children[i] = (k, _edit_child(child, key, edit))
            break
        if not child.inline and k == key:
            children[i] = (k, edit(child))
            break
    return layer.replace(children=tuple(children))


def _walk(layer: Layer, path: str, in_shape: Any) -> Iterator[Visit]:
    shapeless = in_shape is None
    yield Visit(path, layer, in_shape, None if shapeless else layer.output_shape(in_shape))
    if not layer.children:
        return
    shapes = [None] * len(layer.children) if shapeless else layer.child_input_shapes(in_shape)
    for (key, child), shape in zip(layer.children, shapes):
        child_path = path if child.inline else (f"{path}/{key}" if path else key)
        yield from _walk(child, child_path, shape)


def _nested(layer: Layer, tree: Any, what: str) -> dict[str, Any]:
    """A combinator's public ``tree`` (inlined children's keys moved up) in its rule's form."""
    check_tree(layer.name, tree, layer.tree_keys, what)
    out = {}
    for key, child in layer.children:
        out[key] = {k: tree[k] for k in child.tree_keys} if child.inline else tree[key]
    return out


def _public(layer: Layer, tree: dict[str, Any]) -> dict[str, Any]:
    """A combinator's ``tree`` as its rule builds it, with inlined children's keys moved up."""
    out: dict[str, Any] = {}
    for key, child in layer.children:
        if child.inline:
            out.update(tree[key])
        else:
            out[key] = tree[key]
    return out


def _with_inlined_children(layer: Layer, fns: Fns) -> Fns:
    init, apply = fns.init, fns.apply

    def flat_init(key, input_shape):
        out, params, state = init(key, input_shape)
        return out, _public(layer, params), _public(layer, state)

    def flat_apply(params, state, x, *, key=None, train=False):
        p, s = _nested(layer, params, "params"), _nested(layer, state, "state")
        y, new_state = apply(p, s, x, key=key, train=train)
        return y, _public(layer, new_state)

    return fns._replace(init=flat_init, apply=flat_apply)
