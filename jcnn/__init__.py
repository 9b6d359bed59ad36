"""jcnn: a small functional CNN library on JAX.

Layers are ``(init, apply)`` pairs written for one example and batched with ``vmap``::

    import jax, jcnn
    from jcnn import layers as L

    net = L.serial(L.Conv(8, (5, 5)), L.Relu(), L.MaxPool((2, 2)), L.Flatten(), L.Dense(10))
    out_shape, params, state = net.init(jax.random.key(0), (28, 28, 1))
    ys, state = jcnn.batched(net.apply)(params, state, xs)

The training engine (:mod:`jcnn.training`) is at the top level too: ``jcnn.fit(net, (x, y),
...)`` (the function), ``jcnn.make_train_step``, ``jcnn.evaluate``, ``jcnn.predict``,
``jcnn.create_train_state``.

The package is laid out by concept (``jcnn/layers``, ``training``, ``data``, ``models``,
``interop``, ``tools``, ``course``). Modules load on demand: ``import jcnn; jcnn.viz`` works, and
so do the short names of modules that moved into those folders (``jcnn.porting`` is
:mod:`jcnn.interop.porting`, ``jcnn.privacy`` is :mod:`jcnn.training.privacy`; the table is
``jcnn.MOVED``), both as attributes and in ``import`` statements.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

from jcnn import layers, models
from jcnn.course import signal
from jcnn.layers import Layer, initializers, shapes, walk
from jcnn.layers.batch import batched
from jcnn.tools.flops import count_macs
from jcnn.tools.summary import count_params, init_shapes, output_shape, summary
from jcnn.training import (
    FitResult,
    TrainState,
    create_train_state,
    evaluate,
    fit,
    losses,
    make_train_step,
    predict,
)

__version__ = "0.1.0"

__all__ = [
    "FitResult",
    "Layer",
    "TrainState",
    "batched",
    "count_macs",
    "count_params",
    "create_train_state",
    "evaluate",
    "fit",
    "init_shapes",
    "initializers",
    "layers",
    "losses",
    "make_train_step",
    "models",
    "output_shape",
    "predict",
    "shapes",
    "signal",
    "summary",
    "walk",
]

#: Submodules loaded when first used (``jcnn.viz``): they import heavier packages.
_ON_DEMAND = ("data", "interop", "tools", "course", "training")

#: Short names of modules that live in a concept folder: ``jcnn.<short>`` is ``jcnn.<long>``.
MOVED = {
    "shapes": "layers.shapes",
    "lowering": "layers.lowering",
    "initializers": "layers.initializers",
    "batch": "layers.batch",
    "remat": "layers.remat",
    "precision": "layers.precision",
    "train": "training.legacy",
    "privacy": "training.privacy",
    "distributed": "training.distributed",
    "checkpoint": "training.checkpoint",
    "losses": "training.losses",
    "checks": "training.checks",
    "compile_cache": "training.compile_cache",
    "transfer": "models.transfer",
    "porting": "interop.porting",
    "export": "interop.export",
    "models.torchvision_bridge": "interop.torchvision",
    "summary": "tools.summary",
    "flops": "tools.flops",
    "receptive": "tools.receptive",
    "signal": "course.signal",
    "localization": "course.localization",
    "viz": "course.viz",
}


class _ShortNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import jcnn.porting`` (and ``from jcnn.porting import ...``) gives the module at its
    place in the layout: the same module object, so patching either name patches both."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        short = fullname.removeprefix("jcnn.")
        if fullname.startswith("jcnn.") and short in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(f"jcnn.{MOVED[spec.name.removeprefix('jcnn.')]}")
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # already executed under its own name; importlib has just set __spec__ to the short one
        module.__spec__ = self.own_spec


if not any(isinstance(finder, _ShortNames) for finder in sys.meta_path):
    sys.meta_path.append(_ShortNames())


def __getattr__(name: str) -> types.ModuleType:  # PEP 562: submodules load when first used
    if name in _ON_DEMAND or name in MOVED:
        return importlib.import_module(f"jcnn.{name}")
    raise AttributeError(f"module 'jcnn' has no attribute {name!r}")
