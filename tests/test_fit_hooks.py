"""The hooks of jcnn.fit: the train step fit builds (one per arguments, its placement of state
and data), the callbacks' per-chunk hook, their extra record entries (custom validation) and
early stopping."""

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
from jcnn.training import Callback, Chunk, fit, make_train_step
from jcnn.training.checkpoint import Checkpointer
from jcnn.training.losses import softmax_cross_entropy

FIT_MODULE = importlib.import_module("jcnn.training.fit")  # jcnn.fit is the function

NET = L.serial(L.Flatten(), L.Dense(3))
N, B = 48, 8  # 6 steps per epoch
X = np.random.default_rng(0).normal(size=(N, 2, 2, 1)).astype(np.float32)
Y = (np.arange(N) % 3).astype(np.int32)


def _fit(**kwargs):
    args = dict(optimizer=optax.sgd(0.1), epochs=2, batch_size=B, seed=1, progress=False)
    args.update(kwargs)
    return fit(NET, (X, Y), **args)


class _Hooks(Callback):
    """A callback of the given functions: ``on_chunk_end(chunk)``, ``extend_record(end)``,
    ``on_epoch_end(end)``."""

    def __init__(self, on_chunk_end=None, extend_record=None, on_epoch_end=None):
        self._chunk, self._extend, self._epoch = on_chunk_end, extend_record, on_epoch_end

    def on_chunk_end(self, chunk):
        if self._chunk is not None:
            self._chunk(chunk)

    def extend_record(self, end):
        return None if self._extend is None else self._extend(end)

    def on_epoch_end(self, end):
        return None if self._epoch is None else self._epoch(end)


# --------------------------------------------------------------------------- on_chunk_end


@functools.cache
def _chunks(on_device: bool) -> tuple[list[Chunk], object]:
    chunks: list[Chunk] = []

    def keep(chunk: Chunk) -> None:
        # The state is donated by the next chunk: keep a copy.
        chunks.append(chunk._replace(train_state=jax.tree.map(jnp.copy, chunk.train_state)))

    result = _fit(on_device=on_device, log_every=4, callbacks=[_Hooks(on_chunk_end=keep)])
    return chunks, result


def _cuts(chunks) -> list[tuple[int, int]]:
    """(epoch, index in the epoch after the chunk) of every chunk end."""
    return [(c.epoch, c.start + c.num_steps) for c in chunks]


@pytest.mark.parametrize("on_device", [True, False])
def test_chunks_end_every_log_every_steps_and_at_epoch_ends(on_device):
    chunks, result = _chunks(on_device)
    # 6 steps per epoch, log_every 4: every epoch's steps 4 and 6 end a chunk; the chunks are
    # consecutive, cover every step once and never cross a cut (the ~2 s time budget of the
    # loop may cut them further).
    cuts = _cuts(chunks)
    assert {(0, 4), (0, 6), (1, 4), (1, 6)} <= set(cuts)
    position = (0, 0)
    for c in chunks:
        if position[1] == 6:
            position = (position[0] + 1, 0)
        assert (c.epoch, c.start) == position
        assert c.num_steps >= 1 and c.start + c.num_steps <= (4 if c.start < 4 else 6)
        assert c.step == 6 * c.epoch + c.start + c.num_steps
        position = (c.epoch, c.start + c.num_steps)
    assert position == (1, 6)
    for c in chunks:
        assert set(c.metrics) == {"loss", "accuracy"}
        assert all(v.shape == (c.num_steps,) for v in c.metrics.values())
        assert int(c.train_state.step) == c.step
    # The epoch's train_loss is the mean of its steps' losses.
    for epoch in (0, 1):
        losses = np.concatenate([c.metrics["loss"] for c in chunks if c.epoch == epoch])
        np.testing.assert_allclose(result.history["train_loss"][epoch], losses.mean(), rtol=1e-6)
    assert chunks[-1].step == int(result.train_state.step)


def test_chunks_of_both_loops_agree_step_by_step():
    dev, _ = _chunks(True)
    host, _ = _chunks(False)
    assert _cuts(dev) == _cuts(host)
    for a, b in zip(dev, host, strict=True):
        np.testing.assert_allclose(a.metrics["loss"], b.metrics["loss"], rtol=1e-5)
        for u, v in zip(jax.tree.leaves(a.train_state), jax.tree.leaves(b.train_state)):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)


def test_log_every_and_checkpoint_every_both_cut_chunks(tmp_path):
    seen = []
    _fit(
        epochs=1,
        log_every=4,
        checkpoint_every=3,
        checkpoint_dir=tmp_path / "ckpt",
        callbacks=[_Hooks(on_chunk_end=lambda c: seen.append((c.start, c.num_steps)))],
    )
    ends = [start + n for start, n in seen]
    assert {3, 4, 6} <= set(ends)  # cuts at 3 (checkpoint), 4 (log), 6 (epoch)
    assert [start for start, _ in seen] == [0] + ends[:-1] and ends[-1] == 6  # consecutive
    assert Checkpointer(tmp_path / "ckpt").all_steps() == [3, 6]  # saves at checkpoints only


@pytest.mark.parametrize(
    "periods, expected",
    [
        (dict(log_every=4), [(0, 4), (4, 2), (0, 4), (4, 2)]),
        (dict(epochs=1, log_every=4, checkpoint_every=3), [(0, 3), (3, 1), (4, 2)]),
    ],
    ids=["log_every", "log_every_and_checkpoint_every"],
)
def test_log_every_alone_sets_the_chunks_a_callback_sees(tmp_path, periods, expected):
    """With log_every set, on_chunk_end comes exactly at its boundaries (and the checkpoint
    period's, and the epoch's end): a logger of every 4 steps is called every 4 steps, not also
    at the time budget's cuts (MIGRATION.md: "on_chunk_end is called more often than once per
    epoch unless log_every is set")."""
    seen = []
    if "checkpoint_every" in periods:
        periods = dict(periods, checkpoint_dir=tmp_path / "ckpt")
    _fit(callbacks=[_Hooks(on_chunk_end=lambda c: seen.append((c.start, c.num_steps)))], **periods)
    assert seen == expected


@pytest.mark.parametrize("name", ["log_every", "checkpoint_every"])
def test_chunk_sizes_must_be_positive(name):
    with pytest.raises(ValueError, match=f"{name} must be a positive int"):
        _fit(**{name: 0})


# --------------------------------------------------------------------------- extra entries, stop


def test_extend_record_is_a_custom_validation_recorded_in_the_history():
    calls = []

    def validate(end):
        calls.append(int(end.train_state.step))
        return {"val_kernel_sum": jnp.sum(end.train_state.params["Dense_0"]["kernel"])}

    result = _fit(callbacks=[_Hooks(extend_record=validate)])
    assert calls == [6, 12]  # after each epoch, with the epoch's final state
    assert set(result.history) == {
        "epoch",
        "seconds",
        "train_loss",
        "train_accuracy",
        "val_kernel_sum",
    }
    np.testing.assert_allclose(
        result.history["val_kernel_sum"][-1],
        float(jnp.sum(result.train_state.params["Dense_0"]["kernel"])),
        rtol=1e-6,
    )


def test_val_and_a_custom_validation_together_both_recorded():
    """(validate= and val= were exclusive; extend_record adds to val's entries.)"""
    extra = _Hooks(extend_record=lambda end: {"val_step": int(end.train_state.step)})
    result = _fit(val=(X, Y), callbacks=[extra])
    assert {"val_loss", "val_accuracy", "val_step"} <= set(result.history)
    assert result.history["val_step"] == [6, 12]
    assert len(result.history["val_loss"]) == 2


def test_on_epoch_end_returning_true_stops_the_run():
    seen = []

    def stop_after_epoch_2(end):
        seen.append(end.epoch)
        return end.epoch == 1

    result = _fit(epochs=5, callbacks=[_Hooks(on_epoch_end=stop_after_epoch_2)])
    assert seen == [0, 1]
    assert result.history["epoch"] == [1, 2]
    assert int(result.train_state.step) == 12


# --------------------------------------------------------------------------- the train step


def test_equal_arguments_share_one_step_compiled_once_for_several_runs():
    traces = []

    def loss(out, y):
        traces.append(out.shape)  # runs when a step is traced, not when it runs
        return softmax_cross_entropy(out, y)

    optimizer = optax.sgd(0.1)
    a = _fit(loss_fn=loss, optimizer=optimizer, on_device=False, seed=1)
    b = _fit(loss_fn=loss, optimizer=optimizer, on_device=False, seed=2)
    assert len(traces) == 1  # one train-step trace serves both seeds
    assert make_train_step(NET.apply, loss, optimizer) is make_train_step(
        NET.apply, loss, optimizer
    )
    kernels = [r.train_state.params["Dense_0"]["kernel"] for r in (a, b)]
    assert not np.array_equal(*kernels)  # other seeds, same compiled step
    _fit(loss_fn=loss, optimizer=optax.sgd(0.1), on_device=False)  # another optimiser: traced again
    assert len(traces) == 2


class _Spy:
    """A train step (or placement) that records its calls and delegates to the real one."""

    def __init__(self, real, used, name="train", **overrides):
        self._real, self._used, self._name, self._overrides = real, used, name, overrides

    def __getattr__(self, attr):
        if attr in self._overrides:
            return self._overrides[attr]
        return getattr(self._real, attr)

    def __call__(self, *args):
        self._used.append(self._name)
        return self._real(*args)


def test_fit_builds_its_step_from_its_arguments_and_uses_it(monkeypatch):
    """fit builds the step of its arguments (the optimiser wrapped by freeze), places the state
    once and runs that step and the eval step."""
    made, used = [], []
    real_make, real_eval = FIT_MODULE.make_train_step, FIT_MODULE.cached_eval_step

    def make(apply, loss_fn, optimizer, **kwargs):
        made.append(dict(apply=apply, loss_fn=loss_fn, optimizer=optimizer, **kwargs))
        step = real_make(apply, loss_fn, optimizer, **kwargs)

        def place_state(ts):
            used.append("place")
            return step.placement.place_state(ts)

        placement = _Spy(step.placement, used, place_state=place_state)
        return _Spy(step, used, placement=placement)

    def eval_step(*args):
        return _Spy(real_eval(*args), used, "eval")

    monkeypatch.setattr(FIT_MODULE, "make_train_step", make)
    monkeypatch.setattr(FIT_MODULE, "cached_eval_step", eval_step)
    opt = optax.sgd(0.1)
    _fit(
        epochs=1,
        optimizer=opt,
        on_device=False,
        val=(X[:8], Y[:8]),
        frozen=["Dense_0/bias"],
    )
    (spec,) = made
    assert spec["apply"] is NET.apply and spec["loss_fn"] is softmax_cross_entropy
    assert spec["transform"] is None and spec["microbatches"] == 1
    assert spec["optimizer"] is not opt  # wrapped by freeze before the step is made
    assert used == ["place"] + ["train"] * 6 + ["eval"]


def test_gradients_must_be_callable():
    with pytest.raises(TypeError, match="fit: gradients must be callable"):
        _fit(gradients="plain")


def test_host_loop_loads_the_rows_of_every_batch_and_places_them(monkeypatch):
    """The placement's batch_rows and place_batch: with rows 2..6 of each batch of 8, the train
    step gets those rows of the documented permutation, placed by place_batch (which runs in
    the prefetch thread)."""
    got, placed = [], []
    real_make = FIT_MODULE.make_train_step

    def train_step(ts, batch):
        got.append(np.asarray(batch[1]))  # labels are example indices here
        return ts, {"loss": jnp.zeros(())}

    def place(batch):
        placed.append(len(batch[1]))
        return jax.device_put(batch)

    class _Step(_Spy):
        def __call__(self, ts, batch):
            return train_step(ts, batch)

    def make_step(*args, **kwargs):
        step = real_make(*args, **kwargs)
        placement = _Spy(step.placement, [], batch_rows=lambda size: slice(2, 6), place_batch=place)
        return _Step(step, [], placement=placement)

    monkeypatch.setattr(FIT_MODULE, "make_train_step", make_step)
    ids = np.arange(N, dtype=np.int32)
    fit(
        L.serial(L.Flatten(), L.Dense(N)),  # the labels are example indices: N classes
        (X, ids),
        epochs=2,
        batch_size=B,
        seed=4,
        on_device=False,
        progress=False,
    )
    assert placed == [4] * 12
    for epoch in (0, 1):
        perm = np.asarray(T.epoch_permutation(T.data_rng(4), epoch, N))
        for i in range(6):
            np.testing.assert_array_equal(got[6 * epoch + i], perm[i * B : (i + 1) * B][2:6])
