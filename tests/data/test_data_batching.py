"""Host-side batching and device-side augmentation (numpy references, jit == eager)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnn.data.batching import (
    augment,
    batches,
    crop_offsets,
    epoch_permutation,
    flip_mask,
    num_batches,
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
    assert order(seed=1, epoch=3) == epoch_permutation(50, 1, 3).tolist()
    assert order(shuffle=False) == list(range(50))
    assert order(seed=1) != list(range(50))


def test_batches_length_mismatch() -> None:
    images, labels = data(5)
    with pytest.raises(ValueError, match="differ in length"):
        next(batches(images, labels[:4], 2))


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
