"""Bad-input cases of training: ``jcnn.fit``, ``jcnn.evaluate``, ``jcnn.train`` and
``jcnn.losses``.

What ``fit`` checks before it compiles anything (one pass over each set on the host): the data
are pairs of arrays of the same, non-zero length; ``x`` is floating-point (raw ``uint8`` pixels
are refused with how to convert them); ``val`` has the training examples' shape; with an
integer-label loss (the default cross-entropy) the labels are ``(N,)`` integers in ``[0, K)``;
every value is finite; every count argument is an int >= 1. While training it stops at the first
non-finite loss (read from the per-step losses each chunk brings back) without checkpointing that
chunk. The losses check their labels' shape and dtype when traced.

Every case is small: a two-layer dense net on 24 examples of shape (2, 2, 1), one epoch, no
progress bar; the cases that fail before compiling take no time at all.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax

from jcnn import layers as L
from jcnn import losses
from jcnn import train as T
from jcnn.layers.shapes import ShapeError
from jcnn.training import Callback, NonFiniteLossError, evaluate, fit
from jcnn.training.checkpoint import Checkpointer
from tests.bad_inputs.catalogue import Case

NET = L.serial(L.Flatten(), L.Dense(3))
N, B = 24, 8  # 3 steps per epoch
X = np.random.default_rng(0).normal(size=(N, 2, 2, 1)).astype(np.float32)
Y = (np.arange(N) % 3).astype(np.int32)
SHAPE = (2, 2, 1)


def _fit(train=(X, Y), net=NET, **kwargs):
    args = dict(epochs=1, batch_size=B, progress=False, optimizer=optax.sgd(0.1))
    args.update(kwargs)
    return fit(net, train, **args)


def _with_label(i: int, value: int) -> np.ndarray:
    y = Y.copy()
    y[i] = value
    return y


def _with_value(x: np.ndarray, i: int, value: float) -> np.ndarray:
    x = x.copy()
    x[i, 1, 0, 0] = value
    return x


def _count_case(name: str, value, says: str) -> Case:
    return Case(
        "training",
        f"{name}_{value!r}",
        f"fit(..., {name}={value!r})",
        lambda tmp_path: _fit(**{name: value}),
        ValueError,
        (f"fit: {name} must be {says}", f"got {value!r}"),
    )


def _nonfinite_stops_before_saving(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    try:
        _fit(optimizer=optax.sgd(1e38), checkpoint_dir=directory, checkpoint_every=1)
    except NonFiniteLossError as error:
        assert (error.step, error.epoch, error.index) == (1, 0, 1), error
    else:
        raise AssertionError("no NonFiniteLossError")
    assert Checkpointer(directory).all_steps() == [1]  # step 2 (loss inf) was not saved


def _opt_out_trains_on(tmp_path: Path) -> None:
    result = _fit((_with_value(X, 5, np.nan), Y), stop_on_nonfinite=False)
    assert np.isnan(result.history["train_loss"][0])


def _numpy_counts_accepted(tmp_path: Path) -> None:
    result = _fit(
        epochs=np.int64(2),
        batch_size=np.int32(B),
        log_every=np.int64(2),
        keep_checkpoints=np.int8(1),
        checkpoint_every=np.int64(3),
        checkpoint_dir=tmp_path / "ckpt",
        on_device=False,
        prefetch=np.int64(0),
    )
    assert result.history["epoch"] == [1, 2] and int(result.train_state.step) == 6
    assert Checkpointer(tmp_path / "ckpt").all_steps() == [6]


def _float_targets_with_a_regression_loss(tmp_path: Path) -> None:
    onehot = np.eye(3, dtype=np.float32)[Y]
    result = _fit((X, onehot), loss_fn=losses.mse, val=(X[:8], onehot[:8]))
    assert set(result.history) == {"epoch", "train_loss", "val_loss", "seconds"}


def _other_optimizer_state(tmp_path: Path) -> None:
    ts = T.create_train_state(NET, SHAPE, optax.sgd(0.1))
    _fit(train_state=ts, optimizer=optax.adam(1e-3))


def _other_architecture(tmp_path: Path) -> None:
    ts = T.create_train_state(L.serial(L.Flatten(), L.Dense(5)), SHAPE, optax.sgd(0.1))
    _fit(train_state=ts)


def _evaluate_integer_images(tmp_path: Path) -> None:
    ts = T.create_train_state(NET, SHAPE, optax.sgd(0.1))
    evaluate(NET, ts, (X.astype(np.uint8), Y), batch_size=8)


class _ExtraEntries(Callback):
    """A callback whose ``extend_record`` returns ``value`` (a custom validation)."""

    def __init__(self, value) -> None:
        self.value = value

    def extend_record(self, end):
        return self.value


CASES = [
    # ---------------------------------------------------------------- item 1: lengths, shapes
    Case(
        "training",
        "lengths_differ",
        "fit with 24 images and 16 labels",
        lambda tmp_path: _fit((X, Y[:16])),
        ValueError,
        ("fit: train has 24 examples", "but 16 labels", "one label per example"),
    ),
    Case(
        "training",
        "val_lengths_differ",
        "val with 10 images and 8 labels",
        lambda tmp_path: _fit(val=(X[:10], Y[:8])),
        ValueError,
        ("fit: val has 10 examples", "but 8 labels"),
    ),
    Case(
        "training",
        "val_example_shape_differs",
        "val examples (3, 3, 1), train examples (2, 2, 1)",
        lambda tmp_path: _fit(val=(np.zeros((4, 3, 3, 1), np.float32), Y[:4])),
        ValueError,
        ("val examples have shape (3, 3, 1)", "train examples (2, 2, 1)"),
    ),
    Case(
        "training",
        "empty_train",
        "fit on zero examples",
        lambda tmp_path: _fit((X[:0], Y[:0])),
        ValueError,
        ("fit: train is empty", "(0, 2, 2, 1)"),
    ),
    Case(
        "training",
        "empty_val",
        "an empty validation set",
        lambda tmp_path: _fit(val=(X[:0], Y[:0])),
        ValueError,
        ("fit: val is empty",),
    ),
    Case(
        "training",
        "train_not_a_pair",
        "fit(net, x) without the labels",
        lambda tmp_path: _fit(X),
        TypeError,
        ("train must be a pair (x, y) of arrays", "ndarray of shape (24, 2, 2, 1)"),
    ),
    Case(
        "training",
        "images_as_a_list",
        "images given as a Python list",
        lambda tmp_path: _fit((X.tolist(), Y)),
        TypeError,
        ("train x must be an array", "got a list", "np.asarray"),
    ),
    # ---------------------------------------------------------------- item 2: integer images
    Case(
        "training",
        "uint8_images",
        "raw uint8 pixels into fit",
        lambda tmp_path: _fit(((X * 100).astype(np.uint8), Y)),
        TypeError,
        ("fit: train x has dtype uint8", "x.astype(np.float32) / 255", "jcnn.data.normalize"),
    ),
    Case(
        "training",
        "uint8_val_images",
        "raw uint8 pixels as the validation set",
        lambda tmp_path: _fit(val=(X[:8].astype(np.uint8), Y[:8])),
        TypeError,
        ("fit: val x has dtype uint8", "x.astype(np.float32) / 255"),
    ),
    Case(
        "training",
        "evaluate_uint8_images",
        "jcnn.evaluate on uint8 images",
        _evaluate_integer_images,
        TypeError,
        ("evaluate: data x has dtype uint8", "x.astype(np.float32) / 255"),
    ),
    # ---------------------------------------------------------------- item 3: NaN / inf
    Case(
        "training",
        "nonfinite_loss",
        "a huge learning rate (sgd(1e38)): the loss overflows",
        lambda tmp_path: _fit(optimizer=optax.sgd(1e38)),
        NonFiniteLossError,
        (
            "the training loss is inf at global step 2",
            "epoch 1/1, step 2/3 of the epoch",
            "learning rate",
            "np.isfinite",
            'jax.config.update("jax_debug_nans", True)',
            "stop_on_nonfinite=False",
        ),
    ),
    Case(
        "training",
        "nonfinite_loss_host_loop",
        "a huge learning rate in the host loop, chunks of one step",
        lambda tmp_path: _fit(optimizer=optax.sgd(1e38), on_device=False, log_every=1),
        NonFiniteLossError,
        ("global step 2", "step 2/3 of the epoch", "after a mean loss of"),
    ),
    Case(
        "training",
        "nonfinite_chunk_not_checkpointed",
        "the loss becomes inf at step 2 while checkpointing every step",
        _nonfinite_stops_before_saving,
        valid="NonFiniteLossError with step/epoch/index attributes; only step 1 is on disk",
    ),
    Case(
        "training",
        "nan_pixel",
        "one NaN pixel in the training images",
        lambda tmp_path: _fit((_with_value(X, 5, np.nan), Y)),
        ValueError,
        ("fit: train x[5] holds nan at (1, 0, 0)", "np.isfinite", "stop_on_nonfinite=False"),
    ),
    Case(
        "training",
        "inf_in_val",
        "an inf in the validation images",
        lambda tmp_path: _fit(val=(_with_value(X[:8], 3, np.inf), Y[:8])),
        ValueError,
        ("fit: val x[3] holds inf",),
    ),
    Case(
        "training",
        "nan_target",
        "a NaN regression target",
        lambda tmp_path: _fit((X, np.where(np.arange(N) == 9, np.nan, 1.0)), loss_fn=losses.mse),
        ValueError,
        ("fit: train y[9] holds nan",),
    ),
    Case(
        "training",
        "nonfinite_opt_out",
        "stop_on_nonfinite=False with a NaN pixel",
        _opt_out_trains_on,
        valid="trains on: the history's train_loss is nan",
    ),
    # ---------------------------------------------------------------- item 4: labels
    Case(
        "training",
        "label_equals_k",
        "label 3 for a 3-class net",
        lambda tmp_path: _fit((X, _with_label(7, 3))),
        ValueError,
        ("train label y[7] = 3", "output per example is (3,)", "0..2", "give the last layer 4"),
    ),
    Case(
        "training",
        "label_minus_one",
        "label -1 (an 'unlabelled' marker)",
        lambda tmp_path: _fit((X, _with_label(7, -1))),
        ValueError,
        ("train label y[7] = -1", "0..2", "negative labels"),
    ),
    Case(
        "training",
        "labels_one_based",
        "labels 1..3 for a 3-class net",
        lambda tmp_path: _fit((X, Y + 1)),
        ValueError,
        ("train label y[2] = 3", "labels 1..3? use y - 1"),
    ),
    Case(
        "training",
        "val_label_out_of_range",
        "a validation label 5 for a 3-class net",
        lambda tmp_path: _fit(val=(X[:8], _with_label(4, 5)[:8])),
        ValueError,
        ("val label y[4] = 5",),
    ),
    Case(
        "training",
        "float_labels",
        "float labels with the cross-entropy loss",
        lambda tmp_path: _fit((X, Y.astype(np.float32))),
        TypeError,
        ("labels have dtype float32", "integer class labels (B,)", ".astype(np.int32)"),
    ),
    Case(
        "training",
        "one_hot_labels",
        "one-hot labels with the (integer-label) cross-entropy loss",
        lambda tmp_path: _fit((X, np.eye(3, dtype=np.float32)[Y])),
        ShapeError,
        ("labels have shape (24, 3)", "one-hot rows? use labels.argmax(-1)"),
    ),
    Case(
        "training",
        "column_labels",
        "labels of shape (N, 1)",
        lambda tmp_path: _fit((X, Y[:, None])),
        ShapeError,
        ("labels have shape (24, 1)", "labels.reshape(-1)"),
    ),
    Case(
        "training",
        "regression_targets",
        "float targets with a regression loss (mse)",
        _float_targets_with_a_regression_loss,
        valid="trains and validates: no label checks for a loss without integer labels",
    ),
    Case(
        "training",
        "loss_float_labels",
        "softmax_cross_entropy(logits, float labels)",
        lambda tmp_path: losses.softmax_cross_entropy(jnp.zeros((4, 3)), jnp.zeros(4)),
        TypeError,
        ("softmax_cross_entropy: labels have dtype float32", "astype(np.int32)"),
    ),
    Case(
        "training",
        "loss_batch_sizes_differ",
        "softmax_cross_entropy with 4 logits rows and 5 labels",
        lambda tmp_path: losses.softmax_cross_entropy(jnp.zeros((4, 3)), jnp.zeros(5, jnp.int32)),
        ShapeError,
        ("batch sizes differ", "logits (4, 3) hold 4 examples", "labels (5,) hold 5"),
    ),
    Case(
        "training",
        "accuracy_float_labels",
        "accuracy(logits, float labels), silently compared before",
        lambda tmp_path: losses.accuracy(jnp.zeros((4, 3)), jnp.zeros(4)),
        TypeError,
        ("accuracy: labels have dtype float32",),
    ),
    Case(
        "training",
        "top_k_larger_than_classes",
        "top_k_accuracy(k=5) on 3 classes",
        lambda tmp_path: losses.top_k_accuracy(jnp.zeros((4, 3)), jnp.zeros(4, jnp.int32), k=5),
        ValueError,
        ("top_k_accuracy: k must be an int in 1..3", "got 5"),
    ),
    # ---------------------------------------------------------------- item 5: counts
    _count_case("batch_size", 0, "a positive int"),
    _count_case("batch_size", 8.0, "a positive int"),
    _count_case("eval_batch_size", -1, "a positive int"),
    _count_case("epochs", 0, "a positive int"),
    _count_case("checkpoint_every", 0, "a positive int or None"),
    _count_case("keep_checkpoints", 0, "a positive int"),
    _count_case("log_every", True, "a positive int or None"),
    _count_case("prefetch", -1, "an int >= 0"),
    Case(
        "training",
        "numpy_int_counts",
        "counts given as NumPy integers (np.int64(2) epochs, ...)",
        _numpy_counts_accepted,
        valid="accepted as ints (prefetch=0: batches gathered in the calling thread)",
    ),
    Case(
        "training",
        "checkpoint_every_without_dir",
        "checkpoint_every=2 without checkpoint_dir",
        lambda tmp_path: _fit(checkpoint_every=2),
        ValueError,
        ("checkpoint_every=2 but no checkpoint_dir", "nothing would be saved"),
    ),
    # ---------------------------------------------------------------- item 6: BatchNorm
    Case(
        "training",
        "batchnorm_batch_of_one",
        "fit(batch_size=1) on a net with BatchNorm after Dense",
        lambda tmp_path: _fit(
            net=L.serial(L.Flatten(), L.Dense(4), L.BatchNorm(), L.Dense(3)), batch_size=1
        ),
        ShapeError,
        ("BatchNorm_0", "train=True needs more than 1 value per channel", "use a larger batch"),
    ),
    # ---------------------------------------------------------------- item 7: the rest
    Case(
        "training",
        "optimizer_not_called",
        "optimizer=optax.adam (the factory, not called)",
        lambda tmp_path: _fit(optimizer=optax.adam),
        TypeError,
        ("optimizer must be an optax.GradientTransformation", "optimizer=optax.adam(1e-3)"),
    ),
    Case(
        "training",
        "loss_per_example",
        "a loss_fn returning one loss per example",
        lambda tmp_path: _fit(loss_fn=optax.softmax_cross_entropy_with_integer_labels),
        TypeError,
        ("returned shape (8,)", "ONE floating-point scalar", "jnp.mean"),
    ),
    Case(
        "training",
        "metrics_per_example",
        "a metrics_fn returning one value per example",
        lambda tmp_path: _fit(metrics_fn=lambda out, y: {"hit": out.argmax(-1) == y}),
        ValueError,
        # (a chunk's length is the loop's: the log_every/checkpoint cuts and a ~2 s budget)
        ("returned metrics of shapes {'hit': (", ", 8)}", "one scalar per step", "ONE scalar"),
    ),
    Case(
        "training",
        "extend_record_returns_a_number",
        "a callback's extend_record returning a float instead of {name: value}",
        lambda tmp_path: _fit(callbacks=[_ExtraEntries(0.5)]),
        TypeError,
        ("extend_record must return a mapping", "got a float"),
    ),
    Case(
        "training",
        "train_state_other_architecture",
        "train_state of a Dense(5) head for a Dense(3) net",
        _other_architecture,
        ValueError,
        ("Dense_0: params from another architecture", "(4, 5)", "(4, 3)"),
    ),
    Case(
        "training",
        "train_state_other_optimizer",
        "train_state made with sgd, fit with adam",
        _other_optimizer_state,
        ValueError,
        ("opt_state was made by another optimiser", "ScaleByAdamState", "optimizer.init"),
    ),
    Case(
        "training",
        "train_state_params_only",
        "train_state=params (a dict)",
        lambda tmp_path: _fit(train_state=T.create_train_state(NET, SHAPE, optax.sgd(0.1)).params),
        TypeError,
        ("train_state must be a jcnn.TrainState", "create_train_state", "got a dict"),
    ),
    Case(
        "training",
        "frozen_matches_nothing",
        "frozen=['features'] on a net without such a layer",
        lambda tmp_path: _fit(frozen=["features"]),
        ValueError,
        ("['features'] match no parameter path", "Dense_0/kernel"),
    ),
    Case(
        "training",
        "frozen_typo_among_matches",
        "frozen=['Dense_0/bias', 'Dense_0/kernal']: one pattern matches, one is a typo",
        lambda tmp_path: _fit(frozen=["Dense_0/bias", "Dense_0/kernal"]),
        ValueError,
        ("['Dense_0/kernal'] match no parameter path",),
    ),
    Case(
        "training",
        "frozen_string",
        "frozen='Dense_0' (a string, not a list)",
        lambda tmp_path: _fit(frozen="Dense_0"),
        TypeError,
        ("got the string 'Dense_0'", "use ['Dense_0']"),
    ),
    Case(
        "training",
        "seed_float",
        "seed=1.5",
        lambda tmp_path: _fit(seed=1.5),
        ValueError,
        ("fit: seed must be an int", "1.5"),
    ),
]
