"""Rematerialisation: trade compute for memory by recomputing a block's activations.

``remat(block)`` is ``block`` with its apply under ``jax.checkpoint``: the backward pass keeps
only the block's inputs and recomputes what happens inside it, instead of storing every
intermediate activation. Nothing else changes: same init, same params and state trees, same
name in the parent combinator, so it wraps any block of an existing model without touching its
checkpoints::

    net = L.serial(remat(stage1), remat(stage2), L.GlobalAvgPool(), L.Dense(10))

The memory saved is visible in the compiled step's ``memory_analysis().temp_size_in_bytes``
(see ``bench/scale.py``).

On XLA:CPU one compiler pass has to be switched off for any of this to happen: the CPU pipeline
expands ``jax.checkpoint``'s optimisation barriers (pass ``cse_barrier_expander``) before common
subexpression elimination, which then merges the recomputation back into the forward pass and
every activation is stored again. GPU and TPU keep the barriers. Compile with
``compiler_options=compiler_options()`` (this module) to keep them on CPU too::

    step = jax.jit(step_fn, compiler_options=jcnn.remat.compiler_options())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jcnn.layers.core import Layer
from jcnn.layers.wrappers import Remat

__all__ = ["CPU_COMPILER_OPTIONS", "Remat", "compiler_options", "remat"]

CPU_COMPILER_OPTIONS: dict[str, Any] = {"xla_disable_hlo_passes": "cse_barrier_expander"}


def compiler_options(platform: str | None = None) -> dict[str, Any]:
    """``jax.jit`` compiler options that let remat save memory on ``platform`` (default: JAX's).

    ``{"xla_disable_hlo_passes": "cse_barrier_expander"}`` on CPU (see the module doc), ``{}``
    elsewhere.
    """
    platform = platform or jax.default_backend()
    return dict(CPU_COMPILER_OPTIONS) if platform == "cpu" else {}


def remat(
    layer: Layer, *, policy: Callable[..., bool] | None = None, prevent_cse: bool = True
) -> Layer:
    """``layer`` whose activations are recomputed in the backward pass (``jax.checkpoint``).

    Args:
        layer: any layer or combinator (a block of a network).
        policy: which intermediates may still be saved, e.g.
            ``jax.checkpoint_policies.dots_with_no_batch_dims_saveable`` (keep matmul outputs,
            recompute the cheap elementwise ops). ``None`` saves nothing but the block's inputs.
        prevent_cse: keep XLA from merging the recomputation with the forward pass (which
            would undo the saving); ``jax.checkpoint``'s default. ``False`` is fine under
            ``lax.scan``.

    Returns:
        ``layer.wrapped(Remat(policy, prevent_cse))``: the same facts (name, kind, children,
        hparams), init and params tree, and a checkpointed apply.
        ``train`` is a Python flag, so each mode is its own checkpointed function.

    Shapes:
        those of ``layer``.

    Example:
        >>> block = L.serial(L.Conv(8, 3, padding="SAME"), L.BatchNorm(), L.Relu())
        >>> net = L.serial(remat(block), L.Flatten(), L.Dense(10))
        >>> _, params, state = net.init(key, (28, 28, 1))   # same tree as without remat
        >>> sorted(params), net.children[0][1]
        (['Dense_0', 'Flatten_0', 'serial_0'], remat(serial(
          Conv(out_channels=8, kernel_size=(3, 3), padding='SAME'),
          BatchNorm(momentum=0.9, eps=1e-05),
          Relu(),
        )))
    """

    return layer.wrapped(Remat(policy, prevent_cse))
