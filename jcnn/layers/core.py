"""The Layer type: one immutable value that states what a layer is and carries its functions.

::

    init(key, input_shape) -> (output_shape, params, state)
    apply(params, state, x, *, key=None, train=False) -> (y, new_state)

Shapes are per example and channels-last: ``(H, W, C)`` for images. Batching is ``jax.vmap``
(see :func:`jcnn.batched`). A :class:`Layer` unpacks as a pair (``init, apply = layer``) and
states its facts, so tools read them instead of guessing [NT's kernel_fn, Equinox's frozen
modules, Flux's printed Chains]:

* ``kind`` (``"Conv"``), ``name`` (its params key inside a parent), ``hparams`` (normalised
  hyper-parameters, an immutable mapping);
* ``children`` (``((key, layer), ...)``) and ``combine``, how a combinator joins them:
  ``"serial"``, ``"sum"`` (branches on the same input, added), ``"concat"`` (branches on the same
  input, concatenated), ``"parallel"`` (the i-th child on the i-th input), ``"repeat"`` or
  ``"gate"`` (``x * chain(x)``: the children in series give a factor for the input);
* ``pointwise`` (acts on each spatial position separately), ``window`` (the geometry of windowed
  layers) and :meth:`Layer.output_shape`, a pure shape function by integer arithmetic;
* ``wrappers`` (remat, a precision policy, inference mode) around its functions.

``init`` and ``apply`` are built from those fields by the layer's ``rule`` (a module-level
function), so two layers are equal exactly when they are the same layer: equality and hashing
cover every field, and a renamed layer is a different layer.

Example:
    >>> from jcnn import layers as L
    >>> conv = L.Conv(8, (5, 5))
    >>> conv.kind, conv.window.kernel_size, conv.output_shape((28, 28, 1))
    ('Conv', (5, 5), (24, 24, 8))
    >>> conv == L.Conv(8, (5, 5)), conv == conv.named("stem")
    (True, False)
    >>> init, apply = conv   # still a pair
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any, NamedTuple, Protocol

import jax

from jcnn.layers.checks import (  # noqa: F401  (re-exported: layers import them from core)
    _as_shape,
    channels_last,
    check_floating,
    check_key,
    check_rank,
    check_tree,
    example_shape,
    in_child,
    layer_error,
    locate,
    shape_of,
)
from jcnn.layers.hparams import _FUNCTIONS, _USUAL, Hparams, _freeze, _show, _visible  # noqa: F401
from jcnn.layers.walk import (  # noqa: F401
    Visit,
    _child,
    _edit_child,
    _walk,
    _with_inlined_children,
    walk,
)

Shape = tuple[int, ...]
Params = Any
State = Any
InitFn = Callable[..., tuple[Any, Params, State]]
ApplyFn = Callable[..., tuple[Any, State]]
ShapeFn = Callable[[Any], Any]


#: How a combinator joins its children (``None`` for a leaf).
COMBINES = ("serial", "parallel", "sum", "concat", "repeat", "gate")


class Fns(NamedTuple):
    """The functions of a layer, as its rule builds them."""

    init: InitFn
    apply: ApplyFn
    output_shape: ShapeFn


Rule = Callable[["Layer"], Fns]


class Window(NamedTuple):
    """Geometry of a windowed layer (Conv, pools), per spatial dim.

    Attributes:
        kernel_size, stride, dilation: tuples of ints.
        padding: the padding spec as given (``"SAME"``, ints, ``(lo, hi)`` pairs); resolve it for
            an input with :func:`jcnn.shapes.resolve_padding`.
        transposed: True for transposed convolutions (the window scatters instead of gathers).
    """

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: Any
    transposed: bool = False


class Wrapper(Protocol):
    """Something that wraps a layer's functions (remat, a precision policy, inference mode).

    A wrapper is a hashable value (a frozen dataclass) with a ``label`` for ``repr`` and
    ``wrap(fns) -> fns``; it keeps the params and state trees and the output shape.
    """

    @property
    def label(self) -> str: ...

    def wrap(self, fns: Fns) -> Fns: ...


@dataclasses.dataclass(frozen=True, repr=False)
class Layer:
    """A layer: its facts and, built from them by ``rule``, its ``init`` and ``apply``.

    Attributes:
        rule: module-level ``rule(layer) -> Fns(init, apply, output_shape)``.
        kind: what the layer is (``"Conv"``), whatever it is named.
        name: its params key inside a parent combinator (default: ``kind``).
        explicit_name: True when the user chose the name (kept verbatim as the key).
        hparams: normalised hyper-parameters (:class:`Hparams`).
        children: ``((key, child), ...)`` for combinators; ``()`` for leaves.
        combine: how the children are joined (one of :data:`COMBINES`), ``None`` for leaves.
        pointwise: acts on each spatial position separately (activations, Dropout, Dense on the
            channel axis, BatchNorm); receptive fields pass through it.
        window: :class:`Window` of windowed layers, else ``None``.
        wrappers: wrappers around the functions, innermost first.
        inline: its children's params sit in its parent's dict (:meth:`inlined`).
        stochastic: ``apply`` draws random numbers from its ``key`` (Dropout,
            StochasticDepth, custom layers unless they say otherwise); a combinator is
            stochastic when a child is, and hands keys only to its stochastic children
            (:func:`child_keys`), so a deterministic network traces no key splits.
        batch_coupled: ``apply`` in training mixes the examples of a batch (statistics over
            the named batch axis: BatchNorm), so one example's output depends on the others;
            a combinator is batch-coupled when a child is. Per-example tools (DP-SGD's
            per-example gradients) refuse such layers by this fact. StochasticDepth is not
            batch-coupled (its ``mode="batch"`` shares a random draw, not data).
    """

    rule: Rule
    kind: str
    name: str = ""
    explicit_name: bool = False
    hparams: Mapping[str, Any] = dataclasses.field(default_factory=Hparams)  # an Hparams
    children: tuple[tuple[str, Layer], ...] = ()
    combine: str | None = None
    pointwise: bool = False
    window: Window | None = None
    wrappers: tuple[Wrapper, ...] = ()
    stochastic: bool = False
    batch_coupled: bool = False
    inline: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.hparams, Hparams):
            set_(self, "hparams", Hparams(self.hparams))
        set_(self, "children", tuple((str(k), c) for k, c in self.children))
        if self.children:
            set_(self, "stochastic", any(c.stochastic for _, c in self.children))
            set_(self, "batch_coupled", any(c.batch_coupled for _, c in self.children))
        set_(self, "wrappers", tuple(self.wrappers))
        if not self.name:
            set_(self, "name", self.kind)
        if self.window is not None:
            set_(self, "window", Window(*(_freeze("window", v) for v in self.window)))
        if self.combine not in (None, *COMBINES):
            raise ValueError(
                f"Layer combine must be one of {COMBINES} or None, got {self.combine!r}"
            )
        if (self.combine is None) != (not self.children):
            raise ValueError(f"{self.kind}: a layer has children exactly when it has a combine")
        if self.inline and not self.children:
            raise ValueError(
                f"{self.name}: only a combinator can be inlined (its children's keys move into "
                "its parent's params); a leaf's params are its own"
            )
        if any(child.inline for _, child in self.children):
            keys = self.tree_keys
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise ValueError(
                    f"{self.name}: the keys {twice} appear twice in its params once its inlined "
                    "children's keys are moved up; rename one with .named()"
                )

    def __hash__(self) -> int:  # cached: hashing a deep tree is recursive
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in dataclasses.fields(self)))
            self.__dict__["_hash"] = cached
        return cached

    @cached_property
    def _fns(self) -> Fns:
        return _built_fns(self)

    @cached_property
    def tree_keys(self) -> tuple[str, ...]:
        """The keys of this combinator's params and state dicts: its children's keys, with an
        inlined child's own keys in its place (see :meth:`inlined`)."""
        keys: list[str] = []
        for key, child in self.children:
            keys.extend(child.tree_keys if child.inline else (key,))
        return tuple(keys)

    @property
    def init(self) -> InitFn:
        """``init(key, input_shape) -> (output_shape, params, state)``."""
        return self._fns.init

    @property
    def apply(self) -> ApplyFn:
        """``apply(params, state, x, *, key=None, train=False) -> (y, new_state)``."""
        return self._fns.apply

    def output_shape(self, input_shape: Any) -> Any:
        """The output shape of one example for ``input_shape``, by integer arithmetic.

        Raises the same ShapeError as ``init`` for an input the layer cannot take. Results are
        remembered per layer value (tools such as ``summary`` ask about every subtree).
        """
        shape = example_shape(self.name, input_shape)
        cache = self.__dict__.setdefault("_shapes", {})
        if shape not in cache:
            cache[shape] = self._fns.output_shape(shape)
        return cache[shape]

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter((self.init, self.apply))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> Callable[..., Any]:
        return (self.init, self.apply)[index]

    def named(self, name: str) -> Layer:
        """The same layer under another name (its params key in a parent combinator)."""
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"layer name must be a non-empty string without '/', got {name!r}")
        return dataclasses.replace(self, name=name, explicit_name=True)

    def inlined(self) -> Layer:
        """This combinator with its children's params keyed directly in its parent's dict.

        A parent normally keeps a child's params under the child's key. An inlined child's
        children sit beside the parent's other children instead, so a block written with
        combinators can have the flat names its architecture uses: torchvision's
        ``layer1.0.conv1`` is a residual block whose body serial is inlined. The dataflow is
        unchanged; :meth:`walk` gives an inlined layer its parent's path.

        Example:
            >>> from jcnn import layers as L
            >>> body = L.serial(L.Conv(4, 3, padding=1).named("conv1"), L.Relu().named("relu"))
            >>> block = L.residual(body.inlined(), name="0")
            >>> sorted(block.init(jax.random.key(0), (8, 8, 4))[1])
            ['conv1', 'relu', 'shortcut']
        """
        return dataclasses.replace(self, inline=True)

    def walk(self, input_shape: Any) -> Iterator[Visit]:
        """Every layer of the network, outermost first, with its path and shapes.

        Yields :class:`Visit` ``(path, layer, in_shape, out_shape)`` for this layer (path
        ``""``) and then, depth first in order, for each child: the path joins the child keys
        with ``/`` and is the address of its params in the params tree (an inlined child shares
        its parent's path). Shapes come from the combinators' own facts (``combine``), by
        integer arithmetic: nothing is traced or allocated. With ``input_shape=None`` the
        walk gives the structure alone (shapes ``None``), for tools that need no shapes.

        Example:
            >>> from jcnn import layers as L
            >>> net = L.serial(L.Conv(8, 3), L.Relu(), name="net")
            >>> [(v.path, v.out_shape) for v in net.walk((10, 10, 1))]
            [('', (8, 8, 8)), ('Conv_0', (8, 8, 8)), ('Relu_0', (8, 8, 8))]
        """
        shape = None if input_shape is None else example_shape(self.name, input_shape)
        yield from _walk(self, "", shape)

    def at(self, path: str) -> Layer:
        """The sub-layer at ``path`` (child keys joined by ``/``, as :meth:`walk` gives them).

        Raises:
            KeyError: no layer there; the message lists the keys at the level that missed.

        Example:
            >>> from jcnn import layers as L
            >>> net = L.serial(L.Conv(8, 3), L.serial(L.Dense(4), name="head"))
            >>> net.at("head/Dense_0").kind
            'Dense'
        """
        layer = self
        for depth, key in enumerate(k for k in path.split("/") if k):
            found = _child(layer, key)
            if found is None:
                at = "/".join(path.split("/")[:depth]) or "<root>"
                raise KeyError(
                    f"path {path!r}: no child {key!r} under {at}: {list(layer.tree_keys)}"
                )
            layer = found
        return layer

    def replace_at(self, path: str, new: Layer | Callable[[Layer], Layer]) -> Layer:
        """A copy with the sub-layer at ``path`` replaced by ``new`` (a Layer, or a function of
        the old one): surgery that keeps every other child and its key, so trained params of
        the rest plug in unchanged.

        Example:
            >>> from jcnn import layers as L
            >>> net = L.serial(L.Conv(8, 3), L.Flatten(), L.Dense(10).named("fc"))
            >>> net.replace_at("fc", L.Dense(2)).output_shape((5, 5, 1))
            (2,)
        """
        keys = [k for k in path.split("/") if k]
        if not keys:
            return new(self) if callable(new) and not isinstance(new, Layer) else new
        self.at(path)  # a clear KeyError when the path is wrong
        head, rest = keys[0], "/".join(keys[1:])
        return _edit_child(self, head, lambda child: child.replace_at(rest, new))

    def replace(self, **changes: Any) -> Layer:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def wrapped(self, wrapper: Wrapper) -> Layer:
        """This layer with ``wrapper`` around its functions: same facts, tree and shapes."""
        return dataclasses.replace(self, wrappers=(*self.wrappers, wrapper))

    def child_input_shapes(self, input_shape: Any) -> list[Any]:
        """The input shape of each child for ``input_shape``, from ``combine`` (no tracing)."""
        shape = _as_shape(input_shape)
        if self.combine in ("serial", "gate"):  # a chain on the input
            shapes_in = []
            for _, child in self.children:
                shapes_in.append(shape)
                shape = child.output_shape(shape)
            return shapes_in
        if self.combine == "parallel":
            return list(shape)
        return [shape] * len(self.children)

    def describe(self) -> str:
        """One line: ``kind(hparams)`` inside the wrappers' labels, e.g. ``remat(Conv(...))``."""
        text = f"{self.kind}({_visible(self.hparams)})"
        for wrapper in self.wrappers:
            text = f"{wrapper.label}({text})"
        return text

    def __repr__(self) -> str:
        return self._pretty("")

    def _pretty(self, indent: str) -> str:
        suffix = f".named({self.name!r})" if self.explicit_name else ""
        suffix += ".inlined()" if self.inline else ""
        if not self.children:
            return self.describe() + suffix
        inner = indent + "  "
        lines = [f"{inner}{child._pretty(inner)}," for _, child in self.children]
        hp = _visible(self.hparams)
        head = f"{self.kind}(" + (f"{hp}," if hp else "")
        text = "\n".join([head, *lines, f"{indent})"])
        for wrapper in self.wrappers:
            text = f"{wrapper.label}({text})"
        return text + suffix


@functools.lru_cache(maxsize=8192)
def _built_fns(layer: Layer) -> Fns:
    """The functions of ``layer``, built once per layer VALUE: equal layers share their
    ``init`` and ``apply`` objects, so ``jax.jit`` (which caches by function) compiles an equal
    network once. (The 8,192 most recent layer values are remembered; a live layer keeps its
    own functions in any case.)"""
    fns = layer.rule(layer)
    if any(child.inline for _, child in layer.children):
        fns = _with_inlined_children(layer, fns)
    for wrapper in layer.wrappers:
        fns = wrapper.wrap(fns)
    init, label = fns.init, layer.name

    def checked_init(key, input_shape):
        return init(key, example_shape(label, input_shape))

    return fns._replace(init=checked_init)


def same_shape(input_shape: Any) -> Any:
    """The output shape of a shape-preserving layer: ``input_shape`` itself."""
    return input_shape


def leaf(
    rule: Rule,
    kind: str,
    hparams: Mapping[str, Any] | None = None,
    *,
    pointwise: bool = False,
    window: Window | None = None,
    stochastic: bool = False,
    batch_coupled: bool = False,
) -> Layer:
    """A leaf layer (no children) of ``kind`` built by ``rule``; ``stochastic`` when its apply
    draws random numbers from its key, ``batch_coupled`` when it mixes a batch's examples."""
    return Layer(
        rule,
        kind,
        hparams=Hparams(hparams or {}),
        pointwise=pointwise,
        window=window,
        stochastic=stochastic,
        batch_coupled=batch_coupled,
    )


def parameter_free(output_shape: ShapeFn, forward: Callable[[Any], Any]) -> Fns:
    """The functions of a layer with no params and no state: ``y = forward(x)``.

    ``init`` returns ``output_shape(input_shape), {}, {}``; ``apply`` ignores ``key`` and
    ``train`` (``forward`` does its own input checks).
    """

    def init(key, input_shape):
        del key
        return output_shape(input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        return forward(x), state

    return Fns(init, apply, output_shape)


def init_shapes(layer: Layer | Fns, input_shape: Any) -> tuple[Any, Any, Any]:
    """``layer.init`` under ``jax.eval_shape``: output shape, and params/state as ShapeDtypeStructs.

    Nothing is allocated, so this works for ImageNet-sized models on a laptop.

    Example:
        >>> from jcnn import layers as L
        >>> out, params, _ = init_shapes(L.Dense(4096), (25088,))
        >>> out, params["kernel"].shape
        ((4096,), (25088, 4096))
    """
    box = []

    def run(key):
        out, params, state = layer.init(key, input_shape)
        box.append(out)
        return params, state

    params, state = jax.eval_shape(run, jax.random.key(0))
    return box[0], params, state


def child_keys(
    key: jax.Array | None, children: Sequence[tuple[str, Layer]]
) -> list[jax.Array | None]:
    """The key of each child in apply: independent keys for the stochastic children only.

    ``None`` for a child that draws no random numbers; ``key`` itself when one child does (no
    split is traced); ``jax.random.split(key, m)`` among ``m > 1`` of them. Each random draw of a
    network so sees its own key, and a network without Dropout or StochasticDepth traces no key
    arithmetic at all (each threefry split costs XLA compile time).

    Example:
        >>> from jcnn import layers as L
        >>> keys = child_keys(key, [("a", L.Relu()), ("b", L.Dropout(0.5)), ("c", L.Relu())])
        >>> [k is None for k in keys], keys[1] is key
        ([True, False, True], True)
    """
    keys: list[jax.Array | None] = [None] * len(children)
    users = [i for i, (_, child) in enumerate(children) if child.stochastic]
    if key is None or not users:
        return keys
    if len(users) == 1:
        keys[users[0]] = key
        return keys
    for i, sub in zip(users, jax.random.split(key, len(users))):
        keys[i] = sub
    return keys


def per_channel(v: jax.Array, ndim: int) -> jax.Array:
    """A ``(C,)`` vector reshaped to ``(1, ..., 1, C)`` of rank ``ndim``: explicit broadcasting
    over the channels-last axis (jcnn runs clean under ``jax_numpy_rank_promotion="raise"``)."""
    return v.reshape((1,) * (ndim - 1) + v.shape)
