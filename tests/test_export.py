"""jcnn.export: a serialized jax.export artifact that runs without jcnn, with a symbolic batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jcnn
from jcnn import export, models
from jcnn import layers as L

RUN_WITHOUT_JCNN = textwrap.dedent(
    """
    import sys
    import jax, numpy as np
    exported = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
    x = np.load(sys.argv[2])
    np.save(sys.argv[3], np.asarray(exported.call(x)))
    np.save(sys.argv[4], np.asarray(exported.call(x[:1])))  # another batch size
    assert not any(m == "jcnn" or m.startswith("jcnn.") for m in sys.modules), "jcnn imported"
    """
)


def test_a_resnet18_artifact_runs_in_a_process_without_jcnn(tmp_path):
    net = models.resnet18(num_classes=10)
    _, params, state = net.init(jax.random.key(0), (32, 32, 3))
    state = jax.tree.map(lambda a: a + 0.1 * jax.random.uniform(jax.random.key(1), a.shape), state)
    path = tmp_path / "resnet18.jax"
    exported = export.save(path, net, params, state, (32, 32, 3), platforms=("cpu", "cuda"))
    assert exported.platforms == ("cpu", "cuda") and path.stat().st_size > 1e6
    x = np.asarray(jax.random.normal(jax.random.key(2), (3, 32, 32, 3)), np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_JCNN, str(path), str(tmp_path / "x.npy"),
         str(tmp_path / "y3.npy"), str(tmp_path / "y1.npy")],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    want, _ = jcnn.batched(net.apply)(params, state, x, train=False)  # inference mode
    np.testing.assert_allclose(np.load(tmp_path / "y3.npy"), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "y1.npy"), want[:1], rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_named(tmp_path):
    net = L.serial(L.Conv(2, 3), L.Flatten(), L.Dense(2))
    _, params, state = net.init(jax.random.key(0), (6, 6, 1))
    with pytest.raises(ValueError, match="input_shape=.*without the batch"):
        export.save(tmp_path / "a.jax", net, params, state, (0, 6, 1))
    with pytest.raises(ValueError, match="platforms=.*'cpu'"):
        export.save(tmp_path / "a.jax", net, params, state, (6, 6, 1), platforms=("gpu",))
    with pytest.raises(jcnn.shapes.ShapeError, match="Conv"):
        export.save(tmp_path / "a.jax", net, params, state, (2, 2, 1))
    assert not list(tmp_path.iterdir())  # nothing written on failure


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_onnx_equals_jcnn_in_onnxruntime(name, tmp_path):
    """The optional ONNX path (``pip install "jcnn[onnx]"``); skipped without it."""
    pytest.importorskip("jax2onnx", reason="jax2onnx not installed (the optional onnx extra)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (onnx extra)")
    net = getattr(models, name)(num_classes=10)
    _, params, state = net.init(jax.random.key(0), (64, 64, 3))
    path = export.to_onnx(tmp_path / f"{name}.onnx", net, params, state, (64, 64, 3))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.asarray(jax.random.normal(jax.random.key(1), (3, 64, 64, 3)), np.float32)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    want, _ = jcnn.batched(net.apply)(params, state, x, train=False)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_one_sided_pooling_pads_convert_to_onnx(tmp_path):
    """Ceil-mode pooling pads one side only (SqueezeNet's); the padding block on the other side
    must not be an empty array, which jax2onnx declares with a wrong shape."""
    pytest.importorskip("jax2onnx", reason="jax2onnx not installed (the optional onnx extra)")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (onnx extra)")
    net = L.serial(
        L.Conv(4, 3), L.MaxPool(3, stride=2, padding=[(0, 1), (1, 0)]),
        L.AvgPool(2, padding=[(0, 1), (0, 0)]), L.Flatten(),
    )  # fmt: skip
    _, params, state = net.init(jax.random.key(0), (12, 11, 2))
    path = export.to_onnx(tmp_path / "pads.onnx", net, params, state, (12, 11, 2))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.asarray(jax.random.normal(jax.random.key(1), (3, 12, 11, 2)), np.float32)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    want, _ = jcnn.batched(net.apply)(params, state, x, train=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_onnx_form_of_max_pooling_is_equal():
    net = L.serial(L.Conv(3, 3), L.MaxPool(3, stride=2, padding=1), L.MaxPool(2), L.Flatten())
    _, params, state = net.init(jax.random.key(0), (13, 11, 2))
    x = jax.random.normal(jax.random.key(1), (4, 13, 11, 2))
    friendly = export.onnx_friendly(net, (13, 11, 2))
    assert friendly.describe() == net.describe() and friendly != net
    want, _ = jcnn.batched(net.apply)(params, state, x)
    got, _ = jcnn.batched(friendly.apply)(params, state, x)
    np.testing.assert_array_equal(got, want)  # a max of the same values: exact
