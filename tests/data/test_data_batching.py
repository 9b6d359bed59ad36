"""Host-side batching (the one host iterator and its prefetch thread) and device-side
augmentation (numpy references, jit == eager)."""

from __future__ import annotations

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnn.data.batching import (
    augment,
    batches,
    crop_offsets,
    data_rng,
    epoch_permutation,
    flip_mask,
    num_batches,
    prefetched,
    random_crop,
    random_flip,
)

# --------------------------------------------------------------------------- batching


def data(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    images = np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2, 1)
    labels = np.arange(n, dtype=np.int32)  # label i belongs to image i
    return images, labels


def test_num_batches() -> None:
    assert num_batches(10, 3) == 3
    assert num_batches(10, 3, drop_remainder=False) == 4
    assert num_batches(9, 3, drop_remainder=False) == 3
    assert num_batches(2, 3) == 0 and num_batches(0, 3, False) == 0
    with pytest.raises(ValueError):
        num_batches(10, 0)


def test_batches_drop_remainder_and_coverage() -> None:
    images, labels = data(10)
    out = list(batches(images, labels, 3, seed=0))
    assert len(out) == num_batches(10, 3) == 3
    assert all(x.shape == (3, 2, 2, 1) and y.shape == (3,) for x, y in out)
    out = list(batches(images, labels, 3, seed=0, drop_remainder=False))
    assert [len(y) for _, y in out] == [3, 3, 3, 1]
    seen = np.concatenate([y for _, y in out])
    assert sorted(seen.tolist()) == list(range(10))  # every example exactly once
    for x, y in out:  # images stay paired with their labels
        np.testing.assert_array_equal(x, images[y])


def test_batches_determinism_per_epoch() -> None:
    images, labels = data(50)

    def order(**kw: object) -> list[int]:
        return np.concatenate([y for _, y in batches(images, labels, 10, **kw)]).tolist()

    assert order(seed=1, epoch=0) == order(seed=1, epoch=0)
    assert order(seed=1, epoch=0) != order(seed=1, epoch=1)
    assert order(seed=1, epoch=0) != order(seed=2, epoch=0)
    # The documented order: the epoch permutation of the seed's data stream (fit's order).
    assert order(seed=1, epoch=3) == np.asarray(epoch_permutation(data_rng(1), 3, 50)).tolist()
    assert order(shuffle=False) == list(range(50))
    assert order(seed=1) != list(range(50))


def test_batches_length_mismatch() -> None:
    images, labels = data(5)
    with pytest.raises(ValueError, match="differ in length"):
        next(batches(images, labels[:4], 2))


def test_batches_order_start_put_and_prefetch_agree() -> None:
    """An explicit order, a start batch, a put function: the same batches with or without the
    prefetch thread, and put sees every numpy batch."""
    images, labels = data(11)
    perm = np.random.default_rng(0).permutation(11)
    seen = []

    def put(batch):
        seen.append(batch[1].copy())
        return jax.device_put(batch)

    for prefetch in (0, 1, 3):
        seen.clear()
        got = list(batches(images, labels, 3, order=perm, start=1, put=put, prefetch=prefetch))
        assert len(got) == 2  # 11 // 3 = 3 batches, the first skipped
        for i, (x, y) in enumerate(got, start=1):
            assert isinstance(x, jax.Array)
            np.testing.assert_array_equal(y, perm[3 * i : 3 * i + 3])
            np.testing.assert_array_equal(x, images[perm[3 * i : 3 * i + 3]])
        assert [s.tolist() for s in seen] == [perm[3:6].tolist(), perm[6:9].tolist()]
    # A subset as the order (e.g. one process's rows of every batch).
    sub = list(batches(images, labels, 2, order=[7, 1, 4, 0]))
    assert [y.tolist() for _, y in sub] == [[7, 1], [4, 0]]


def test_batches_rejects_bad_start_and_order() -> None:
    images, labels = data(10)
    with pytest.raises(ValueError, match="start=4 outside 0..3"):
        batches(images, labels, 3, start=4)
    with pytest.raises(ValueError, match="not both"):
        batches(images, labels, 3, order=np.arange(10), seed=0)
    with pytest.raises(ValueError, match="1-D integers"):
        batches(images, labels, 3, order=np.zeros((2, 5), np.int64))


class Boom(RuntimeError):
    pass


def _consume_in_thread(iterator, timeout: float = 30.0) -> tuple[list, BaseException | None]:
    """Consumes ``iterator`` in a helper thread: a consumer that hangs fails the test (join
    times out) instead of stalling the suite."""
    got: list = []
    error: list[BaseException] = []

    def consume() -> None:
        try:
            for item in iterator:
                got.append(item)
        except BaseException as err:
            error.append(err)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the consumer hangs on a producer that died"
    return got, error[0] if error else None


@pytest.mark.parametrize("prefetch", [1, 2])
def test_a_failing_put_raises_in_the_consumer(prefetch: int) -> None:
    """put fails on the third batch (in the prefetch thread): the consumer gets the two batches
    before it, then the very exception, instead of waiting forever on the queue."""
    images, labels = data(10)
    calls = []

    def put(batch):
        calls.append(1)
        if len(calls) == 3:
            raise Boom("device full")
        return batch

    got, error = _consume_in_thread(
        batches(images, labels, 2, shuffle=False, put=put, prefetch=prefetch)
    )
    assert len(got) == 2
    assert isinstance(error, Boom) and str(error) == "device full"


def test_a_failing_read_raises_in_the_consumer() -> None:
    """The images themselves fail to load (a broken memory map, say) inside the thread."""

    class Broken:
        def __len__(self) -> int:
            return 8

        def __getitem__(self, index):
            raise OSError("read error")

    got, error = _consume_in_thread(
        batches(Broken(), np.arange(8), 4, order=np.arange(8), prefetch=2)
    )
    assert got == [] and isinstance(error, OSError) and "read error" in str(error)


def test_prefetch_thread_stops_when_the_consumer_stops() -> None:
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = prefetched(endless(), 2)
    assert [next(it), next(it)] == [0, 1]
    it.close()
    time.sleep(0.3)  # the producer notices the stop within one 0.05 s put timeout
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count  # no longer producing
    assert count <= 2 + 2 + 1  # consumed, queued, and at most one in hand


# --------------------------------------------------------------------------- augmentation


def images_batch(b: int = 16, h: int = 6, w: int = 5, c: int = 2) -> jnp.ndarray:
    return jnp.arange(b * h * w * c, dtype=jnp.float32).reshape(b, h, w, c) + 1.0  # no zeros


# one shape and padding throughout, so that each function compiles only once (keeps tests fast)
B, P = 16, 2


def raw_keys(n: int, stream: int = 0) -> list[jax.Array]:
    """Distinct raw uint32[2] keys built on the host (no per-key compile or slicing op)."""
    return [jnp.asarray(np.array([stream, i], dtype=np.uint32)) for i in range(n)]


def crop_reference(images: np.ndarray, offsets: np.ndarray, padding: int) -> np.ndarray:
    b, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    return np.stack([padded[i, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


def flip_reference(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.stack([img[:, ::-1] if m else img for img, m in zip(images, mask, strict=True)])


def test_random_crop_matches_numpy_reference() -> None:
    key = jax.random.PRNGKey(0)
    x = images_batch()
    out = random_crop(key, x, P)
    offsets = np.asarray(crop_offsets(key, B, P))
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(out), crop_reference(np.asarray(x), offsets, P))
    # independent of crop_offsets: every output is *some* in-range crop of the padded input
    padded = np.pad(np.asarray(x), ((0, 0), (P, P), (P, P), (0, 0)))
    h, w = x.shape[1:3]
    for i in range(B):
        assert any(
            np.array_equal(np.asarray(out[i]), padded[i, dy : dy + h, dx : dx + w])
            for dy in range(2 * P + 1)
            for dx in range(2 * P + 1)
        )


def test_crop_offsets_cover_the_range() -> None:
    keys = raw_keys(40)
    offsets = np.concatenate(
        [np.asarray(crop_offsets(k, B, P)) for k in keys]
    )  # same shape: 1 compile
    assert offsets.dtype == np.int32 and offsets.shape == (40 * B, 2)
    for col in range(2):
        assert sorted(np.unique(offsets[:, col]).tolist()) == list(range(2 * P + 1))  # all hit


def test_random_crop_padding_zero_and_uint8() -> None:
    x = images_batch()
    assert random_crop(jax.random.PRNGKey(0), x, 0) is x
    xu = jnp.asarray(np.random.default_rng(0).integers(1, 256, x.shape), dtype=jnp.uint8)
    out = random_crop(jax.random.PRNGKey(3), xu, P)
    assert out.dtype == jnp.uint8
    offsets = np.asarray(crop_offsets(jax.random.PRNGKey(3), B, P))
    np.testing.assert_array_equal(np.asarray(out), crop_reference(np.asarray(xu), offsets, P))
    with pytest.raises(ValueError):
        random_crop(jax.random.PRNGKey(0), x[0], 1)


def test_random_flip_matches_numpy_reference() -> None:
    key = jax.random.PRNGKey(4)
    x = images_batch()
    out = random_flip(key, x)
    mask = np.asarray(flip_mask(key, B))
    assert 0 < mask.sum() < B  # both outcomes occur
    np.testing.assert_array_equal(np.asarray(out), flip_reference(np.asarray(x), mask))


def test_flip_probability_about_half() -> None:
    keys = raw_keys(60, 1)
    mask = np.concatenate([np.asarray(flip_mask(k, B)) for k in keys])
    assert 0.42 < mask.mean() < 0.58


def test_augment_reference_and_jit() -> None:
    key = jax.random.PRNGKey(6)
    x = images_batch()
    out = augment(key, x, crop_padding=P, flip=True)
    k_crop, k_flip = jax.random.split(key)
    ref = crop_reference(np.asarray(x), np.asarray(crop_offsets(k_crop, B, P)), P)
    ref = flip_reference(ref, np.asarray(flip_mask(k_flip, B)))
    np.testing.assert_array_equal(np.asarray(out), ref)
    # jit == eager (covers random_crop and random_flip under an outer jit)
    jitted = jax.jit(lambda k, v: augment(k, v, crop_padding=P, flip=True))(key, x)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(out))
    assert augment(key, x) is x  # nothing requested


def test_augment_inside_scan() -> None:
    x = images_batch()

    def step(key: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        key, sub = jax.random.split(key)
        return key, augment(sub, x, crop_padding=P, flip=True)

    _, outs = jax.jit(lambda k: jax.lax.scan(step, k, None, length=3))(jax.random.PRNGKey(7))
    assert outs.shape == (3, *x.shape)
    key = jax.random.PRNGKey(7)
    for t in range(3):
        key, sub = jax.random.split(key)
        np.testing.assert_array_equal(
            np.asarray(outs[t]), np.asarray(augment(sub, x, crop_padding=P, flip=True))
        )
