"""Transfer learning: keep a trained network's body, put a new head on it, train with the body
frozen.

:func:`replace_head` swaps the head of a serial network and keeps the body's child keys, so its
trained params plug in unchanged; :func:`inference_mode` (:mod:`jcnn.layers.wrappers`) runs a
part with ``train=False``. Every layer is found by its path (:meth:`jcnn.layers.Layer.at`) and
replaced there (:meth:`jcnn.layers.Layer.replace_at`), so each serial on the way keeps its name,
wrappers and kept keys. :func:`transfer_setup` then builds the train state and the optimiser:
parameters carry their path (``"features/0/kernel"``), so freezing is a list of path patterns for
:func:`jcnn.training.freeze` (the kept children's paths; a head inside a nested serial is named
by its path, ``head="classifier/6"``). ::

    setup = transfer_setup(models.resnet18(), L.Dense(5), (224, 224, 3), params, state,
                           optax.adam(1e-3))
    step = jcnn.make_train_step(setup.net.apply, softmax_cross_entropy, setup.optimizer)
    ts, metrics = step(setup.train_state, (x, y))     # only the head changes
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jcnn import layers as L
from jcnn.layers import paths
from jcnn.layers.core import Layer, init_shapes
from jcnn.layers.wrappers import InferenceMode, inference_mode
from jcnn.training.freeze import freeze
from jcnn.training.state import TrainState, init_key

__all__ = [
    "InferenceMode",
    "TransferSetup",
    "inference_mode",
    "kept_paths",
    "replace_head",
    "split_body_head",
    "transfer_setup",
]


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


class TransferSetup(NamedTuple):
    """What :func:`transfer_setup` returns.

    Attributes:
        net: the new network (body + ``head``).
        train_state: params with the body copied from the trained params (copies: the caller's
            arrays survive the donating train steps), a fresh head, and the state of the frozen
            optimiser.
        optimizer: the optimiser with the body frozen (zero updates, no optimiser state).
        frozen: the path patterns that were frozen (the body's child keys, or paths such as
            ``"classifier/0"`` for a nested ``head``), for
            :func:`jcnn.train.freeze` or ``jcnn.fit(frozen=...)``.
    """

    net: Layer
    train_state: TrainState
    optimizer: optax.GradientTransformation
    frozen: list[str]


def _copy_into(where: str, expected: Any, trained: Any, path: str) -> Any:
    """A copy of ``trained``'s subtree at ``path`` after checking it has the tree and shapes of
    ``expected``'s."""
    try:
        trained = paths.subtree(trained, path)
    except KeyError as err:
        raise ValueError(
            f"transfer_setup: trained {where} do not fit the body (another architecture): "
            f"{err.args[0]}"
        ) from None
    expected = paths.subtree(expected, path)
    same_tree = jax.tree.structure(expected) == jax.tree.structure(trained)  # type: ignore[operator]
    fits = same_tree and jax.tree.all(
        jax.tree.map(lambda e, t: tuple(e.shape) == tuple(jnp.shape(t)), expected, trained)
    )
    if not fits:
        raise ValueError(
            f"transfer_setup: trained {where} do not fit the body (another architecture or "
            "another input shape)"
        )
    # A copy: jcnn's train steps donate the train state, which would delete the caller's arrays.
    return jax.tree.map(jnp.copy, trained)


def transfer_setup(
    net: Layer | Sequence[Layer],
    new_head: Layer,
    input_shape: Sequence[int],
    params: Any,
    state: Any,
    optimizer: optax.GradientTransformation,
    *,
    head: str | None = None,
    head_name: str = "head",
    body_inference: bool = True,
    seed: int = 0,
) -> TransferSetup:
    """A new head on a trained body, ready to train with the body frozen.

    Only the head is initialised; the body's params (and state) are checked against the body's
    shapes (``jax.eval_shape``) and copied. With a nested ``head`` (``"classifier/6"``)
    the kept children inside ``classifier`` are copied and frozen at their paths too, and the
    new head (input: the nested body's output) sits at ``classifier/<head_name>``.

    Args:
        net: the trained serial network; ``params`` / ``state`` are its trees.
        new_head: the new head, initialised from ``seed`` with the init key of
            :func:`jcnn.train.create_train_state` (:func:`jcnn.train.init_key`); the step keys
            derive from ``seed`` as there (:meth:`jcnn.TrainState.create`).
        input_shape: one example's shape.
        params, state: the trained network's params and state (state ``None``: fresh state).
        optimizer: the optimiser for the head (wrapped with :func:`jcnn.train.freeze`).
        head, head_name: as :func:`replace_head` (``head`` may be a
            ``/``-joined path into nested serial children).
        body_inference: run the body with ``train=False`` (default), so its BatchNorm statistics
            stay as trained; ``False`` lets them adapt (params stay frozen either way).
        seed: seed of the head's initialisation and of the step keys.

    Returns:
        :class:`TransferSetup`. Train with ``jcnn.train.make_train_step(setup.net.apply, loss,
        setup.optimizer)`` or ``fit(setup.net, data, train_state=setup.train_state,
        optimizer=setup.optimizer)``.

    Raises:
        ValueError: the trained trees do not fit the body for ``input_shape``; ``head`` or
            ``head_name`` is refused by :func:`replace_head`.

    Example:
        >>> net = L.serial(L.Conv(2, (3, 3)), L.Flatten(), L.Dense(10))
        >>> _, params, state = net.init(key, (5, 5, 1))
        >>> setup = transfer_setup(net, L.Dense(3), (5, 5, 1), params, state, optax.sgd(0.1))
        >>> setup.frozen, setup.train_state.params["head"]["kernel"].shape
        (['Conv_0', 'Flatten_0'], (18, 3))
        >>> net = L.serial(L.Flatten(), L.serial(L.Dense(4), L.Relu(), L.Dense(2), name="fc"))
        >>> _, params, state = net.init(key, (5, 5, 1))
        >>> setup = transfer_setup(
        ...     net, L.Dense(3), (5, 5, 1), params, state, optax.sgd(0.1), head="fc/Dense_1"
        ... )
        >>> setup.frozen, setup.train_state.params["fc"]["head"]["kernel"].shape
        (['Flatten_0', 'fc/Dense_0', 'fc/Relu_0'], (4, 3))
    """
    shape = tuple(input_shape)
    kept = [path for path, _ in kept_paths(net, head)]
    new_net = replace_head(
        net, new_head, head=head, head_name=head_name, body_inference=body_inference
    )
    head_path = paths.join(*paths.split(head or "")[:-1], head_name)
    # One eval_shape of the new net: the kept params' shapes at their paths, and (from the walk)
    # the new head's input shape.
    _, expected_params, expected_state = init_shapes(new_net, shape)
    body_out = next(v.in_shape for v in new_net.walk(shape) if v.path == head_path)
    _, head_params, head_state = new_head.init(init_key(seed), body_out)
    if state is None:  # the body's fresh state; XLA drops the unused params
        state = jax.jit(lambda k: new_net.init(k, shape)[2])(init_key(seed))
    new_params, new_state = expected_params, expected_state
    for path in kept:
        where = "".join(f"[{key!r}]" for key in paths.split(path))  # params['classifier']['0']
        new_params = paths.with_subtree(
            new_params, path, _copy_into(f"params{where}", expected_params, params, path)
        )
        new_state = paths.with_subtree(
            new_state, path, _copy_into(f"state{where}", expected_state, state, path)
        )
    new_params = paths.with_subtree(new_params, head_path, head_params)
    new_state = paths.with_subtree(new_state, head_path, head_state)
    frozen = [glob.escape(path) for path in kept]
    frozen_opt = freeze(optimizer, new_params, frozen)
    ts = TrainState.create(new_params, new_state, frozen_opt, seed=seed)
    return TransferSetup(net=new_net, train_state=ts, optimizer=frozen_opt, frozen=frozen)
