"""Mixup and CutMix on the device: batch augmentations that mix images and labels.

Each example is paired with the batch REVERSED (example ``i`` with example ``B - 1 - i``, timm's
``flip`` pairing of ``Mixup(mode="batch")``), one mixing weight ``lam`` is drawn per batch, and
the labels become soft targets ``lam * onehot(y) + (1 - lam) * onehot(y[::-1])`` (timm's
``mixup_target``, label smoothing applied to the one-hots). Train on them with
:func:`jcnn.losses.soft_cross_entropy`.

* :func:`mixup` [Zhang et al. 2018]: ``lam * x + (1 - lam) * x[::-1]``, ``lam ~ Beta(a, a)``.
* :func:`cutmix` [Yun et al. 2019]: a box of area ``(1 - lam) H W`` around a uniform centre,
  clipped to the image (timm's ``rand_bbox``), pasted from the paired example; ``lam`` is then
  corrected to the clipped box's real area (timm's ``correct_lam``).
* :class:`MixupCutmix`: timm's ``Mixup`` as a batch transform for ``make_train_step`` and
  ``jcnn.fit`` (``transform=MixupCutmix(num_classes=10)``): it runs inside the step, so every
  loop (host, on-device, on a mesh) has it.

The lower-level :func:`mixup_apply`, :func:`cutmix_apply`, :func:`rand_box` and :func:`box_lam`
take ``lam`` and the box explicitly. Images are ``(B, H, W, C)`` (channels last), uint8 or
floating: they are mixed in float32 and returned as float32 in the same value range (a uint8
batch comes back in ``[0, 255]``). All functions are pure and jit-compatible; the settings
(``num_classes``, the alphas, probabilities, smoothing) are static Python numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jcnn.layers.arguments import count, probability, real_number
from jcnn.training.losses import check_labels

Box = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


def _check_images(where: str, images: Any) -> None:
    if jnp.ndim(images) != 4:
        raise ValueError(
            f"{where}: expects (B, H, W, C) images (channels last), got shape {jnp.shape(images)}"
        )


def _check_batch(where: str, images: Any, labels: Any) -> None:
    _check_images(where, images)
    check_labels(where, labels)
    if jnp.shape(labels)[0] != jnp.shape(images)[0]:
        raise ValueError(
            f"{where}: {jnp.shape(images)[0]} images but {jnp.shape(labels)[0]} labels: give one "
            "integer label per image"
        )


def _smoothing(value: Any, where: str) -> float:
    return probability(value, f"{where}: label_smoothing", hint="(0 for plain one-hot targets)")


def mix_targets(
    labels: jax.Array, lam: Any, *, num_classes: int, label_smoothing: float = 0.0
) -> jax.Array:
    """Soft targets ``lam * onehot(y) + (1 - lam) * onehot(y[::-1])`` (timm's ``mixup_target``).

    The one-hots are smoothed first: ``off = label_smoothing / K`` everywhere and
    ``1 - label_smoothing + off`` at the label, so each row sums to 1.

    Args:
        labels: integer class labels.
        lam: the weight of each example's own label (a scalar, Python or traced).
        num_classes: ``K``.
        label_smoothing: in ``[0, 1)``.

    Returns:
        float32 soft targets.

    Shapes:
        labels: (B,); output: (B, K).

    Example:
        >>> mix_targets(jnp.array([0, 2]), 0.75, num_classes=3).tolist()
        [[0.75, 0.0, 0.25], [0.25, 0.0, 0.75]]
    """
    k = count(num_classes, "mix_targets: num_classes")
    smoothing = _smoothing(label_smoothing, "mix_targets")
    off = smoothing / k
    on = 1.0 - smoothing + off
    one_hot = jax.nn.one_hot(labels, k, dtype=jnp.float32) * (on - off) + off
    lam = jnp.asarray(lam, jnp.float32)
    return lam * one_hot + (1.0 - lam) * one_hot[::-1]


def mixup_apply(
    images: jax.Array,
    labels: jax.Array,
    lam: Any,
    *,
    num_classes: int,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Mixup with a given ``lam``: ``lam * x + (1 - lam) * x[::-1]`` and :func:`mix_targets`.

    Args:
        images: a batch, uint8 or floating.
        labels: integer class labels.
        lam: the mixing weight in ``[0, 1]`` (scalar).
        num_classes, label_smoothing: as :func:`mix_targets`.

    Returns:
        ``(images, soft_labels)``: float32 images (same value range) and float32 targets.

    Shapes:
        images: (B, H, W, C); labels: (B,); output: (B, H, W, C) and (B, K).
    """
    _check_batch("mixup", images, labels)
    x = jnp.asarray(images, jnp.float32)
    lam = jnp.asarray(lam, jnp.float32)
    mixed = lam * x + (1.0 - lam) * x[::-1]
    targets = mix_targets(labels, lam, num_classes=num_classes, label_smoothing=label_smoothing)
    return mixed, targets


def rand_box(key: jax.Array, lam: Any, height: int, width: int) -> Box:
    """A CutMix box of area about ``(1 - lam) H W``, as timm's ``rand_bbox`` (no margin).

    ``cut_h = int(H * sqrt(1 - lam))`` (likewise ``cut_w``), a centre ``cy ~ U{0..H-1}``,
    ``cx ~ U{0..W-1}``, and the rows ``[clip(cy - cut_h // 2), clip(cy + cut_h // 2))`` (clipped
    to ``[0, H]``), likewise the columns.

    Args:
        key: PRNG key (split into the centre's row and column keys).
        lam: the mixing weight (scalar).
        height, width: the images' ``H`` and ``W`` (static).

    Returns:
        ``(y_low, y_high, x_low, x_high)``, int32 scalars; the box is
        ``[y_low, y_high) x [x_low, x_high)`` and may be empty.
    """
    ratio = jnp.sqrt(1.0 - jnp.asarray(lam, jnp.float32))
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (), 0, height, dtype=jnp.int32)
    cx = jax.random.randint(kx, (), 0, width, dtype=jnp.int32)
    y_low = jnp.clip(cy - cut_h // 2, 0, height)
    y_high = jnp.clip(cy + cut_h // 2, 0, height)
    x_low = jnp.clip(cx - cut_w // 2, 0, width)
    x_high = jnp.clip(cx + cut_w // 2, 0, width)
    return y_low, y_high, x_low, x_high


def box_lam(box: Box, height: int, width: int) -> jax.Array:
    """``1 - area(box) / (H W)``: the weight of the kept image (timm's ``correct_lam``).

    Example:
        >>> float(box_lam((0, 2, 1, 3), 4, 4))
        0.75
    """
    y_low, y_high, x_low, x_high = (jnp.asarray(v, jnp.int32) for v in box)
    area = (y_high - y_low) * (x_high - x_low)
    return 1.0 - area.astype(jnp.float32) / float(height * width)


def cutmix_apply(
    images: jax.Array,
    labels: jax.Array,
    box: Box,
    *,
    num_classes: int,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """CutMix with a given box: the box of each image replaced by the paired image's.

    The targets are :func:`mix_targets` with ``lam = box_lam(box, H, W)``, the box's real
    area (timm's ``correct_lam``).

    Args:
        images: a batch, uint8 or floating.
        labels: integer class labels.
        box: ``(y_low, y_high, x_low, x_high)`` (:func:`rand_box`; ints or int scalars).
        num_classes, label_smoothing: as :func:`mix_targets`.

    Returns:
        ``(images, soft_labels)``: float32 images (same value range) and float32 targets.

    Shapes:
        images: (B, H, W, C); labels: (B,); output: (B, H, W, C) and (B, K).
    """
    _check_batch("cutmix", images, labels)
    height, width = images.shape[1], images.shape[2]
    x = jnp.asarray(images, jnp.float32)
    y_low, y_high, x_low, x_high = (jnp.asarray(v, jnp.int32) for v in box)
    rows = jnp.arange(height)
    cols = jnp.arange(width)
    inside_rows = (rows >= y_low) & (rows < y_high)
    inside_cols = (cols >= x_low) & (cols < x_high)
    inside = inside_rows[:, None] & inside_cols[None, :]
    mixed = jnp.where(inside[None, :, :, None], x[::-1], x)
    lam = box_lam(box, height, width)
    targets = mix_targets(labels, lam, num_classes=num_classes, label_smoothing=label_smoothing)
    return mixed, targets


def _alpha(value: Any, name: str) -> float:
    return real_number(value, name, low=0, open_low=True, finite=True, hint="(Beta(alpha, alpha))")


def mixup(
    key: jax.Array,
    images: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    alpha: float = 0.2,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Mixup: ``lam ~ Beta(alpha, alpha)``, example ``i`` mixed with example ``B - 1 - i``.

    Args:
        key: PRNG key (``lam`` is ``jax.random.beta(key, alpha, alpha)``).
        images: a batch, uint8 or floating.
        labels: integer class labels in ``[0, num_classes)``.
        num_classes: ``K``.
        alpha: the Beta concentration, > 0.
        label_smoothing: applied to the one-hots (:func:`mix_targets`).

    Returns:
        ``(images, soft_labels)`` as :func:`mixup_apply`.

    Shapes:
        images: (B, H, W, C); labels: (B,); output: (B, H, W, C) float32 and (B, K) float32.
    """
    a = _alpha(alpha, "mixup: alpha")
    lam = jax.random.beta(key, a, a)
    return mixup_apply(
        images, labels, lam, num_classes=num_classes, label_smoothing=label_smoothing
    )


def cutmix(
    key: jax.Array,
    images: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    alpha: float = 1.0,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """CutMix: ``lam ~ Beta(alpha, alpha)``, a box from :func:`rand_box`, lam corrected.

    The key is split as ``lam_key, box_key = jax.random.split(key)``. Example ``i`` receives
    the box of example ``B - 1 - i``; the soft labels use the clipped box's real area.

    Args:
        key: PRNG key.
        images: a batch, uint8 or floating.
        labels: integer class labels in ``[0, num_classes)``.
        num_classes: ``K``.
        alpha: the Beta concentration, > 0.
        label_smoothing: applied to the one-hots (:func:`mix_targets`).

    Returns:
        ``(images, soft_labels)`` as :func:`cutmix_apply`.

    Shapes:
        images: (B, H, W, C); labels: (B,); output: (B, H, W, C) float32 and (B, K) float32.
    """
    a = _alpha(alpha, "cutmix: alpha")
    _check_images("cutmix", images)
    lam_key, box_key = jax.random.split(key)
    lam = jax.random.beta(lam_key, a, a)
    box = rand_box(box_key, lam, images.shape[1], images.shape[2])
    return cutmix_apply(
        images, labels, box, num_classes=num_classes, label_smoothing=label_smoothing
    )


@dataclasses.dataclass(frozen=True)
class MixupCutmix:
    """timm's ``Mixup`` (batch mode) as a batch transform: ``(images, int labels)`` to
    ``(float32 images, float32 soft labels (B, K))``.

    Per call: with probability ``prob`` the batch is mixed (otherwise ``lam = 1``: the images
    unchanged, the targets the smoothed one-hots); it is CutMix with probability
    ``switch_prob`` when both alphas are > 0 (only the method whose alpha is > 0 otherwise).
    The key is split as ``switch, lam, apply, box = jax.random.split(key, 4)``.

    A value: equal (and equally hashed) when the settings are, so equal steps share their
    compiled programs. ``on_batch = True`` tells ``make_train_step`` to call it on the whole
    batch ``(x, y)`` (not on the images alone); train with
    :func:`jcnn.losses.soft_cross_entropy`, which also takes the integer labels of validation.

    Attributes:
        num_classes: ``K``.
        mixup_alpha, cutmix_alpha: Beta concentrations (>= 0; 0 turns that method off).
        switch_prob: probability of CutMix when both are on.
        prob: probability of mixing a batch at all.
        label_smoothing: applied to the one-hots.

    Example:
        >>> mix = MixupCutmix(num_classes=3)
        >>> x, y = mix(jax.random.key(0), (jnp.zeros((4, 8, 8, 1), jnp.uint8), jnp.arange(4) % 3))
        >>> x.dtype, y.shape, bool(jnp.allclose(y.sum(-1), 1))
        (dtype('float32'), (4, 3), True)
    """

    num_classes: int
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5
    prob: float = 1.0
    label_smoothing: float = 0.1

    on_batch: ClassVar[bool] = True

    def __post_init__(self) -> None:
        count(self.num_classes, "MixupCutmix: num_classes")
        for name in ("mixup_alpha", "cutmix_alpha"):
            real_number(getattr(self, name), f"MixupCutmix: {name}", low=0, finite=True)
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError(
                "MixupCutmix: mixup_alpha and cutmix_alpha are both 0, so nothing would be mixed: "
                "give one of them > 0 (timm's defaults are 0.8 and 1.0), or use no transform"
            )
        for name in ("switch_prob", "prob"):
            probability(getattr(self, name), f"MixupCutmix: {name}", include_one=True)
        _smoothing(self.label_smoothing, "MixupCutmix")

    def __call__(self, key: jax.Array, batch: tuple[Any, Any]) -> tuple[jax.Array, jax.Array]:
        """Mixes one batch ``(images, labels)``.

        Args:
            key: PRNG key.
            batch: ``(images, labels)``: uint8 or floating images, integer labels.

        Returns:
            ``(images, soft_labels)``, both float32.

        Shapes:
            images: (B, H, W, C); labels: (B,); output: (B, H, W, C) and (B, K).
        """
        images, labels = batch
        _check_batch("MixupCutmix", images, labels)
        height, width = images.shape[1], images.shape[2]
        switch_key, lam_key, apply_key, box_key = jax.random.split(key, 4)
        k, smoothing = self.num_classes, self.label_smoothing

        def lam_of(alpha: float) -> jax.Array:
            lam = jax.random.beta(lam_key, float(alpha), float(alpha))
            if self.prob < 1:
                lam = jnp.where(jax.random.uniform(apply_key) < self.prob, lam, 1.0)
            return lam

        def by_mixup(operands: tuple[Any, Any]) -> tuple[jax.Array, jax.Array]:
            lam = lam_of(self.mixup_alpha)
            return mixup_apply(*operands, lam, num_classes=k, label_smoothing=smoothing)

        def by_cutmix(operands: tuple[Any, Any]) -> tuple[jax.Array, jax.Array]:
            box = rand_box(box_key, lam_of(self.cutmix_alpha), height, width)
            return cutmix_apply(*operands, box, num_classes=k, label_smoothing=smoothing)

        if self.cutmix_alpha == 0:
            return by_mixup((images, labels))
        if self.mixup_alpha == 0:
            return by_cutmix((images, labels))
        use_cutmix = jax.random.uniform(switch_key) < self.switch_prob
        return jax.lax.cond(use_cutmix, by_cutmix, by_mixup, (images, labels))
