"""TrivialAugmentWide on the host: torchvision's op set and magnitude bins, on uint8 RGB images.

Müller & Hutter, "TrivialAugment: Tuning-free Yet State-of-the-Art Data Augmentation" (ICCV 2021):
each call picks one op uniformly and one magnitude bin uniformly, and negates signed magnitudes
with probability 1/2. The ops, their magnitude ranges and their Pillow implementations are
torchvision's (``torchvision.transforms.TrivialAugmentWide`` on PIL images, interpolation
``nearest``, fill 0), so a given ``(op, magnitude)`` gives torchvision's pixels.

The random draws come from a :class:`jcnn.data.transforms.RandomSource` (a
``numpy.random.Generator`` is one), drawn in torchvision's order: op index, bin index (ops with a
magnitude range only), sign (signed ops only).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

if TYPE_CHECKING:
    from jcnn.data.transforms import RandomSource

#: torchvision's TrivialAugmentWide ops, in its order (the op index draws from this tuple).
TRIVIAL_AUGMENT_WIDE_OPS: tuple[str, ...] = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
)

# (start, end, signed) of each op's linspace of magnitudes; None: no magnitude (always 0.0).
_RANGES: dict[str, tuple[float, float, bool] | None] = {
    "Identity": None,
    "ShearX": (0.0, 0.99, True),
    "ShearY": (0.0, 0.99, True),
    "TranslateX": (0.0, 32.0, True),
    "TranslateY": (0.0, 32.0, True),
    "Rotate": (0.0, 135.0, True),
    "Brightness": (0.0, 0.99, True),
    "Color": (0.0, 0.99, True),
    "Contrast": (0.0, 0.99, True),
    "Sharpness": (0.0, 0.99, True),
    "Posterize": (0.0, 0.0, False),  # bins computed separately (8 down to 2 bits)
    "Solarize": (255.0, 0.0, False),
    "AutoContrast": None,
    "Equalize": None,
}

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def _linspace32(start: float, end: float, num: int) -> np.ndarray:
    # torch.linspace's float32 rule: start + step*i for the first half, end - step*(n-1-i) after
    i = np.arange(num)
    step = (np.float32(end) - np.float32(start)) / np.float32(max(num - 1, 1))
    low = np.float32(start) + step * i.astype(np.float32)
    high = np.float32(end) - step * (num - 1 - i).astype(np.float32)
    return np.where(i < num // 2, low, high).astype(np.float32)


def trivial_augment_wide_magnitudes(num_magnitude_bins: int = 31) -> dict[str, np.ndarray]:
    """Each op's magnitude bins, as torchvision's ``TrivialAugmentWide._augmentation_space``.

    Args:
        num_magnitude_bins: number of bins per op (torchvision's default 31).

    Returns:
        op name -> float64 array of magnitudes ``(num_magnitude_bins,)``, or ``()`` (0-d, value 0)
        for the ops without a magnitude (Identity, AutoContrast, Equalize). Ranges: shears,
        Brightness, Color, Contrast, Sharpness 0..0.99; translations 0..32 pixels; Rotate 0..135
        degrees; Posterize 8 down to 2 bits; Solarize threshold 255 down to 0.

    Example:
        >>> m = trivial_augment_wide_magnitudes(31)
        >>> m["Rotate"].shape, float(m["Rotate"][-1]), [int(b) for b in m["Posterize"][::10]]
        ((31,), 135.0, [8, 6, 4, 2])
    """
    out: dict[str, np.ndarray] = {}
    for name in TRIVIAL_AUGMENT_WIDE_OPS:
        spec = _RANGES[name]
        if spec is None:
            out[name] = np.zeros((), np.float64)
        elif name == "Posterize":
            bits = 8 - np.round(np.arange(num_magnitude_bins) / ((num_magnitude_bins - 1) / 6))
            out[name] = bits.astype(np.float64)
        else:
            out[name] = _linspace32(spec[0], spec[1], num_magnitude_bins).astype(np.float64)
    return out


def trivial_augment_wide_params(
    rng: RandomSource, num_magnitude_bins: int = 31
) -> tuple[str, float]:
    """Draw TrivialAugmentWide's op and signed magnitude, in torchvision's order.

    Args:
        rng: the random source (``integers(low, high)``, high exclusive).
        num_magnitude_bins: number of magnitude bins per op.

    Returns:
        ``(op_name, magnitude)`` for :func:`apply_augment_op`.
    """
    name = TRIVIAL_AUGMENT_WIDE_OPS[int(rng.integers(0, len(TRIVIAL_AUGMENT_WIDE_OPS)))]
    bins = trivial_augment_wide_magnitudes(num_magnitude_bins)[name]
    if bins.ndim == 0:
        return name, 0.0
    magnitude = float(bins[int(rng.integers(0, len(bins)))])
    spec = _RANGES[name]
    if spec is not None and spec[2] and int(rng.integers(0, 2)):
        magnitude = -magnitude
    return name, magnitude


def _affine(
    img: Image.Image,
    shear: tuple[float, float],
    translate: tuple[int, int],
    center: tuple[float, float],
    resample: Image.Resampling,
    fill: tuple[int, ...],
) -> Image.Image:
    # torchvision.transforms.functional._get_inverse_affine_matrix with angle 0 and scale 1
    # (rotation-scale-shear inverted, then the centre and translation undone)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(-sy) / math.cos(sy)
    b = -math.cos(-sy) * math.tan(sx) / math.cos(sy) - math.sin(0.0)
    c = math.sin(-sy) / math.cos(sy)
    d = -math.sin(-sy) * math.tan(sx) / math.cos(sy) + math.cos(0.0)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return img.transform(img.size, Image.Transform.AFFINE, m, resample, fillcolor=fill)


def apply_augment_op(
    image: np.ndarray,
    op_name: str,
    magnitude: float,
    *,
    interpolation: str = "nearest",
    fill: int | tuple[int, int, int] = 0,
) -> np.ndarray:
    """Apply one TrivialAugment op at a given magnitude (torchvision's ``_apply_op`` on PIL).

    Shears use ``atan(magnitude)`` degrees about the top-left corner; translations move by
    ``int(magnitude)`` pixels; Rotate turns ``magnitude`` degrees counter-clockwise about the
    centre; Brightness/Color/Contrast/Sharpness enhance by factor ``1 + magnitude``; Posterize keeps
    ``int(magnitude)`` bits; Solarize inverts pixels >= ``magnitude``.

    Args:
        image: uint8 RGB image ``(H, W, 3)``.
        op_name: one of :data:`TRIVIAL_AUGMENT_WIDE_OPS` (or ``"Invert"``).
        magnitude: the op's magnitude (signed for geometric and enhancement ops).
        interpolation: ``"nearest"`` (torchvision's default), ``"bilinear"`` or ``"bicubic"``.
        fill: value for pixels moved in from outside (geometric ops).

    Returns:
        uint8 image ``(H, W, 3)``.

    Raises:
        ValueError: unknown ``op_name`` or ``interpolation``.

    Example:
        >>> img = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
        >>> apply_augment_op(img, "Solarize", 5.0)[0, :, 0].tolist()  # >= 5 inverted
        [0, 3, 249, 246]
    """
    if interpolation not in _RESAMPLE:
        raise ValueError(f"interpolation {interpolation!r}: expected one of {sorted(_RESAMPLE)}")
    fill3 = (fill,) * 3 if isinstance(fill, int) else tuple(fill)
    resample = _RESAMPLE[interpolation]
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
    shear = math.degrees(math.atan(magnitude))
    if op_name == "Identity":
        out = img
    elif op_name == "ShearX":
        out = _affine(img, (shear, 0.0), (0, 0), (0.0, 0.0), resample, fill3)
    elif op_name == "ShearY":
        out = _affine(img, (0.0, shear), (0, 0), (0.0, 0.0), resample, fill3)
    elif op_name in ("TranslateX", "TranslateY"):
        t = (int(magnitude), 0) if op_name == "TranslateX" else (0, int(magnitude))
        centre = (img.width * 0.5, img.height * 0.5)
        out = _affine(img, (0.0, 0.0), t, centre, resample, fill3)
    elif op_name == "Rotate":
        out = img.rotate(magnitude, resample, False, None, fillcolor=fill3)
    elif op_name == "Brightness":
        out = ImageEnhance.Brightness(img).enhance(1.0 + magnitude)
    elif op_name == "Color":
        out = ImageEnhance.Color(img).enhance(1.0 + magnitude)
    elif op_name == "Contrast":
        out = ImageEnhance.Contrast(img).enhance(1.0 + magnitude)
    elif op_name == "Sharpness":
        out = ImageEnhance.Sharpness(img).enhance(1.0 + magnitude)
    elif op_name == "Posterize":
        out = ImageOps.posterize(img, int(magnitude))
    elif op_name == "Solarize":
        out = ImageOps.solarize(img, magnitude)  # type: ignore[arg-type]  # float, as torchvision
    elif op_name == "AutoContrast":
        out = ImageOps.autocontrast(img)
    elif op_name == "Equalize":
        out = ImageOps.equalize(img)
    elif op_name == "Invert":
        out = ImageOps.invert(img)
    else:
        raise ValueError(
            f"unknown augmentation op {op_name!r}: expected one of {TRIVIAL_AUGMENT_WIDE_OPS}"
        )
    return np.asarray(out, dtype=np.uint8)


def trivial_augment_wide(
    rng: RandomSource,
    image: np.ndarray,
    *,
    num_magnitude_bins: int = 31,
    interpolation: str = "nearest",
    fill: int | tuple[int, int, int] = 0,
) -> np.ndarray:
    """TrivialAugmentWide: one random op at one random magnitude (torchvision's defaults).

    Args:
        rng: the random source (a ``numpy.random.Generator``).
        image: uint8 RGB image ``(H, W, 3)``.
        num_magnitude_bins: bins per op (31).
        interpolation: resampling of the geometric ops (``"nearest"``, torchvision's default).
        fill: value for pixels moved in from outside.

    Returns:
        uint8 image ``(H, W, 3)``.

    Example:
        >>> img = np.zeros((8, 8, 3), np.uint8)
        >>> trivial_augment_wide(np.random.default_rng(0), img).shape
        (8, 8, 3)
    """
    name, magnitude = trivial_augment_wide_params(rng, num_magnitude_bins)
    return apply_augment_op(image, name, magnitude, interpolation=interpolation, fill=fill)
