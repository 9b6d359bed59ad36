"""Wrappers: values that wrap a layer's functions and keep everything else of it.

A wrapper (:class:`jcnn.layers.core.Wrapper`) is a frozen dataclass with a ``label`` and
``wrap(fns) -> fns``; ``layer.wrapped(w)`` puts it around the layer's ``init``/``apply`` and
keeps the layer's facts, name, params and state trees and output shape, so a wrapped block
plugs into a trained network unchanged. The four jcnn has:

* :class:`Remat`: ``apply`` under ``jax.checkpoint`` (:func:`jcnn.layers.remat.remat`);
* :class:`PolicyWrapper`: a mixed-precision policy around ``init`` and ``apply``
  (:func:`jcnn.layers.precision.with_policy`);
* :class:`InferenceMode`: ``apply`` always with ``train=False`` (:func:`inference_mode`);
* :class:`MatmulPrecision`: ``init`` and ``apply`` traced under
  ``jax.default_matmul_precision`` (:func:`with_matmul_precision`).

Example:
    >>> block = L.serial(L.Conv(4, 3), L.BatchNorm())
    >>> inference_mode(block).describe(), inference_mode(block).children == block.children
    ('inference_mode(serial())', True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

from jcnn.layers.core import Fns, Layer

__all__ = [
    "InferenceMode",
    "MatmulPrecision",
    "PolicyWrapper",
    "Remat",
    "inference_mode",
    "policy_apply",
    "with_matmul_precision",
]


@dataclass(frozen=True)
class Remat:
    """The remat wrapper: apply under ``jax.checkpoint`` (see :mod:`jcnn.layers.remat`).

    Attributes:
        policy: which intermediates ``jax.checkpoint`` may save (``None``: only the inputs).
        prevent_cse: keep XLA from merging the recomputation into the forward pass.
    """

    policy: Callable[..., bool] | None = None
    prevent_cse: bool = True
    label: str = "remat"

    def wrap(self, fns: Fns) -> Fns:
        inner = fns.apply

        def apply(params, state, x, *, key=None, train=False):
            def run(p, s, inputs, k):
                return inner(p, s, inputs, key=k, train=train)

            checkpointed = jax.checkpoint(run, prevent_cse=self.prevent_cse, policy=self.policy)
            return checkpointed(params, state, x, key)

        return fns._replace(apply=apply)


def policy_apply(apply: Callable[..., Any], policy: Any) -> Callable[..., Any]:
    """``apply`` under a :class:`jcnn.layers.precision.Policy`: floating params and ``x`` cast to
    its compute dtype, the state left alone, the output cast to its output dtype."""

    def apply_in_policy(params, state, x, *, key=None, train=False):
        y, new_state = apply(
            policy.cast_to_compute(params), state, policy.cast_to_compute(x), key=key, train=train
        )
        return policy.cast_to_output(y), new_state

    return apply_in_policy


@dataclass(frozen=True)
class PolicyWrapper:
    """The precision wrapper: params stored in ``param_dtype`` by init; apply in
    ``compute_dtype``, output in ``output_dtype`` (see :mod:`jcnn.layers.precision`).

    Attributes:
        policy: a :class:`jcnn.layers.precision.Policy`.
    """

    policy: Any

    @property
    def label(self) -> str:
        p = self.policy
        return f"with_policy[{p.param_dtype}/{p.compute_dtype}/{p.output_dtype}]"

    def wrap(self, fns: Fns) -> Fns:
        inner_init, policy = fns.init, self.policy

        def init(key, input_shape):
            out_shape, params, state = inner_init(key, input_shape)
            return out_shape, policy.cast_to_param(params), state

        return fns._replace(init=init, apply=policy_apply(fns.apply, policy))


@dataclass(frozen=True)
class InferenceMode:
    """The inference-mode wrapper: ``apply`` always runs with ``train=False``."""

    label: str = "inference_mode"

    def wrap(self, fns: Fns) -> Fns:
        inner = fns.apply

        def apply(params, state, x, *, key=None, train=False):
            del key, train
            return inner(params, state, x, train=False)

        return fns._replace(apply=apply)


def inference_mode(layer: Layer) -> Layer:
    """``layer`` that always runs with ``train=False``: BatchNorm uses (and keeps) its running
    statistics and Dropout is off, whatever the caller asks. Same params and state trees.

    Shapes:
        as ``layer``.
    """
    return layer.wrapped(InferenceMode())


@dataclass(frozen=True)
class MatmulPrecision:
    """The matmul-precision wrapper: every convolution and matrix product that ``init`` and
    ``apply`` trace without a ``precision=`` of their own runs at ``precision`` (see
    :func:`with_matmul_precision`)."""

    precision: str

    @property
    def label(self) -> str:
        return f"with_matmul_precision[{self.precision}]"

    def wrap(self, fns: Fns) -> Fns:
        inner_init, inner_apply, precision = fns.init, fns.apply, self.precision

        def init(key, input_shape):
            with jax.default_matmul_precision(precision):
                return inner_init(key, input_shape)

        def apply(params, state, x, *, key=None, train=False):
            with jax.default_matmul_precision(precision):
                return inner_apply(params, state, x, key=key, train=train)

        return fns._replace(init=init, apply=apply)


#: What ``jax.default_matmul_precision`` accepts (see :func:`with_matmul_precision`).
MATMUL_PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")


def with_matmul_precision(layer: Layer, precision: str = "float32") -> Layer:
    """``layer`` whose convolutions and matrix products run at ``precision`` on every backend.

    JAX's default lets a GPU run float32 convolutions and matmuls in TF32 (10-bit mantissa,
    about 1e-3 relative) and a TPU in bfloat16 passes; ``"float32"`` (or ``"highest"``) asks
    for full float32, ``"tensorfloat32"`` / ``"high"`` and ``"bfloat16"`` / ``"default"`` for
    the faster ones. A layer's own ``precision=`` (``Conv``, ``Dense``) wins over this; the
    whole process can be set with ``jax.config.update("jax_default_matmul_precision",
    "float32")``. Works on any layer: a zoo model, a ``from_torchvision`` one. Same params,
    state and shapes; on the CPU every setting computes in float32.

    Example:
        >>> net = with_matmul_precision(L.serial(L.Conv(4, 3), L.Relu()), "float32")
        >>> net.describe()
        'with_matmul_precision[float32](serial())'
    """
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(
            f"with_matmul_precision: precision={precision!r}; expected one of "
            f"{list(MATMUL_PRECISIONS)} (as jax.default_matmul_precision takes)"
        )
    return layer.wrapped(MatmulPrecision(precision))
