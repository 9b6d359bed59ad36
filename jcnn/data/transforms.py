"""ImageNet-style image transforms on the host (data-loader workers), torchvision's algorithms.

Every function takes a uint8 RGB image ``(H, W, 3)`` (NumPy) and returns a new uint8 image; the
random ones take a random source first. The resizing ones (:func:`resize`,
:func:`resize_shorter`, :func:`resized_crop`, :func:`random_resized_crop`,
:func:`train_transform`, :func:`eval_transform`) also take an RGB ``PIL.Image`` as
:func:`jcnn.data.decode.open_image` gives it, with the same pixels and no NumPy round trip (a
third of a 500x375 JPEG's loading time). Pixels are computed by Pillow exactly as torchvision's
PIL path computes them (antialiased resizing, ``ImageEnhance``), so a transform given the same
random decisions gives torchvision's pixels. The random decisions follow torchvision's sampling
rules and draw order; each random transform has a ``*_params`` function that makes them alone.

Randomness: a :class:`RandomSource` is anything with ``uniform(low, high)`` and
``integers(low, high)`` (high exclusive): a ``numpy.random.Generator``, or a recorded sequence of
draws (the tests replay torchvision's). An ``int`` is taken as a seed for
``numpy.random.default_rng``.

Order of :func:`train_transform`: random-resized-crop, horizontal flip, colour jitter,
TrivialAugmentWide, random erasing (the order of torchvision's classification reference
recipe). :func:`eval_transform` is ``Resize(256) + CenterCrop(224)`` for ``image_size=224``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image, ImageEnhance

from jcnn.data.autoaugment import trivial_augment_wide


class RandomSource(Protocol):
    """What the random transforms draw from (``numpy.random.Generator`` is one)."""

    def uniform(self, low: float, high: float) -> float:
        """A float uniform in ``[low, high)``."""
        ...

    def integers(self, low: int, high: int) -> int:
        """An int uniform in ``[low, high)``."""
        ...


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def _rng(rng: RandomSource | int) -> RandomSource:
    return np.random.default_rng(rng) if isinstance(rng, int) else rng


def _check(image: np.ndarray, name: str = "image") -> np.ndarray:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3):
        got = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{name}: expected a uint8 RGB array (H, W, 3), got {got}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {image.dtype}")
    return image


#: An image the resizing transforms take: uint8 ``(H, W, 3)`` or an RGB ``PIL.Image``.
AnyImage = np.ndarray | Image.Image


def _pil(image: AnyImage, name: str = "image") -> Image.Image:
    """``image`` as an RGB ``PIL.Image`` (a NumPy image checked first)."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"{name}: expected an RGB PIL image, got mode {image.mode!r}")
        return image
    return Image.fromarray(_check(image, name), "RGB")


def _height_width(image: AnyImage) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.height, image.width
    h, w = _check(image).shape[:2]
    return int(h), int(w)


def _resample(interpolation: str) -> Image.Resampling:
    if interpolation not in _RESAMPLE:
        raise ValueError(f"interpolation {interpolation!r}: expected one of {sorted(_RESAMPLE)}")
    return _RESAMPLE[interpolation]


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize(
    image: AnyImage, size: int | Sequence[int], interpolation: str = "bilinear"
) -> np.ndarray:
    """Resize to ``size`` = ``(h, w)`` (or ``s`` for ``(s, s)``) with Pillow (antialiased).

    Args:
        image: uint8 ``(H, W, 3)``.
        size: output ``(h, w)`` or one int for a square.
        interpolation: ``nearest``, ``bilinear`` (default), ``bicubic``, ``box``, ``hamming``,
            ``lanczos``.

    Returns:
        uint8 ``(h, w, 3)``.
    """
    h, w = _size2(size)
    return np.asarray(_pil(image).resize((w, h), _resample(interpolation)), dtype=np.uint8)


def resize_shorter(image: AnyImage, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """Resize so the shorter side is ``size``, keeping the aspect (torchvision ``Resize(int)``).

    The longer side becomes ``int(size * long / short)`` (truncated, as torchvision); an image
    already at that size is returned as is.

    Shapes:
        ``(H, W, 3)`` -> ``(size, int(size * W / H), 3)`` when ``H <= W``, else transposed.

    Example:
        >>> resize_shorter(np.zeros((30, 40, 3), np.uint8), 12).shape
        (12, 16, 3)
    """
    h, w = _height_width(image)
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_h, new_w) == (h, w):
        return np.array(image, dtype=np.uint8)  # a copy
    return resize(image, (new_h, new_w), interpolation)


def center_crop(image: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """The centre ``size`` = ``(h, w)`` window (torchvision ``CenterCrop``), zero-padded if larger.

    The top-left corner is ``round((H - h) / 2), round((W - w) / 2)``; a crop larger than the
    image pads it with zeros first (``(h - H) // 2`` before, the rest after), as torchvision.

    Example:
        >>> img = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
        >>> center_crop(img, 3)[:, :, 0].tolist()
        [[18, 21, 24], [33, 36, 39], [48, 51, 54]]
    """
    ch, cw = _size2(size)
    h, w = _check(image).shape[:2]
    if ch > h or cw > w:
        top, left = max(ch - h, 0) // 2, max(cw - w, 0) // 2
        bottom, right = (max(ch - h, 0) + 1) // 2, (max(cw - w, 0) + 1) // 2
        image = np.pad(image, ((top, bottom), (left, right), (0, 0)))
        h, w = image.shape[:2]
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return image[top : top + ch, left : left + cw].copy()


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right. ``(H, W, 3) -> (H, W, 3)``."""
    return _check(image)[:, ::-1].copy()


def random_resized_crop_params(
    rng: RandomSource | int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """Draw a crop box as torchvision's ``RandomResizedCrop.get_params``.

    Up to 10 attempts: area fraction uniform in ``scale``, aspect ratio ``w/h`` log-uniform in
    ``ratio``, ``w = round(sqrt(area * ratio))``, ``h = round(sqrt(area / ratio))``; the first box
    that fits is placed uniformly. Otherwise the centre crop of the whole image, clamped to the
    ratio range. Draw order per attempt: ``uniform`` (area), ``uniform`` (log ratio), then
    ``integers`` (top), ``integers`` (left) on success.

    Args:
        rng: random source or seed.
        height, width: the image's size.
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of the crop's aspect ratio ``w / h``.

    Returns:
        ``(top, left, h, w)``.

    Example:
        >>> top, left, h, w = random_resized_crop_params(0, 30, 40)
        >>> 0 <= top <= 30 - h and 0 <= left <= 40 - w
        True
    """
    rng = _rng(rng)
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * float(rng.uniform(scale[0], scale[1]))
        aspect = math.exp(float(rng.uniform(log_lo, log_hi)))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(
    image: AnyImage,
    top: int,
    left: int,
    h: int,
    w: int,
    size: int | Sequence[int],
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Crop the box ``(top, left, h, w)`` and resize it to ``size`` (torchvision ``resized_crop``).

    Returns:
        uint8 ``(size_h, size_w, 3)``.
    """
    img = _pil(image).crop((left, top, left + w, top + h))
    sh, sw = _size2(size)
    return np.asarray(img.resize((sw, sh), _resample(interpolation)), dtype=np.uint8)


def resize_box(
    image: AnyImage,
    box: tuple[float, float, float, float],
    size: int | Sequence[int],
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Resize the region ``box = (left, top, right, bottom)`` (pixel edges, floats allowed) to
    ``size`` in one antialiased resampling (Pillow's ``resize(box=...)``: unlike
    :func:`resized_crop`, the filter may read the pixels just outside the box).

    Example:
        >>> resize_box(np.zeros((30, 40, 3), np.uint8), (2.5, 0.0, 22.5, 10.0), 8).shape
        (8, 8, 3)
    """
    sh, sw = _size2(size)
    img = _pil(image).resize((sw, sh), _resample(interpolation), box=box)
    return np.asarray(img, dtype=np.uint8)


def random_resized_crop(
    rng: RandomSource | int,
    image: AnyImage,
    size: int | Sequence[int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bilinear",
) -> np.ndarray:
    """torchvision's ``RandomResizedCrop``: :func:`random_resized_crop_params` + :func:`resized_crop`.

    Shapes:
        ``(H, W, 3) -> (size_h, size_w, 3)``

    Example:
        >>> random_resized_crop(0, np.zeros((30, 40, 3), np.uint8), 16).shape
        (16, 16, 3)
    """
    height, width = _height_width(image)
    top, left, h, w = random_resized_crop_params(rng, height, width, scale, ratio)
    return resized_crop(image, top, left, h, w, size, interpolation)


def _range(
    value: float | tuple[float, float], center: float, clip: bool
) -> tuple[float, float] | None:
    lo, hi = (center - value, center + value) if isinstance(value, (int, float)) else value
    if clip:
        lo = max(lo, 0.0)
    return None if lo == hi == center else (float(lo), float(hi))


def adjust_hue(image: np.ndarray, hue_factor: float) -> np.ndarray:
    """Shift the hue by ``hue_factor`` turns (in [-0.5, 0.5]) in Pillow's 8-bit HSV, as torchvision.

    The hue channel wraps around modulo 256 after adding ``int(hue_factor * 255)``.
    """
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor {hue_factor}: expected a value in [-0.5, 0.5]")
    h, s, v = Image.fromarray(_check(image), "RGB").convert("HSV").split()
    shifted = (np.asarray(h, np.int64) + int(hue_factor * 255)) % 256
    hsv = Image.merge("HSV", (Image.fromarray(shifted.astype(np.uint8), "L"), s, v))
    return np.asarray(hsv.convert("RGB"), dtype=np.uint8)


def adjust_color(image: np.ndarray, op: str, factor: float) -> np.ndarray:
    """One of torchvision's colour adjustments at a given factor (Pillow's ``ImageEnhance``).

    Args:
        image: uint8 ``(H, W, 3)``.
        op: ``"brightness"`` (blend with black), ``"contrast"`` (blend with the mean grey),
            ``"saturation"`` (blend with the greyscale image), or ``"hue"`` (:func:`adjust_hue`).
        factor: 1 leaves the image unchanged (for ``"hue"``: the shift, 0 unchanged).

    Returns:
        uint8 ``(H, W, 3)``.
    """
    if op == "hue":
        return adjust_hue(image, factor)
    enhancers = {
        "brightness": ImageEnhance.Brightness,
        "contrast": ImageEnhance.Contrast,
        "saturation": ImageEnhance.Color,
    }
    if op not in enhancers:
        raise ValueError(f"colour op {op!r}: expected brightness, contrast, saturation or hue")
    img = Image.fromarray(_check(image), "RGB")
    return np.asarray(enhancers[op](img).enhance(factor), dtype=np.uint8)


_JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def color_jitter_params(
    rng: RandomSource | int,
    brightness: float | tuple[float, float] = 0.0,
    contrast: float | tuple[float, float] = 0.0,
    saturation: float | tuple[float, float] = 0.0,
    hue: float | tuple[float, float] = 0.0,
) -> list[tuple[str, float]]:
    """Draw colour jitter's ops and factors as torchvision's ``ColorJitter.get_params``.

    A number ``b`` means factors uniform in ``[max(0, 1 - b), 1 + b]`` (hue: shifts in
    ``[-h, h]``); a pair is the range itself; 0 skips the op. The order of the four ops is a
    uniform random permutation (drawn first, by Fisher-Yates with ``integers``), then one
    ``uniform`` per active op in the order brightness, contrast, saturation, hue.

    Returns:
        ``[(op, factor), ...]`` in the order to apply, for :func:`apply_color_jitter`.

    Example:
        >>> [op for op, _ in color_jitter_params(0, brightness=0.4)]
        ['brightness']
    """
    rng = _rng(rng)
    order = [0, 1, 2, 3]
    for i in range(3, 0, -1):  # Fisher-Yates
        j = int(rng.integers(0, i + 1))
        order[i], order[j] = order[j], order[i]
    ranges = [
        _range(brightness, 1.0, True),
        _range(contrast, 1.0, True),
        _range(saturation, 1.0, True),
        _range(hue, 0.0, False),
    ]
    factors = [None if r is None else float(rng.uniform(r[0], r[1])) for r in ranges]
    return [(_JITTER_OPS[k], f) for k in order if (f := factors[k]) is not None]


def apply_color_jitter(image: np.ndarray, ops: Sequence[tuple[str, float]]) -> np.ndarray:
    """Apply ``[(op, factor), ...]`` from :func:`color_jitter_params` in order."""
    for op, factor in ops:
        image = adjust_color(image, op, factor)
    return _check(image)


def color_jitter(
    rng: RandomSource | int,
    image: np.ndarray,
    brightness: float | tuple[float, float] = 0.0,
    contrast: float | tuple[float, float] = 0.0,
    saturation: float | tuple[float, float] = 0.0,
    hue: float | tuple[float, float] = 0.0,
) -> np.ndarray:
    """torchvision's ``ColorJitter``: random factors, the four ops in a random order.

    Example:
        >>> color_jitter(0, np.zeros((4, 4, 3), np.uint8), 0.4, 0.4, 0.4, 0.1).shape
        (4, 4, 3)
    """
    ops = color_jitter_params(rng, brightness, contrast, saturation, hue)
    return apply_color_jitter(_check(image), ops)


def random_erasing_params(
    rng: RandomSource | int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> tuple[int, int, int, int] | None:
    """Draw an erasing box as torchvision's ``RandomErasing.get_params`` (given that it erases).

    Up to 10 attempts: area fraction uniform in ``scale``, ratio ``h / w`` log-uniform in
    ``ratio``, ``h = round(sqrt(area * ratio))``, ``w = round(sqrt(area / ratio))``; the first
    box strictly smaller than the image is placed uniformly (``integers`` top, then left).

    Returns:
        ``(top, left, h, w)``, or None when no attempt fitted (nothing is erased).
    """
    rng = _rng(rng)
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        erase_area = area * float(rng.uniform(scale[0], scale[1]))
        aspect = math.exp(float(rng.uniform(log_lo, log_hi)))
        h = int(round(math.sqrt(erase_area * aspect)))
        w = int(round(math.sqrt(erase_area / aspect)))
        if h < height and w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    return None


def erase(
    image: np.ndarray, top: int, left: int, h: int, w: int, value: int | Sequence[int] = 0
) -> np.ndarray:
    """A copy of ``image`` with the box ``(top, left, h, w)`` set to ``value`` (one or 3 ints)."""
    out = _check(image).copy()
    out[top : top + h, left : left + w] = np.asarray(value, np.uint8)
    return out


def random_erasing(
    rng: RandomSource | int,
    image: np.ndarray,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: int | Sequence[int] = 0,
) -> np.ndarray:
    """torchvision's ``RandomErasing`` on uint8 ``(H, W, 3)``: with probability ``p`` erase a box.

    Draws ``uniform(0, 1) < p`` first, then :func:`random_erasing_params`. torchvision applies
    it to the normalised tensor; here ``value`` is a uint8 grey level or RGB triple (``0`` in
    uint8 is black, not the mean colour that 0 means after normalisation).

    Example:
        >>> random_erasing(0, np.full((8, 8, 3), 255, np.uint8), p=1.0).min()
        np.uint8(0)
    """
    rng = _rng(rng)
    _check(image)
    if not float(rng.uniform(0.0, 1.0)) < p:
        return image.copy()
    box = random_erasing_params(rng, image.shape[0], image.shape[1], scale, ratio)
    return image.copy() if box is None else erase(image, *box, value=value)


def eval_transform(
    image: AnyImage,
    image_size: int = 224,
    crop_fraction: float = 0.875,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Evaluation view: shorter side to ``round(image_size / crop_fraction)``, then centre crop.

    With the defaults this is torchvision's ``Resize(256) + CenterCrop(224)``.

    Shapes:
        ``(H, W, 3) -> (image_size, image_size, 3)``

    Example:
        >>> eval_transform(np.zeros((30, 40, 3), np.uint8), image_size=14).shape
        (14, 14, 3)
    """
    resized = resize_shorter(image, int(round(image_size / crop_fraction)), interpolation)
    return center_crop(resized, image_size)


def train_transform(
    rng: RandomSource | int,
    image: AnyImage,
    image_size: int = 224,
    hflip: float = 0.5,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bilinear",
    color_jitter: float | tuple[float, float, float, float] = 0.0,
    trivial_augment: bool = False,
    erasing: float = 0.0,
) -> np.ndarray:
    """ImageNet training view: random-resized-crop, flip, and optional stronger augmentation.

    Steps, each drawing from ``rng`` in turn: :func:`random_resized_crop` to ``image_size``; a
    horizontal flip with probability ``hflip`` (one ``uniform(0, 1)`` draw); :func:`color_jitter`
    (a number is used for brightness, contrast and saturation with no hue, timm's convention; a
    4-tuple is ``(brightness, contrast, saturation, hue)``) when nonzero; TrivialAugmentWide when
    ``trivial_augment``; :func:`random_erasing` with probability ``erasing`` when nonzero.

    Shapes:
        ``(H, W, 3) -> (image_size, image_size, 3)``

    Example:
        >>> img = np.zeros((30, 40, 3), np.uint8)
        >>> train_transform(0, img, 16, trivial_augment=True, erasing=0.25).shape
        (16, 16, 3)
    """
    rng = _rng(rng)
    out = random_resized_crop(rng, image, image_size, scale, ratio, interpolation)
    return augment_view(
        rng, out, hflip, color_jitter=color_jitter, trivial_augment=trivial_augment,
        erasing=erasing,
    )  # fmt: skip


def augment_view(
    rng: RandomSource | int,
    view: np.ndarray,
    hflip: float = 0.5,
    *,
    color_jitter: float | tuple[float, float, float, float] = 0.0,
    trivial_augment: bool = False,
    erasing: float = 0.0,
) -> np.ndarray:
    """The steps of :func:`train_transform` after its crop: flip, colour jitter,
    TrivialAugmentWide, random erasing (same settings, same draws).

    Shapes:
        ``(h, w, 3) -> (h, w, 3)``

    Example:
        >>> augment_view(0, np.zeros((8, 8, 3), np.uint8), erasing=1.0).shape
        (8, 8, 3)
    """
    rng = _rng(rng)
    out = _check(view, "view")
    if float(rng.uniform(0.0, 1.0)) < hflip:
        out = out[:, ::-1].copy()
    jitter = (
        (color_jitter,) * 3 + (0.0,) if isinstance(color_jitter, (int, float)) else color_jitter
    )
    if any(jitter):
        out = apply_color_jitter(out, color_jitter_params(rng, *jitter))
    if trivial_augment:
        out = trivial_augment_wide(rng, out)
    if erasing:
        out = random_erasing(rng, out, p=erasing)
    return out
