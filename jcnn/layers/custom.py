"""Layers from a user's own stax-style ``init`` and ``apply`` functions, checked at their edges."""

from __future__ import annotations

from jcnn.layers.core import ApplyFn, Fns, InitFn, Layer, ShapeFn, Window, init_shapes, leaf


def _custom_rule(layer: Layer) -> Fns:
    hp = layer.hparams
    user_init, user_apply, kind = hp["init"], hp["apply"], layer.name

    def init(key, input_shape):
        out = user_init(key, input_shape)
        if not (isinstance(out, tuple) and len(out) == 3 and isinstance(out[0], (tuple, list))):
            got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
            if isinstance(out, tuple) and len(out) == 3:
                got = f"a first element of type {type(out[0]).__name__}, not a shape"
            raise TypeError(
                f"{kind}: the init given to L.custom returned {got}; a layer's init returns "
                "the triple (output_shape, params, state) for ONE example: end it with "
                "`return output_shape, params, state` ({} for no params or no state)"
            )
        return out

    def apply(params, state, x, *, key=None, train=False):
        out = user_apply(params, state, x, key=key, train=train)
        if not (isinstance(out, tuple) and len(out) == 2):
            got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
            raise TypeError(
                f"{kind}: the apply given to L.custom returned {got}; a layer's apply returns "
                "the pair (y, state): end it with `return y, state` (the state it was given, "
                "when it keeps none)"
            )
        return out

    fns = Fns(init, apply, hp["output_shape"])
    if fns.output_shape is None:  # traced, nothing allocated
        return fns._replace(output_shape=lambda input_shape: init_shapes(fns, input_shape)[0])
    return fns


def custom(
    init: InitFn,
    apply: ApplyFn,
    kind: str,
    *,
    output_shape: ShapeFn | None = None,
    pointwise: bool = False,
    window: Window | None = None,
    stochastic: bool = True,
    batch_coupled: bool = False,
) -> Layer:
    """A layer from your own stax-style ``init`` and ``apply`` functions.

    Args:
        init, apply: the layer contract (module docstring).
        kind: what it is; also its default params key.
        output_shape: ``input_shape -> output_shape`` by arithmetic; default: ``init`` under
            ``jax.eval_shape`` (traced, nothing allocated).
        pointwise, window: its facts, for tools such as the receptive-field walk.
        stochastic: whether ``apply`` uses its ``key`` (default True: a combinator hands keys
            only to stochastic children; say False for a deterministic layer to spare the
            key split).
        batch_coupled: whether ``apply`` in training mixes the examples of a batch (reads
            statistics over the named batch axis, as BatchNorm); DP-SGD refuses such layers.

    Example:
        >>> import jax.numpy as jnp
        >>> def init(key, shape):
        ...     return shape, {"gain": jnp.ones(())}, {}
        >>> def apply(params, state, x, *, key=None, train=False):
        ...     return params["gain"] * x, state
        >>> gain = custom(init, apply, "Gain", output_shape=lambda s: s, pointwise=True)
        >>> gain.output_shape((4, 4, 3))
        (4, 4, 3)
    """
    hp = {"init": init, "apply": apply, "output_shape": output_shape}
    return leaf(
        _custom_rule, kind, hp, pointwise=pointwise, window=window, stochastic=stochastic,
        batch_coupled=batch_coupled,
    )  # fmt: skip
