"""Tensor layouts: PyTorch's weights and activations in jcnn's layouts, and back.

Nothing here imports torch: every function accepts a numpy array or anything
``np.asarray`` understands (for a torch tensor pass ``t.detach().cpu().numpy()``)
and returns a numpy array.

Layout summary (``*k`` = spatial kernel dims, ``*s`` = spatial dims):

=====================  ==========================  ==========================
What                   PyTorch                     jcnn
=====================  ==========================  ==========================
activations            ``(N, C, *s)``              ``(N, *s, C)``
Conv kernel            ``(out, in/groups, *k)``    ``(*k, in/groups, out)``
ConvTranspose kernel   ``(in, out/groups, *k)``    ``(*k, in, out/groups)``
Linear/Dense kernel    ``(out, in)``               ``(in, out)``
=====================  ==========================  ==========================

No kernel is spatially flipped: jcnn's ``Conv`` is a cross-correlation like
``torch.nn.Conv*d`` and jcnn's ``ConvTranspose`` flips internally, like
``torch.nn.ConvTranspose*d``, so it is the adjoint (gradient) of ``Conv``. Whole networks move
with :func:`jcnn.interop.porting.from_torch` / ``to_torch``, which pick these conversions by
each layer's facts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "batchnorm_from_torch",
    "conv_kernel_from_torch",
    "conv_kernel_to_torch",
    "conv_transpose_kernel_from_torch",
    "conv_transpose_kernel_to_torch",
    "dense_kernel_after_flatten_from_torch",
    "dense_kernel_after_flatten_to_torch",
    "dense_kernel_from_torch",
    "nchw_to_nhwc",
    "nhwc_to_nchw",
]


def _check_ndim(a: np.ndarray, min_ndim: int, name: str) -> None:
    if a.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dims, got shape {a.shape}")


def conv_kernel_from_torch(w: Any) -> np.ndarray:
    """Converts a ``torch.nn.Conv{1,2,3}d`` weight to a jcnn ``Conv`` kernel.

    Args:
        w: Torch weight of shape ``(out, in // groups, *k)`` with ``len(k)`` in
            ``{1, 2, 3}`` (any spatial rank >= 1 works).

    Returns:
        Array of shape ``(*k, in // groups, out)`` (no spatial flip).

    Raises:
        ValueError: If ``w`` has fewer than 3 dims.
    """
    w = np.asarray(w)
    _check_ndim(w, 3, "conv_kernel_from_torch")
    nk = w.ndim - 2
    return np.transpose(w, (*range(2, 2 + nk), 1, 0))


def conv_kernel_to_torch(k: Any) -> np.ndarray:
    """Inverse of :func:`conv_kernel_from_torch`.

    Args:
        k: jcnn kernel of shape ``(*k, in // groups, out)``.

    Returns:
        Array of shape ``(out, in // groups, *k)``.
    """
    k = np.asarray(k)
    _check_ndim(k, 3, "conv_kernel_to_torch")
    nk = k.ndim - 2
    return np.transpose(k, (nk + 1, nk, *range(nk)))


def conv_transpose_kernel_from_torch(w: Any) -> np.ndarray:
    """Converts a ``torch.nn.ConvTranspose{1,2,3}d`` weight to a jcnn kernel.

    The kernel is not flipped: jcnn's ``ConvTranspose`` flips it internally,
    exactly as torch does, so outputs match torch.

    Args:
        w: Torch weight of shape ``(in, out // groups, *k)``.

    Returns:
        Array of shape ``(*k, in, out // groups)`` (jcnn's ``ConvTranspose(groups=...)``).

    Raises:
        ValueError: If ``w`` has fewer than 3 dims.
    """
    w = np.asarray(w)
    _check_ndim(w, 3, "conv_transpose_kernel_from_torch")
    nk = w.ndim - 2
    return np.transpose(w, (*range(2, 2 + nk), 0, 1))


def conv_transpose_kernel_to_torch(k: Any) -> np.ndarray:
    """Inverse of :func:`conv_transpose_kernel_from_torch`.

    Args:
        k: jcnn kernel of shape ``(*k, in, out)``.

    Returns:
        Array of shape ``(in, out, *k)``.
    """
    k = np.asarray(k)
    _check_ndim(k, 3, "conv_transpose_kernel_to_torch")
    nk = k.ndim - 2
    return np.transpose(k, (nk, nk + 1, *range(nk)))


def dense_kernel_from_torch(w: Any) -> np.ndarray:
    """Converts a ``torch.nn.Linear`` weight to a jcnn ``Dense`` kernel.

    Args:
        w: Torch weight of shape ``(out, in)``.

    Returns:
        Array of shape ``(in, out)``.

    Raises:
        ValueError: If ``w`` is not 2-D.
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"dense_kernel_from_torch: expected 2 dims, got shape {w.shape}")
    return w.T


def batchnorm_from_torch(
    weight: Any, bias: Any, running_mean: Any, running_var: Any
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Converts ``torch.nn.BatchNorm*d`` tensors to jcnn ``BatchNorm`` params/state.

    Note the momentum conventions differ: torch ``momentum=m`` corresponds to
    jcnn ``momentum=1 - m``, and torch's running variance is unbiased
    (use ``BatchNorm(unbiased_running_var=True)`` to reproduce it).

    Args:
        weight: Torch ``weight`` (gamma), shape ``(C,)``.
        bias: Torch ``bias`` (beta), shape ``(C,)``.
        running_mean: Torch ``running_mean``, shape ``(C,)``.
        running_var: Torch ``running_var``, shape ``(C,)``.

    Returns:
        ``(params, state)`` with ``params = {"scale": (C,), "offset": (C,)}`` and
        ``state = {"mean": (C,), "var": (C,)}``.

    Raises:
        ValueError: If the four arrays are not 1-D of the same length.
    """
    arrs = [np.asarray(a) for a in (weight, bias, running_mean, running_var)]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1 or arrs[0].ndim != 1:
        raise ValueError(
            "batchnorm_from_torch: expected four 1-D arrays of equal length, got "
            f"{[a.shape for a in arrs]}"
        )
    scale, offset, mean, var = arrs
    return {"scale": scale, "offset": offset}, {"mean": mean, "var": var}


def nchw_to_nhwc(x: Any) -> np.ndarray:
    """Moves the channel axis from position 1 to last, for any spatial rank.

    Args:
        x: Array of shape ``(N, C, *s)`` with ``len(s) >= 0``.

    Returns:
        Array of shape ``(N, *s, C)``.

    Raises:
        ValueError: If ``x`` has fewer than 2 dims.
    """
    x = np.asarray(x)
    _check_ndim(x, 2, "nchw_to_nhwc")
    return np.moveaxis(x, 1, -1)


def nhwc_to_nchw(x: Any) -> np.ndarray:
    """Moves the channel axis from last to position 1, for any spatial rank.

    Args:
        x: Array of shape ``(N, *s, C)`` with ``len(s) >= 0``.

    Returns:
        Array of shape ``(N, C, *s)``.

    Raises:
        ValueError: If ``x`` has fewer than 2 dims.
    """
    x = np.asarray(x)
    _check_ndim(x, 2, "nhwc_to_nchw")
    return np.moveaxis(x, -1, 1)


def dense_kernel_after_flatten_from_torch(w: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    """Converts a ``torch.nn.Linear`` weight that follows a ``Flatten`` of NC* data.

    Torch flattens one example in ``(C, *s)`` order; jcnn (channels-last) flattens
    in ``(*s, C)`` order. This permutes the weight's input columns accordingly.

    Args:
        w: Torch weight of shape ``(out, C * prod(s))``.
        input_shape: Torch shape of ONE example before the flatten, ``(C, *s)``.

    Returns:
        Array of shape ``(prod(s) * C, out)`` for a jcnn ``Dense`` applied to
        ``x.reshape(-1)`` where ``x`` has shape ``(*s, C)``.

    Raises:
        ValueError: If ``w`` is not 2-D or its input size does not match ``input_shape``.
    """
    w = np.asarray(w)
    size = int(np.prod(input_shape))
    if w.ndim != 2 or w.shape[1] != size:
        raise ValueError(
            f"dense_kernel_after_flatten_from_torch: weight shape {w.shape} does not match "
            f"input_shape {tuple(input_shape)} (expected (out, {size}))"
        )
    out = w.shape[0]
    w = w.reshape(out, *input_shape)  # (out, C, *s)
    w = np.moveaxis(w, 1, -1)  # (out, *s, C)
    return w.reshape(out, size).T


def dense_kernel_after_flatten_to_torch(k: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`dense_kernel_after_flatten_from_torch`.

    Args:
        k: jcnn kernel of shape ``(prod(s) * C, out)``.
        input_shape: Torch shape of ONE example before the flatten, ``(C, *s)``.

    Returns:
        Array of shape ``(out, C * prod(s))``.
    """
    k = np.asarray(k)
    size = int(np.prod(input_shape))
    if k.ndim != 2 or k.shape[0] != size:
        raise ValueError(
            f"dense_kernel_after_flatten_to_torch: kernel shape {k.shape} does not match "
            f"input_shape {tuple(input_shape)} (expected ({size}, out))"
        )
    c, spatial = input_shape[0], tuple(input_shape[1:])
    w = k.T.reshape(k.shape[1], *spatial, c)  # (out, *s, C)
    return np.moveaxis(w, -1, 1).reshape(k.shape[1], size)
