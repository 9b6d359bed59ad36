"""Paths: the one way jcnn addresses a part of a network and of its params and state trees.

A path joins child keys with ``/``: ``"layer1/0/conv1"`` is a layer of resnet18 (from
:meth:`jcnn.layers.Layer.walk`), and the same string addresses that layer's params,
``subtree(params, "layer1/0/conv1")["kernel"]``; a leaf's path adds its own key
(``"layer1/0/conv1/kernel"``), which is what freeze patterns, porting maps and checkpoint
metadata print. ``""`` is the root.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax

__all__ = ["join", "key_path", "leaf_paths", "split", "subtree", "with_subtree"]


def join(*parts: str) -> str:
    """``"a/b/c"`` from ``"a"``, ``"b/c"``; empty parts (the root) are skipped.

    Example:
        >>> join("", "layer1", "0/conv1")
        'layer1/0/conv1'
    """
    return "/".join(p for p in parts if p)


def split(path: str) -> tuple[str, ...]:
    """The keys of ``path`` (``()`` for the root ``""``).

    Example:
        >>> split("layer1/0/conv1"), split("")
        (('layer1', '0', 'conv1'), ())
    """
    return tuple(path.split("/")) if path else ()


def key_path(path: Sequence[Any]) -> str:
    """``"a/b/kernel"`` from a ``jax.tree_util`` key path (``keystr(simple=True)``).

    Example:
        >>> [key_path(p) for p, _ in jax.tree_util.tree_flatten_with_path({"a": {"b": 1}})[0]]
        ['a/b']
    """
    return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def leaf_paths(tree: Any) -> Iterator[tuple[str, Any]]:
    """``(path, leaf)`` for every leaf of ``tree``, in ``jax.tree_util`` order.

    Example:
        >>> list(leaf_paths({"conv": {"kernel": 1, "bias": 2}}))
        [('conv/bias', 2), ('conv/kernel', 1)]
    """
    for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        yield key_path(p), leaf


def subtree(tree: Any, path: str) -> Any:
    """The part of a params or state ``tree`` at ``path`` (the whole tree for ``""``).

    Raises:
        KeyError: a key of ``path`` is not in the tree; the message names the keys that are.

    Example:
        >>> subtree({"layer1": {"0": {"conv1": {"kernel": 3}}}}, "layer1/0/conv1")
        {'kernel': 3}
    """
    node = tree
    for depth, key in enumerate(split(path)):
        if not isinstance(node, Mapping) or key not in node:
            at = join(*split(path)[:depth]) or "<root>"
            keys = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise KeyError(f"path {path!r}: no {key!r} under {at}; there: {keys}")
        node = node[key]
    return node


def with_subtree(tree: Any, path: str, value: Any) -> Any:
    """A copy of ``tree`` with ``value`` at ``path`` (only the dicts along the path are copied;
    ``tree`` itself is unchanged). The path's parent must exist; its last key may be new.

    Example:
        >>> with_subtree({"a": {"b": 1, "c": 2}}, "a/b", 5)
        {'a': {'b': 5, 'c': 2}}
    """
    keys = split(path)
    if not keys:
        return value
    parent = subtree(tree, join(*keys[:-1]))
    if not isinstance(parent, Mapping):
        raise KeyError(f"path {path!r}: {join(*keys[:-1])} is a leaf, not a dict of children")
    return with_subtree(tree, join(*keys[:-1]), {**parent, keys[-1]: value})
