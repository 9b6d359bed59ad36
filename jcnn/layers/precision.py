"""Mixed precision without touching model code: a dtype policy applied around ``apply``.

A :class:`Policy` names three dtypes: parameters are stored (and updated by the optimiser) in
``param_dtype``, the network computes in ``compute_dtype``, and returns ``output_dtype``.
:func:`with_policy` casts the floating params and the input to the compute dtype on the way in
and the output on the way out; jcnn's ``Conv`` and ``Dense`` already cast their kernels to the
input's dtype, so every convolution and matmul runs in ``compute_dtype``. The normalisation
layers compute their statistics in float32 whatever the input dtype and keep BatchNorm's running
statistics (the layer *state*, which the policy never casts) in float32. The cast of the params
sits inside the differentiated function, so gradients arrive in ``param_dtype``::

    net = with_policy(models.cnn(), Policy.mixed_bfloat16())   # still a Layer
    ts = create_train_state(net, (28, 28, 1), optax.adam(1e-3))  # float32 params
    step = make_train_step(net.apply, softmax_cross_entropy, optax.adam(1e-3))

bfloat16 has float32's exponent range, so it trains without loss scaling. float16 has a 5-bit
exponent: small gradients underflow to zero unless the loss is scaled up before ``grad`` and the
gradients scaled back down, which this module does not do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jcnn.layers.core import Layer
from jcnn.layers.wrappers import PolicyWrapper, policy_apply

__all__ = ["Policy", "PolicyWrapper", "cast_floating", "with_policy"]

DTypeLike = Any


def _floating(dtype: DTypeLike, what: str) -> np.dtype:
    dt = jnp.dtype(dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"Policy {what} must be a floating dtype, got {dt}")
    return dt


def cast_floating(tree: Any, dtype: DTypeLike) -> Any:
    """Casts every floating leaf of ``tree`` to ``dtype``; integer/bool leaves are left alone."""
    dt = jnp.dtype(dtype)

    def cast(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dt:
            return jnp.asarray(x).astype(dt)
        return x

    return jax.tree.map(cast, tree)


@dataclass(frozen=True)
class Policy:
    """Dtypes of a mixed-precision run.

    Attributes:
        param_dtype: storage of params and their gradients and optimiser updates.
        compute_dtype: what convolutions, matmuls and activations run in.
        output_dtype: what the network returns (float32 keeps the loss accurate).
    """

    param_dtype: DTypeLike = jnp.float32
    compute_dtype: DTypeLike = jnp.float32
    output_dtype: DTypeLike = jnp.float32

    def __post_init__(self) -> None:
        for field in ("param_dtype", "compute_dtype", "output_dtype"):
            object.__setattr__(self, field, _floating(getattr(self, field), field))

    @classmethod
    def float32(cls) -> Policy:
        """Everything in float32 (the default; ``with_policy`` is then a no-op)."""
        return cls(jnp.float32, jnp.float32, jnp.float32)

    @classmethod
    def mixed_bfloat16(cls) -> Policy:
        """float32 params and output, bfloat16 compute (TPUs and recent GPUs)."""
        return cls(jnp.float32, jnp.bfloat16, jnp.float32)

    @classmethod
    def mixed_float16(cls) -> Policy:
        """float32 params and output, float16 compute (needs loss scaling, see the module doc)."""
        return cls(jnp.float32, jnp.float16, jnp.float32)

    @classmethod
    def from_name(cls, name: str) -> Policy:
        """``"float32"``, ``"mixed_bfloat16"`` (or ``"bf16"``), ``"mixed_float16"`` (``"fp16"``)."""
        table = {
            "float32": cls.float32,
            "fp32": cls.float32,
            "mixed_bfloat16": cls.mixed_bfloat16,
            "bf16": cls.mixed_bfloat16,
            "mixed_float16": cls.mixed_float16,
            "fp16": cls.mixed_float16,
        }
        if name not in table:
            raise ValueError(f"unknown precision policy {name!r}; known: {sorted(table)}")
        return table[name]()

    def cast_to_param(self, tree: Any) -> Any:
        """Floating leaves to ``param_dtype``."""
        return cast_floating(tree, self.param_dtype)

    def cast_to_compute(self, tree: Any) -> Any:
        """Floating leaves to ``compute_dtype``."""
        return cast_floating(tree, self.compute_dtype)

    def cast_to_output(self, tree: Any) -> Any:
        """Floating leaves to ``output_dtype``."""
        return cast_floating(tree, self.output_dtype)


def with_policy(apply_or_layer: Any, policy: Policy) -> Any:
    """Runs a network under ``policy``; the model code does not change.

    Args:
        apply_or_layer: a per-example ``apply`` function, or a ``Layer``.
        policy: the dtypes.

    Returns:
        For a function: ``apply(params, state, x, *, key, train)`` that casts floating params
        and ``x`` to ``compute_dtype``, leaves ``state`` alone and casts the output to
        ``output_dtype``. For a ``Layer``: the same layer (name, children, params tree) with
        that apply, and an init that stores params in ``param_dtype``.

    Shapes:
        unchanged: ``x: (*example_shape)`` -> the wrapped layer's output shape.

    Example:
        >>> net = with_policy(models.cnn(), Policy.mixed_bfloat16())
        >>> _, params, state = net.init(key, (28, 28, 1))
        >>> ys, _ = jcnn.batched(net.apply)(params, state, jnp.ones((2, 28, 28, 1)))
        >>> ys.shape, ys.dtype, params["Conv_0"]["kernel"].dtype   # bf16 compute inside
        ((2, 10), dtype('float32'), dtype('float32'))
    """
    if not isinstance(apply_or_layer, Layer):
        return policy_apply(apply_or_layer, policy)
    return apply_or_layer.wrapped(PolicyWrapper(policy))
