"""StreamSource: Grain-backed batches of records with a deterministic order, per-record
randomness, a saveable position, shards, worker processes; and jcnn.fit over a source."""

from __future__ import annotations

import json
import time
from typing import Any

import jax
import numpy as np
import optax
import pytest

import jcnn
import jcnn.layers as L
from jcnn.data.stream import (
    LoadError,
    StreamSource,
    global_batch,
    normalize_on_device,
    order_seed,
    record_rng,
)
from jcnn.training.callbacks import Callback
from jcnn.training.checkpoint import Checkpointer

N, B = 40, 8
RECORDS = [np.full((4, 4, 3), i, np.uint8) for i in range(N)]


def noisy(record: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The record plus noise from its rng (so the per-record randomness shows); label = its id."""
    noise = rng.integers(0, 50, record.shape, dtype=np.uint8)
    return record + noise, int(record[0, 0, 0])


def fails_on_7(record: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    if int(record[0, 0, 0]) == 7:
        raise OSError("truncated file")
    return noisy(record, rng)


def source(**kwargs: Any) -> StreamSource:
    options: dict[str, Any] = dict(batch_size=B, seed=0, shard_index=0, shard_count=1)
    options.update(kwargs)
    load = options.pop("load", noisy)
    return StreamSource(options.pop("records", RECORDS), load, **options)


def epochs(src: StreamSource, count: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    return [list(src) for _ in range(count)]


def labels_of(epoch: list) -> np.ndarray:
    return np.concatenate([y for _, y in epoch])


def same_batches(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(xa, xb) and np.array_equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b)
    )


def test_batches_shapes_dtypes_and_len():
    src = source()
    batches = list(src)
    assert len(src) == N // B == len(batches)
    for x, y in batches:
        assert x.shape == (B, 4, 4, 3) and x.dtype == np.uint8
        assert y.shape == (B,) and y.dtype == np.int32
    assert len(source(batch_size=12)) == 3  # the partial batch is dropped
    assert len(source(batch_size=12, drop_remainder=False)) == 4


def test_the_order_is_a_permutation_per_epoch_new_each_epoch_same_per_seed():
    first = epochs(source(), 3)
    orders = [labels_of(e) for e in first]
    for order in orders:
        assert sorted(order.tolist()) == list(range(N))  # a permutation (N is a multiple of B)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert all(same_batches(a, b) for a, b in zip(first, epochs(source(), 3)))
    assert not np.array_equal(labels_of(list(source(seed=1))), orders[0])
    assert order_seed(0, 1) != order_seed(0, 2)


def test_each_record_gets_the_rng_of_seed_epoch_and_index():
    """The images are the records plus the noise of record_rng(seed, epoch, id), in any batch."""
    for epoch, batches in enumerate(epochs(source(seed=3), 2)):
        for x, y in batches:
            for image, i in zip(x, y):
                expected, _ = noisy(RECORDS[i], record_rng(3, epoch, int(i)))
                np.testing.assert_array_equal(image, expected)


def test_unshuffled_in_record_order_with_the_last_partial_batch():
    batches = list(source(batch_size=12, shuffle=False, drop_remainder=False))
    assert [len(y) for _, y in batches] == [12, 12, 12, 4]
    assert labels_of(batches).tolist() == list(range(N))


def test_state_is_json_and_restore_mid_epoch_is_bit_identical():
    whole = [b for e in epochs(source(), 2) for b in e]
    cut = source()
    taken = []
    for batch in cut:
        taken.append(batch)
        if len(taken) == 3:
            break
    state = json.loads(json.dumps(cut.state()))
    assert (state["epoch"], state["index"]) == (0, 3)
    again = source()
    again.restore(state)
    rest = [b for e in epochs(again, 2) for b in e]  # the rest of epoch 0, then epoch 1
    assert same_batches(taken + rest[: len(whole) - 3], whole)
    assert again.state()["epoch"] == 2


def test_restore_refuses_another_stream():
    state = source().state()
    with pytest.raises(ValueError, match="seed 0 .now 1"):
        source(seed=1).restore(state)
    with pytest.raises(ValueError, match="outside"):
        source().restore({**state, "index": 99})


def test_two_shards_are_disjoint_and_make_the_global_batch():
    whole = list(source())
    shards = [list(source(shard_index=k, shard_count=2)) for k in (0, 1)]
    assert all(len(s) == len(whole) for s in shards)
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shards):
        assert len(y0) == len(y1) == B // 2
        assert not set(y0.tolist()) & set(y1.tolist())
        np.testing.assert_array_equal(np.concatenate([y0, y1]), y)
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x)
    with pytest.raises(ValueError, match="multiple of 3"):
        source(shard_count=3)


def test_global_batch_on_a_mesh_of_one_process():
    mesh = jax.make_mesh((1,), ("batch",))
    x, y = next(iter(source()))
    gx, gy = global_batch((x, y), mesh, "batch")
    assert gx.shape == x.shape and gx.sharding.spec == jax.sharding.PartitionSpec("batch")
    np.testing.assert_array_equal(np.asarray(gy), y)


def test_two_workers_give_the_same_batches_and_a_load_error_names_the_record():
    """Workers restored mid-epoch 1 yield the in-process batches (rng and order do not depend
    on the workers); a load that raises in a worker is named in the main process."""
    in_process = epochs(source(), 2)[1][2:]
    workers = source(workers=2)
    workers.restore({**workers.state(), "epoch": 1, "index": 2})
    assert same_batches(list(workers), in_process)
    for count in (0, 2):
        with pytest.raises(LoadError, match=r"record 7 .*OSError: truncated file"):
            list(source(load=fails_on_7, workers=count))


def test_a_bad_image_is_named():
    def floats(record, rng):
        return record.astype(np.float32), 0

    with pytest.raises(LoadError, match="record 0 .*dtype float32"):
        source(load=floats).example_shape()


def test_normalize_on_device():
    norm = normalize_on_device((0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    x = np.full((2, 2, 3), 255, np.uint8)
    y, _ = norm.apply({}, {}, x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(np.asarray(y)[0, 0], [1.0, 3.0, 1.0])
    with pytest.raises(ValueError, match="2 values"):
        normalize_on_device((0.5, 0.5)).init(None, (2, 2, 3))


# fit over a source: 2 classes told apart by brightness, noise from each record's rng.
CLASS_RECORDS = [np.full((4, 4, 1), 60 + 120 * (i % 2), np.uint8) for i in range(32)]


def classes(record: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    noise = rng.integers(0, 40, record.shape, dtype=np.uint8)
    return record + noise, int(record[0, 0, 0] > 100)


NET = L.serial(normalize_on_device(0.5, 0.25), L.Flatten(), L.Dense(2))


def class_source(**kwargs: Any) -> StreamSource:
    options: dict[str, Any] = dict(batch_size=8, seed=0, shard_index=0, shard_count=1)
    options.update(kwargs)
    return StreamSource(CLASS_RECORDS, classes, **options)


class _Stop(Exception):
    pass


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_chunk_end(self, chunk):
        if chunk.step >= self.step:
            raise _Stop


def _fit(**kwargs):
    options: dict[str, Any] = dict(
        epochs=3, optimizer=optax.sgd(0.1), progress=False,
        val=class_source(shuffle=False, drop_remainder=False), checkpoint_every=2,
    )  # fmt: skip
    options.update(kwargs)
    return jcnn.fit(NET, class_source(), **options)


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def test_fit_trains_on_a_source_and_resumes_bit_identically(tmp_path):
    whole = _fit(checkpoint_dir=tmp_path / "whole")
    assert whole.history["epoch"] == [1, 2, 3]
    assert whole.history["val_accuracy"][-1] > 0.9
    assert whole.history["train_loss"][-1] < whole.history["train_loss"][0]
    ckpt = tmp_path / "cut"
    with pytest.raises(_Stop):
        _fit(checkpoint_dir=ckpt, callbacks=[_StopAt(6)])  # epoch 2, step 2 of 4
    assert Checkpointer(ckpt).latest_step() == 6
    resumed = _fit(checkpoint_dir=ckpt)
    assert resumed.resumed_from == 6
    assert all(
        np.array_equal(a, b)
        for a, b in zip(_leaves(resumed.train_state), _leaves(whole.train_state))
    )
    assert resumed.history["train_loss"] == whole.history["train_loss"]
    assert resumed.history["val_loss"] == whole.history["val_loss"]


def test_the_pipeline_lives_on_across_epochs_and_restarts_only_when_moved():
    src = source(batch_size=4)
    first = epochs(src, 1)
    pipeline = src._live[0]
    second = epochs(src, 1)  # reads on from the same Grain iterator (no new workers)
    assert src._live[0] is pipeline
    fresh = source(batch_size=4)
    assert same_batches(first[0] + second[0], [b for e in epochs(fresh, 2) for b in e])
    src.restore({**src.state(), "epoch": 0, "index": 1})  # moved: a new pipeline from there
    replay = epochs(src, 1)
    assert src._live[0] is not pipeline and same_batches(replay[0], first[0][1:])
    src.close()
    assert src._live is None


def test_read_ahead_is_bounded_by_the_buffer():
    """An idle reader holds at most ``buffer`` batches (plus the ones being loaded) ready: not
    Grain's default of 500 batches per process, which filled memory while a slow step ran."""
    loaded: list[int] = []

    def counted(record: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        loaded.append(1)
        return noisy(record, rng)

    records = [np.full((2, 2, 3), i % 256, np.uint8) for i in range(800)]
    src = source(records=records, load=counted, batch_size=4, buffer=3, threads=2)
    next(iter(src))
    time.sleep(0.5)
    assert 4 <= len(loaded) <= 4 * (1 + 3 + 2), len(loaded)  # not ~500 batches
    src.close()
    with pytest.raises(ValueError, match="threads=0"):
        source(threads=0)


def test_a_source_batches_itself_and_refuses_another_batch_size():
    src = class_source()
    with pytest.raises(
        ValueError, match=f"batch_size=3 but the training data source batches {src.batch_size}"
    ):
        jcnn.fit(NET, src, batch_size=3, epochs=1, progress=False)
    val = class_source(shuffle=False, drop_remainder=False)
    with pytest.raises(ValueError, match="eval_batch_size=7 but the validation data source"):
        jcnn.fit(NET, src, val=val, eval_batch_size=7, epochs=1, progress=False)
    ts = jcnn.fit(NET, src, batch_size=src.batch_size, epochs=1, progress=False).train_state
    with pytest.raises(ValueError, match="evaluate: batch_size=5 but the given data source"):
        jcnn.evaluate(NET, ts, val, batch_size=5)
    assert set(jcnn.evaluate(NET, ts, val)) >= {"loss", "accuracy"}


def test_an_unshuffled_source_on_two_shards_pads_its_last_batch():
    records = list(range(10))
    load = lambda r, rng: (np.full((1, 1, 1), r + 1, np.uint8), r)  # noqa: E731
    shards = [
        list(StreamSource(records, load, batch_size=4, shuffle=False, drop_remainder=False,
                          shard_index=k, shard_count=2))
        for k in range(2)
    ]  # fmt: skip
    assert [len(s) for s in shards] == [3, 3]  # the same steps on every process
    labels = [np.concatenate([a[1], b[1]]).tolist() for a, b in zip(*shards)]
    assert labels == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, -1, -1]]
    assert shards[1][2][0].shape == (2, 1, 1, 1) and not shards[1][2][0].any()  # zero images
    with pytest.raises(ValueError, match="shuffle=True with 2 shards"):
        StreamSource(records, load, batch_size=4, drop_remainder=False, shard_index=0,
                     shard_count=2)  # fmt: skip


def test_evaluate_on_a_source_leaves_the_padding_out():
    ts = jcnn.fit(NET, class_source(), epochs=1, progress=False).train_state
    x, y = next(iter(class_source(batch_size=len(CLASS_RECORDS), shuffle=False)))
    whole = jcnn.evaluate(NET, ts, (x.astype(np.float32), y))  # the same rows, as arrays
    # 7 is not a divisor of the records: the last batch is padded, its pad rows left out
    src = class_source(batch_size=7, shuffle=False, drop_remainder=False)
    assert len(CLASS_RECORDS) % 7
    got = jcnn.evaluate(NET, ts, src)
    assert got.keys() == whole.keys()
    for k in whole:
        np.testing.assert_allclose(got[k], whole[k], rtol=1e-5, err_msg=k)
