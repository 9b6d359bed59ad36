"""The random streams of a run, named in one place: a run is a function of its seed.

A seed has three independent streams, ``fold_in(key(seed), stream)``:

=====================  =========================================================================
``INIT_STREAM`` (0)    initialises the params (:func:`init_key`)
``STEP_STREAM`` (1)    the root of the step keys: step ``t`` draws ``fold_in(root, t)``
                       (:func:`step_key_at`; :func:`jcnn.training.state.step_key` of a state)
``DATA_STREAM`` (2)    orders the data: epoch ``e`` is :func:`epoch_permutation` of ``e``
=====================  =========================================================================

Within a step, the step key is divided among the parts of the step:

* example ``i`` of a batch draws its dropout / stochastic depth from ``split(step_key, B)[i]``
  (:func:`jcnn.batched`), and inside a network a combinator splits its key among its stochastic
  children (:func:`jcnn.layers.core.child_keys`);
* micro-batch ``j`` of a step uses ``fold_in(step_key, j)``;
* augmentation (``transform(key, x)``) uses ``fold_in(step_key, TRANSFORM_FOLD)`` and DP-SGD's
  noise ``fold_in(step_key, NOISE_FOLD)``: constants no batch or micro-batch index reaches.

So a run resumed from a checkpoint at any step replays exactly what an uninterrupted run does.

Example:
    >>> a, b = init_key(0), step_key_at(root_key_data(0), 5)
    >>> bool((jax.random.key_data(a) != jax.random.key_data(b)).any())
    True
"""

from __future__ import annotations

import jax

__all__ = [
    "DATA_STREAM",
    "INIT_STREAM",
    "NOISE_FOLD",
    "STEP_STREAM",
    "TRANSFORM_FOLD",
    "data_rng",
    "epoch_permutation",
    "init_key",
    "root_key_data",
    "step_key_at",
]

INIT_STREAM = 0
STEP_STREAM = 1
DATA_STREAM = 2

#: ``fold_in`` constant of a step's augmentation key (``transform(key, x)``).
TRANSFORM_FOLD = 2**32 - 2
#: ``fold_in`` constant of a step's DP-SGD noise key.
NOISE_FOLD = 2**32 - 1


def init_key(seed: int) -> jax.Array:
    """The key that initialises the params for ``seed``: ``fold_in(key(seed), INIT_STREAM)``."""
    return jax.random.fold_in(jax.random.key(seed), INIT_STREAM)


def root_key_data(seed: int) -> jax.Array:
    """Raw key data of the root of the step keys: ``key_data(fold_in(key(seed), STEP_STREAM))``
    (what a :class:`jcnn.TrainState` keeps as ``rng``)."""
    return jax.random.key_data(jax.random.fold_in(jax.random.key(seed), STEP_STREAM))


def step_key_at(rng: jax.Array, step: int | jax.Array) -> jax.Array:
    """The PRNG key of step ``step`` from the root's raw key data ``rng``: ``fold_in(rng, step)``."""
    return jax.random.fold_in(jax.random.wrap_key_data(rng), step)


def data_rng(seed: int) -> jax.Array:
    """Raw key data of the data-order stream of ``seed``: ``key_data(fold_in(key(seed), 2))``.

    Independent of the init key and the step keys (streams 0 and 1 of the same seed).

    Shapes:
        output: the raw key data of one key (``(2,)`` uint32 for the default threefry).
    """
    return jax.random.key_data(jax.random.fold_in(jax.random.key(seed), DATA_STREAM))


def epoch_permutation(data_rng: jax.Array, epoch: int | jax.Array, n: int) -> jax.Array:
    """The example order of epoch ``epoch``: a permutation of ``range(n)`` drawn on the device.

    ``jax.random.permutation(fold_in(wrap_key_data(data_rng), epoch), n)``: a function of
    ``(data_rng, epoch)`` only, so a run resumed at any epoch replays the same order. Usable
    inside ``jax.jit`` (``epoch`` may be traced; ``n`` is static). The one permutation of jcnn:
    ``fit``'s two loops and :func:`jcnn.training.batches.batches` all use it.

    Example:
        >>> perm = epoch_permutation(data_rng(0), 3, 5)
        >>> sorted(perm.tolist()), perm.shape
        ([0, 1, 2, 3, 4], (5,))

    Shapes:
        output: (n,) int32.
    """
    key = jax.random.fold_in(jax.random.wrap_key_data(data_rng), epoch)
    return jax.random.permutation(key, n)
