"""Transfer learning: keep a trained network's body, put a new head on it, train only the head.

Parameters carry their path (``"features/Conv_0/kernel"``), so freezing is a list of path
patterns for :func:`jcnn.train.freeze`: the kept children's keys. ::

    setup = transfer_setup(models.resnet18(), L.Dense(5), (224, 224, 3), params, state,
                           optax.adam(1e-3))
    step = jcnn.train.make_train_step(setup.net.apply, softmax_cross_entropy, setup.optimizer)
    ts, metrics = step(setup.train_state, (x, y))     # only "head" changes
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jcnn import layers as L
from jcnn.layers.core import Fns, Layer
from jcnn.summary import init_shapes
from jcnn.train import TrainState, freeze


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


class TransferSetup(NamedTuple):
    """What :func:`transfer_setup` returns.

    Attributes:
        net: the new network (body + ``head``).
        train_state: params with the body copied from the trained params (copies: the caller's
            arrays survive the donating train steps), a fresh head, and the state of the frozen
            optimiser.
        optimizer: the optimiser with the body frozen (zero updates, no optimiser state).
        frozen: the path patterns that were frozen (the body's child keys), for
            :func:`jcnn.train.freeze` or ``jcnn.fit.fit(frozen=...)``.
    """

    net: Layer
    train_state: TrainState
    optimizer: optax.GradientTransformation
    frozen: list[str]


def _copy_into(where: str, expected: Any, trained: Any) -> Any:
    same = jax.tree_util.tree_structure(expected) == jax.tree_util.tree_structure(trained)
    shapes_ok = same and all(
        tuple(a.shape) == tuple(b.shape)
        for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(trained))
    )
    if not shapes_ok:
        raise ValueError(
            f"transfer_setup: trained {where} do not fit the body (another architecture or "
            "another input shape)"
        )
    # A copy: jcnn's train steps donate the train state, which would delete the caller's arrays.
    return jax.tree_util.tree_map(jnp.copy, trained)


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
    shapes (``jax.eval_shape``) and copied.

    Args:
        net: the trained serial network; ``params`` / ``state`` are its trees.
        new_head: the new head, initialised from ``seed`` (key ``fold_in(key(seed), 0)`` and
            step keys from ``fold_in(key(seed), 1)``, as :func:`jcnn.train.create_train_state`).
        input_shape: one example's shape.
        params, state: the trained network's params and state (state ``None``: fresh state).
        optimizer: the optimiser for the head (wrapped with :func:`jcnn.train.freeze`).
        head, head_name: as :func:`replace_head`.
        body_inference: run the body with ``train=False`` (default), so its BatchNorm statistics
            stay as trained; ``False`` lets them adapt (params stay frozen either way).
        seed: seed of the head's initialisation and of the step keys.

    Returns:
        :class:`TransferSetup`. Train with ``jcnn.train.make_train_step(setup.net.apply, loss,
        setup.optimizer)`` or ``fit(setup.net, data, train_state=setup.train_state,
        optimizer=setup.optimizer)``.

    Raises:
        ValueError: the trained trees do not fit the body for ``input_shape``.
    """
    body, _ = split_body_head(net, head)
    new_net = replace_head(
        net, new_head, head=head, head_name=head_name, body_inference=body_inference
    )
    body_net = L.serial(*[child.named(key) for key, child in body])
    body_out, body_params, body_state = init_shapes(body_net, tuple(input_shape))
    root = jax.random.key(seed)
    _, head_params, head_state = new_head.init(jax.random.fold_in(root, 0), body_out)
    if state is None:
        state = body_net.init(jax.random.fold_in(root, 2), tuple(input_shape))[2]
    new_params, new_state = {}, {}
    for key, _ in body:
        new_params[key] = _copy_into(f"params[{key!r}]", body_params[key], params[key])
        new_state[key] = _copy_into(f"state[{key!r}]", body_state[key], state[key])
    new_params[head_name], new_state[head_name] = head_params, head_state
    frozen = [glob.escape(key) for key, _ in body]
    frozen_opt = freeze(optimizer, new_params, frozen)
    ts = TrainState(
        params=new_params,
        state=new_state,
        opt_state=frozen_opt.init(new_params),
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.key_data(jax.random.fold_in(root, 1)),
    )
    return TransferSetup(net=new_net, train_state=ts, optimizer=frozen_opt, frozen=frozen)
