"""Transfer learning on the train side: a trained body, a new head, the body frozen.

The layer surgery is in the model zoo (:func:`jcnn.models.transfer.replace_head`); this module
builds the train state and the optimiser. Parameters carry their path
(``"features/Conv_0/kernel"``), so freezing is a list of path patterns for
:func:`jcnn.train.freeze`: the kept children's keys (their paths, ``"classifier/0"``,
for a head inside a nested serial child: ``head="classifier/6"``). ::

    setup = transfer_setup(models.resnet18(), L.Dense(5), (224, 224, 3), params, state,
                           optax.adam(1e-3))
    step = jcnn.train.make_train_step(setup.net.apply, softmax_cross_entropy, setup.optimizer)
    ts, metrics = step(setup.train_state, (x, y))     # only "head" changes
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jcnn.layers import paths
from jcnn.layers.core import Layer, init_shapes
from jcnn.models.heads import kept_paths, replace_head
from jcnn.training.freeze import freeze
from jcnn.training.state import TrainState, init_key

__all__ = ["TransferSetup", "transfer_setup"]


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
        head, head_name: as :func:`jcnn.models.transfer.replace_head` (``head`` may be a
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
            ``head_name`` is refused by :func:`jcnn.models.transfer.replace_head`.

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
