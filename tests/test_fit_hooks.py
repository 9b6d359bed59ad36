"""The hooks of jcnn.fit.fit: the step factory (and its placement of state and data), the
per-chunk callback, the validation hook and early stopping."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jcnn import layers as L
from jcnn import train as T
from jcnn.checkpoint import Checkpointer
from jcnn.fit import Chunk, fit
from jcnn.losses import softmax_cross_entropy

NET = L.serial(L.Flatten(), L.Dense(3))
N, B = 48, 8  # 6 steps per epoch
X = np.random.default_rng(0).normal(size=(N, 2, 2, 1)).astype(np.float32)
Y = (np.arange(N) % 3).astype(np.int32)


def _fit(**kwargs):
    args = dict(optimizer=optax.sgd(0.1), epochs=2, batch_size=B, seed=1, progress=False)
    args.update(kwargs)
    return fit(NET, (X, Y), **args)


# --------------------------------------------------------------------------- on_chunk_end


@functools.cache
def _chunks(on_device: bool) -> tuple[list[Chunk], object]:
    chunks: list[Chunk] = []

    def keep(chunk: Chunk) -> None:
        # The state is donated by the next chunk: keep a copy.
        chunks.append(chunk._replace(train_state=jax.tree.map(jnp.copy, chunk.train_state)))

    result = _fit(on_device=on_device, log_every=4, on_chunk_end=keep)
    return chunks, result


@pytest.mark.parametrize("on_device", [True, False])
def test_chunks_end_every_log_every_steps_and_at_epoch_ends(on_device):
    chunks, result = _chunks(on_device)
    # 6 steps per epoch, log_every 4: chunks of 4 and 2 in each epoch.
    assert [(c.epoch, c.start, c.num_steps, c.step) for c in chunks] == [
        (0, 0, 4, 4),
        (0, 4, 2, 6),
        (1, 0, 4, 10),
        (1, 4, 2, 12),
    ]
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
    for a, b in zip(dev, host):
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
        on_chunk_end=lambda c: seen.append((c.start, c.num_steps)),
    )
    assert seen == [(0, 3), (3, 1), (4, 2)]  # cuts at 3 (checkpoint), 4 (log), 6 (epoch)
    assert Checkpointer(tmp_path / "ckpt").all_steps() == [3, 6]  # saves at checkpoints only


@pytest.mark.parametrize("name", ["log_every", "checkpoint_every"])
def test_chunk_sizes_must_be_positive(name):
    with pytest.raises(ValueError, match=f"{name} must be a positive int"):
        _fit(**{name: 0})


# --------------------------------------------------------------------------- validate, early stop


def test_validate_hook_is_recorded_with_the_val_prefix():
    calls = []

    def validate(ts):
        calls.append(int(ts.step))
        return {"kernel_sum": jnp.sum(ts.params["Dense_0"]["kernel"])}

    result = _fit(validate=validate)
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


def test_val_and_validate_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        _fit(val=(X, Y), validate=lambda ts: {})


def test_on_epoch_end_returning_true_stops_the_run():
    seen = []
    result = _fit(epochs=5, on_epoch_end=lambda epoch, record: seen.append(epoch) or epoch == 1)
    assert seen == [0, 1]
    assert result.history["epoch"] == [1, 2]
    assert int(result.train_state.step) == 12


# --------------------------------------------------------------------------- the step factory


def test_a_cached_default_factory_compiles_once_for_several_runs():
    traces = []

    def loss(out, y):
        traces.append(out.shape)  # runs when a step is traced, not when it runs
        return softmax_cross_entropy(out, y)

    cached = functools.cache(T.default_steps)
    optimizer = optax.sgd(0.1)
    a = _fit(loss_fn=loss, optimizer=optimizer, steps=cached, on_device=False, seed=1)
    b = _fit(loss_fn=loss, optimizer=optimizer, steps=cached, on_device=False, seed=2)
    assert len(traces) == 1  # one train-step trace serves both seeds
    assert cached.cache_info().hits == 1
    kernels = [r.train_state.params["Dense_0"]["kernel"] for r in (a, b)]
    assert not np.array_equal(*kernels)  # other seeds, same compiled step
    _fit(loss_fn=loss, optimizer=optimizer, on_device=False)  # the uncached default: traced again
    assert len(traces) == 2


def test_factory_gets_the_spec_and_its_functions_are_used():
    """A factory wrapping the default one: it sees the spec (frozen optimiser included), and fit
    runs its train step, its eval step and its state placement."""
    specs, used = [], []

    def factory(spec):
        specs.append(spec)
        steps = T.default_steps(spec)

        def train_step(ts, batch):
            used.append("train")
            return steps.train_step(ts, batch)

        def eval_step(ts, batch):
            used.append("eval")
            return steps.eval_step(ts, batch)

        def place_state(ts):
            used.append("place")
            return jax.tree.map(jnp.copy, ts)

        return steps._replace(train_step=train_step, eval_step=eval_step, place_state=place_state)

    opt = optax.sgd(0.1)
    _fit(
        epochs=1,
        optimizer=opt,
        on_device=False,
        val=(X[:8], Y[:8]),
        frozen=["Dense_0/bias"],
        steps=factory,
    )
    (spec,) = specs
    assert spec.apply is NET.apply and spec.loss_fn is softmax_cross_entropy
    assert spec.batch_size == B and spec.transform is None
    assert spec.optimizer is not opt  # wrapped by freeze before the steps are made
    assert used == ["place"] + ["train"] * 6 + ["eval"]
    with pytest.raises(ValueError, match="no run_epoch"):
        _fit(steps=lambda spec: T.default_steps(spec)._replace(run_epoch=None))
    with pytest.raises(ValueError, match="no train_step"):
        _fit(on_device=False, steps=lambda spec: T.default_steps(spec)._replace(train_step=None))


def test_host_loop_loads_the_rows_of_every_batch_and_places_them():
    """batch_rows and place_data: with rows 2..6 of each batch of 8, the train step gets those
    rows of the documented permutation, placed by place_data (which runs in the prefetch
    thread)."""
    got, placed = [], []

    def train_step(ts, batch):
        got.append(np.asarray(batch[1]))  # labels are example indices here
        return ts, {"loss": jnp.zeros(())}

    def place(batch):
        placed.append(len(batch[1]))
        return jax.device_put(batch)

    def factory(spec):
        return T.Steps(train_step=train_step, place_data=place, batch_rows=slice(2, 6))

    ids = np.arange(N, dtype=np.int32)
    fit(
        L.serial(L.Flatten(), L.Dense(N)),  # the labels are example indices: N classes
        (X, ids),
        epochs=2,
        batch_size=B,
        seed=4,
        on_device=False,
        progress=False,
        steps=factory,
    )
    assert placed == [4] * 12
    for epoch in (0, 1):
        perm = np.asarray(T.epoch_permutation(T.data_rng(4), epoch, N))
        for i in range(6):
            np.testing.assert_array_equal(got[6 * epoch + i], perm[i * B : (i + 1) * B][2:6])
