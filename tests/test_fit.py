"""jcnn.fit: on-device epoch == host loop, determinism, history, evaluation, checkpoints,
optax schedules, freezing by path, augmentation inside the step (both loops), errors (the
catalogue of misuse is tests/bad_inputs/cases_training.py)."""

from __future__ import annotations

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jcnn import layers as L
from jcnn import train as T
from jcnn.data import augment
from jcnn.training import Callback, NonFiniteLossError, fit
from jcnn.training import evaluate as evaluate_net
from jcnn.training.checkpoint import Checkpointer
from jcnn.training.evaluation import evaluate_with
from jcnn.training.losses import softmax_cross_entropy

FIT_MODULE = importlib.import_module("jcnn.training.fit")  # jcnn.fit is the function

HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}


def _data(seed, n, shape, classes):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return x, y


def _flat(tree) -> dict[str, np.ndarray]:
    return {
        T.param_path(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _identical(a, b) -> bool:
    fa, fb = _flat(a), _flat(b)
    return fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)


# A conv net WITHOUT a bias before BatchNorm: such a bias has a ~0 gradient that Adam divides by
# its own ~0 scale, which turns float noise into full-size updates and makes loop comparisons
# meaningless. Dropout makes the comparison cover the per-step keys too.
CONV_NET = L.serial(
    L.Conv(4, (3, 3), use_bias=False),
    L.BatchNorm(),
    L.Relu(),
    L.Flatten(),
    L.Dropout(0.2),
    L.Dense(10),
)
CONV_TRAIN = _data(0, 256, (12, 12, 1), 10)
CONV_VAL = _data(1, 50, (12, 12, 1), 10)

# Tiny dense nets for the tests about the loop itself (cheap to compile); one has dropout, so
# that determinism covers the per-step keys.
TINY_NET = L.serial(L.Flatten(), L.Dense(8), L.Relu(), L.Dense(3))
TINY_DROP_NET = L.serial(L.Flatten(), L.Dense(8), L.Relu(), L.Dropout(0.3), L.Dense(3))
TINY_TRAIN = _data(2, 96, (6, 6, 1), 3)  # batch 16: 6 steps per epoch
TINY_VAL = _data(3, 20, (6, 6, 1), 3)


class _OnChunkEnd(Callback):
    """A callback calling ``fn(chunk)`` after each chunk."""

    def __init__(self, fn):
        self.fn = fn

    def on_chunk_end(self, chunk):
        self.fn(chunk)


class _OnEpochEnd(Callback):
    """A callback calling ``fn(end)`` after each epoch (its value stops the run when True)."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, end):
        return self.fn(end)


def _tiny_fit(net=TINY_NET, **kwargs):
    args = dict(
        val=TINY_VAL,
        optimizer=optax.adam(1e-2),
        epochs=2,
        batch_size=16,
        seed=0,
        progress=False,
        eval_batch_size=8,
    )
    args.update(kwargs)
    return fit(net, TINY_TRAIN, **args)


@functools.cache
def _conv_fit(on_device: bool):
    return fit(
        CONV_NET,
        CONV_TRAIN,
        val=CONV_VAL,
        optimizer=optax.adam(1e-2),
        epochs=2,
        batch_size=32,
        seed=0,
        on_device=on_device,
        progress=False,
    )


# --------------------------------------------------------------------------- the two loops


def test_on_device_epoch_equals_host_loop():
    dev, host = _conv_fit(True), _conv_fit(False)
    a, b = _flat(dev.train_state), _flat(host.train_state)
    assert a.keys() == b.keys()
    assert int(dev.train_state.step) == int(host.train_state.step) == 16
    worst = 0.0
    for k in a:
        if a[k].dtype.kind != "f":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            continue
        # Relative to each array's scale (entries near 0 have no meaningful relative error).
        scale = max(float(np.abs(b[k]).max()), 1e-30)
        worst = max(worst, float(np.abs(a[k] - b[k]).max()) / scale)
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5 * scale, err_msg=k)
    # Measured on CPU: ~1e-6 of the scale (XLA fuses the scan body differently from the step).
    assert worst < 1e-5
    for key in HISTORY_KEYS - {"seconds", "epoch"}:
        np.testing.assert_allclose(dev.history[key], host.history[key], rtol=1e-5)
    assert not _identical(
        dev.train_state.params, T.create_train_state(CONV_NET, (12, 12, 1), optax.adam(1e-2)).params
    )


def test_history_keys_lengths_and_val_metrics():
    result = _conv_fit(True)
    hist = result.history
    assert set(hist) == HISTORY_KEYS
    assert hist["epoch"] == [1, 2]
    assert all(len(v) == 2 for v in hist.values())
    assert all(s > 0 for s in hist["seconds"])
    assert all(0.0 <= a <= 1.0 for a in hist["train_accuracy"] + hist["val_accuracy"])
    # val metrics are those of the final state on the whole validation set (train=False).
    evaluate = T.make_eval_step(CONV_NET.apply, softmax_cross_entropy)
    m = evaluate(result.train_state, CONV_VAL)
    np.testing.assert_allclose(hist["val_loss"][-1], float(m["loss"]), rtol=1e-5)
    np.testing.assert_allclose(hist["val_accuracy"][-1], float(m["accuracy"]), rtol=1e-6)
    # Training on 256 random labels for 2 epochs lowers the training loss.
    assert hist["train_loss"][1] < hist["train_loss"][0]


# --------------------------------------------------------------------------- determinism


@functools.cache
def _tiny_checkpointed(seed: int, keep: int, tmp_root: str):
    directory = f"{tmp_root}/seed{seed}_keep{keep}"
    result = _tiny_fit(
        TINY_DROP_NET,
        seed=seed,
        checkpoint_dir=directory,
        checkpoint_every=4,
        keep_checkpoints=keep,
    )
    return result, directory


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fit"))


def test_same_seed_same_bits_other_seed_differs(tmp_root):
    a, _ = _tiny_checkpointed(0, 100, tmp_root)
    b, _ = _tiny_checkpointed(0, 2, tmp_root)
    c, _ = _tiny_checkpointed(1, 100, tmp_root)
    assert _identical(a.train_state, b.train_state)
    assert a.history["train_loss"] == b.history["train_loss"]
    assert a.history["val_loss"] == b.history["val_loss"]
    assert not _identical(a.train_state.params, c.train_state.params)


def test_checkpoint_every_and_keep(tmp_root):
    # 6 steps per epoch in chunks of 4: saves after steps 4, 6 (epoch end), 10, 12.
    _, keep_all = _tiny_checkpointed(0, 100, tmp_root)
    _, keep_two = _tiny_checkpointed(0, 2, tmp_root)
    assert Checkpointer(keep_all).all_steps() == [4, 6, 10, 12]
    assert Checkpointer(keep_two).all_steps() == [10, 12]


def test_checkpoint_chunks_do_not_change_the_result(tmp_root):
    """A run cut into chunks of 4 steps (to checkpoint) vs one compiled call per epoch."""
    chunked, _ = _tiny_checkpointed(0, 100, tmp_root)
    whole = _tiny_fit(TINY_DROP_NET, seed=0)
    a, b = _flat(chunked.train_state), _flat(whole.train_state)
    for k in a:
        scale = max(float(np.abs(b[k]).max()), 1e-30) if a[k].dtype.kind == "f" else 1.0
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6 * scale, err_msg=k)


# --------------------------------------------------------------------------- resuming


def test_a_resume_with_more_epochs_returns_the_history_of_every_epoch(tmp_path, tmp_root, capsys):
    """1 epoch, then the same folder with epochs=2: a history of epochs 1 and 2 that equals an
    uninterrupted 2-epoch run's, and a line saying where it resumed from."""
    whole, _ = _tiny_checkpointed(0, 100, tmp_root)  # 2 epochs uninterrupted, same settings
    ckpt = tmp_path / "ckpt"
    kwargs = dict(seed=0, checkpoint_dir=ckpt, checkpoint_every=4)
    first = _tiny_fit(TINY_DROP_NET, epochs=1, **kwargs)
    assert first.resumed_from is None and first.resume_note == ""
    second = _tiny_fit(TINY_DROP_NET, epochs=2, progress=True, **kwargs)
    printed = capsys.readouterr()
    note = f"fit: resumed from step 6 (epoch 1 of 2 done; continuing with epoch 2) in {ckpt}"
    assert second.resumed_from == 6 and second.resume_note == note
    assert note in printed.out + printed.err  # progress on: said through tqdm
    assert second.history["epoch"] == [1, 2]
    assert set(second.history) == HISTORY_KEYS
    assert second.history["seconds"][0] == first.history["seconds"][0]  # restored, not re-timed
    for key in HISTORY_KEYS - {"seconds"}:
        np.testing.assert_allclose(second.history[key], whole.history[key], rtol=1e-6, err_msg=key)
    assert _identical(second.train_state, whole.train_state)


class _Stop(Exception):
    pass


def test_a_mid_epoch_resume_counts_the_whole_epoch(tmp_path, tmp_root):
    """Stopped right after the checkpoint at step 4 (of 6 in epoch 1): the resumed run's epoch 1
    averages all 6 steps, as the uninterrupted run does."""
    whole, _ = _tiny_checkpointed(0, 100, tmp_root)
    ckpt = tmp_path / "ckpt"
    kwargs = dict(seed=0, checkpoint_dir=ckpt, checkpoint_every=4)

    def stop_after_step_4(chunk):
        if chunk.step == 4:
            raise _Stop

    with pytest.raises(_Stop):
        _tiny_fit(TINY_DROP_NET, callbacks=[_OnChunkEnd(stop_after_step_4)], **kwargs)
    assert Checkpointer(ckpt).all_steps() == [4]
    resumed = _tiny_fit(TINY_DROP_NET, **kwargs)
    assert resumed.resume_note.startswith("fit: resumed from step 4 (epoch 1 of 2, after step 4")
    assert resumed.history["epoch"] == [1, 2]
    for key in HISTORY_KEYS - {"seconds"}:
        np.testing.assert_allclose(resumed.history[key], whole.history[key], rtol=1e-6, err_msg=key)


def test_a_finished_runs_rerun_returns_the_checkpoint_at_once(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "ckpt"
    done = _tiny_fit(epochs=2, checkpoint_dir=ckpt)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run's rerun placed data to train")

    monkeypatch.setattr(FIT_MODULE, "DeviceLoop", no_training)
    monkeypatch.setattr(FIT_MODULE, "HostLoop", no_training)
    again = _tiny_fit(epochs=2, checkpoint_dir=ckpt, progress=True)
    printed = capsys.readouterr()
    assert again.resumed_from == 12
    assert again.resume_note == (
        "fit: resumed from step 12 (epoch 2 of 2 done, epochs=2): nothing left to train; "
        f"returning the checkpoint's state and history ({ckpt})"
    )
    assert again.resume_note in printed.out + printed.err
    assert again.history == done.history  # every value, through the checkpoint's JSON meta
    assert _identical(again.train_state, done.train_state)
    assert Checkpointer(ckpt).all_steps() == [6, 12]  # nothing saved
    fewer = _tiny_fit(epochs=1, checkpoint_dir=ckpt)  # asks for less than the checkpoint has
    assert "(2 epochs done, epochs=1): nothing left to train" in fewer.resume_note
    assert fewer.history == done.history


EPOCH_RECORDS: list = []


@functools.cache
def _tiny_one_epoch():
    """One epoch of TINY_NET, evaluated in batches of 8 (8 + 8 + 4 examples), records kept."""
    keep = _OnEpochEnd(lambda end: EPOCH_RECORDS.append((end.epoch, dict(end.record))))
    return _tiny_fit(epochs=1, eval_batch_size=8, callbacks=[keep])


def test_on_epoch_end_callback_gets_each_epoch_record():
    result = _tiny_one_epoch()
    assert len(EPOCH_RECORDS) == 1 and EPOCH_RECORDS[0][0] == 0
    record = EPOCH_RECORDS[0][1]
    assert set(record) == HISTORY_KEYS - {"epoch"}
    assert record["val_loss"] == result.history["val_loss"][0]


def test_evaluation_batches_are_weighted_by_size():
    """eval_batch_size 8 on 20 examples (8 + 8 + 4) == one batch of all 20."""
    result = _tiny_one_epoch()
    evaluate = T.make_eval_step(TINY_NET.apply, softmax_cross_entropy)
    whole = evaluate(result.train_state, TINY_VAL)
    np.testing.assert_allclose(result.history["val_loss"][0], float(whole["loss"]), rtol=1e-5)
    np.testing.assert_allclose(
        result.history["val_accuracy"][0], float(whole["accuracy"]), rtol=1e-6
    )


# --------------------------------------------------------------------------- optimisers


def test_optax_schedule_of_zero_never_moves_the_params():
    start = T.create_train_state(TINY_NET, (6, 6, 1), optax.adam(1e-2)).params
    result = _tiny_fit(optimizer=optax.adam(lambda count: 0.0 * count), val=None)
    assert _identical(result.train_state.params, start)
    assert int(result.train_state.opt_state[0].count) == 12  # the schedule saw 12 steps


def test_optax_exponential_decay_in_the_host_loop():
    start = T.create_train_state(TINY_NET, (6, 6, 1), optax.adam(1e-2)).params
    result = _tiny_fit(
        optimizer=optax.adam(optax.exponential_decay(1e-2, transition_steps=3, decay_rate=0.5)),
        on_device=False,
        val=None,
    )
    assert not _identical(result.train_state.params, start)
    assert set(result.history) == {"epoch", "train_loss", "train_accuracy", "seconds"}
    assert int(result.train_state.opt_state[0].count) == 12


# --------------------------------------------------------------------------- freezing


def test_freezing_by_layer_name_and_path_pattern():
    net = L.serial(
        L.serial(L.Conv(3, (3, 3)), L.Relu(), name="features"),
        L.Flatten(),
        L.Dense(3).named("head"),
    )
    start = _flat(T.create_train_state(net, (6, 6, 1), optax.adam(1e-2)).params)
    result = fit(
        net,
        TINY_TRAIN,
        optimizer=optax.adam(1e-2),
        epochs=1,
        batch_size=16,
        frozen=["features/Conv_0/kernel", "head/bias"],
        progress=False,
    )
    end = _flat(result.train_state.params)
    assert set(end) == {
        "features/Conv_0/kernel",
        "features/Conv_0/bias",
        "head/kernel",
        "head/bias",
    }
    for path in ("features/Conv_0/kernel", "head/bias"):
        np.testing.assert_array_equal(end[path], start[path], err_msg=path)
    for path in ("features/Conv_0/bias", "head/kernel"):
        assert not np.array_equal(end[path], start[path]), path


def test_freezing_a_whole_sub_network():
    net = L.serial(
        L.serial(L.Flatten(), L.Dense(4), name="features"), L.Relu(), L.Dense(3).named("head")
    )
    start = _flat(T.create_train_state(net, (6, 6, 1), optax.sgd(0.1)).params)
    result = fit(
        net,
        TINY_TRAIN,
        optimizer=optax.sgd(0.1),
        epochs=1,
        batch_size=16,
        frozen=["features"],
        on_device=False,
        progress=False,
    )
    end = _flat(result.train_state.params)
    for path in end:
        same = np.array_equal(end[path], start[path])
        assert same == path.startswith("features/"), path


# --------------------------------------------------------------------------- augmentation


CROP_CALLS: dict[bool, list] = {True: [], False: []}


@functools.cache
def _tiny_cropped(on_device: bool):
    """One epoch of TINY_NET with a random crop inside the step; its traces kept."""

    def crop(key, x):
        CROP_CALLS[on_device].append(x.shape)  # runs when traced, inside the compiled step
        return augment(key, x, crop_padding=2)

    return _tiny_fit(epochs=1, eval_batch_size=8, transform=crop, on_device=on_device)


@pytest.mark.parametrize("on_device", [True, False])
def test_transform_runs_inside_the_compiled_step(on_device):
    plain = _tiny_one_epoch()
    augmented = _tiny_cropped(on_device)
    calls = CROP_CALLS[on_device]
    assert calls and all(shape == (16, 6, 6, 1) for shape in calls)
    assert len(calls) <= 2  # traced, not called per step
    assert not _identical(plain.train_state.params, augmented.train_state.params)
    assert np.isfinite(augmented.history["train_loss"][0])


def test_transform_gives_the_same_run_in_both_loops():
    """The host loop applies the transform too (it was refused before), with the same keys."""
    dev, host = _tiny_cropped(True), _tiny_cropped(False)
    a, b = _flat(dev.train_state), _flat(host.train_state)
    assert a.keys() == b.keys()
    for k in a:
        scale = max(float(np.abs(b[k]).max()), 1e-30) if a[k].dtype.kind == "f" else 1.0
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6 * scale, err_msg=k)
    np.testing.assert_allclose(dev.history["train_loss"], host.history["train_loss"], rtol=1e-5)


# --------------------------------------------------------------------------- misc


def test_continue_from_a_given_train_state():
    first = _tiny_one_epoch().train_state
    copy = jax.tree.map(lambda a: a.copy(), first)  # fit donates the state it is given
    more = _tiny_fit(epochs=1, train_state=copy)
    assert int(more.train_state.step) == 12
    assert not _identical(more.train_state.params, first.params)


def test_too_few_examples_for_one_batch():
    with pytest.raises(ValueError, match="fewer than batch_size"):
        fit(TINY_NET, (TINY_TRAIN[0][:10], TINY_TRAIN[1][:10]), batch_size=16, progress=False)


# --------------------------------------------------------------------------- misuse


def _log_of_target_loss(out, y):
    """A regression loss that is -inf exactly for the batches holding a target of 0."""
    return jnp.mean(jnp.square(out[:, 0] - y)) + jnp.log(jnp.min(y))


# Example BAD is the 6th of step 3 (counted from 0) of epoch 0 for seed 0 and batch 16.
PERM0 = np.asarray(T.epoch_permutation(T.data_rng(0), 0, len(TINY_TRAIN[0])))
BAD = int(PERM0[3 * 16 + 5])
ZERO_TARGET = (TINY_TRAIN[0], np.where(np.arange(96) == BAD, 0.0, 1.0).astype(np.float32))


@pytest.mark.parametrize("on_device", [True, False])
def test_a_non_finite_loss_stops_at_its_step_before_checkpointing_it(
    tmp_path, monkeypatch, on_device
):
    # Chunks cut only at the checkpoint period (not also by the ~2 s time budget, which starts
    # at one step): chunks of steps 0..1 and 2..3, so step 3's chunk holds step 2's loss too.
    monkeypatch.setattr(FIT_MODULE, "CHUNK_SECONDS", None)
    chunks = []
    with pytest.raises(NonFiniteLossError) as info:
        fit(
            TINY_NET,
            ZERO_TARGET,
            loss_fn=_log_of_target_loss,
            epochs=2,
            batch_size=16,
            on_device=on_device,
            checkpoint_dir=tmp_path / "ckpt",
            checkpoint_every=2,
            callbacks=[_OnChunkEnd(lambda c: chunks.append(c.start))],
            progress=False,
        )
    error = info.value
    assert isinstance(error, FloatingPointError)
    assert (error.step, error.epoch, error.index, error.loss) == (3, 0, 3, -np.inf)
    assert "loss is -inf at global step 4 (epoch 1/2, step 4/6 of the epoch" in str(error)
    assert "after losses" in str(error)  # step 2 of the same chunk of 2 (steps 2, 3)
    assert chunks == [0]  # the chunk of steps 2..3 reached neither on_chunk_end ...
    assert Checkpointer(tmp_path / "ckpt").all_steps() == [2]  # ... nor the checkpoint


def test_stop_on_nonfinite_false_trains_on():
    result = fit(
        TINY_NET,
        ZERO_TARGET,
        loss_fn=_log_of_target_loss,
        epochs=1,
        batch_size=16,
        progress=False,
        stop_on_nonfinite=False,
    )
    assert int(result.train_state.step) == 6
    assert result.history["train_loss"] == [-np.inf]


def test_the_data_are_checked_before_anything_is_made(monkeypatch):
    made = []

    def recording(name, real):
        def made_here(*args, **kwargs):
            made.append(name)
            return real(*args, **kwargs)

        return made_here

    for name in ("make_train_step", "create_train_state"):
        monkeypatch.setattr(FIT_MODULE, name, recording(name, getattr(FIT_MODULE, name)))
    x, y = TINY_TRAIN
    for bad in [(x, y.astype(np.float32)), (x, y + 1), (np.where(x > 2, np.nan, x), y)]:
        with pytest.raises((TypeError, ValueError)):
            fit(TINY_NET, bad, progress=False)
    assert made == []
    fit(TINY_NET, (x, y), epochs=1, batch_size=16, progress=False)  # the recorders do record
    assert made == ["create_train_state", "make_train_step"]


def test_evaluate_checks_its_data_and_batch_size():
    ts = T.create_train_state(TINY_NET, (6, 6, 1), optax.adam(1e-2))
    step = T.make_eval_step(TINY_NET.apply, softmax_cross_entropy)
    x, y = TINY_VAL
    # evaluate_with(eval_step, ...) is the old evaluate; jcnn.evaluate(net, ...) the new one.
    runs = [
        lambda data, bs: evaluate_with(step, ts, data, bs),
        lambda data, bs: evaluate_net(TINY_NET, ts, data, batch_size=bs),
    ]
    for evaluate in runs:
        with pytest.raises(ValueError, match="evaluate: data is empty"):
            evaluate((x[:0], y[:0]), 8)
        with pytest.raises(ValueError, match="evaluate: batch_size must be a positive int"):
            evaluate((x, y), 0)
        with pytest.raises(TypeError, match="evaluate: data x has dtype int32"):
            evaluate((x.astype(np.int32), y), 8)
        assert set(evaluate((x, y), np.int64(8))) == {"loss", "accuracy"}
