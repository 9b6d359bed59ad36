"""Two jax.distributed processes on 127.0.0.1: each reads only its shard of every global batch."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

from jcnn.data.stream import StreamSource
from tests.helpers.stream_worker import load
from tests.test_distributed import free_port, run_processes

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "stream_worker.py"


def test_two_processes_read_disjoint_shards_that_make_the_global_batch(tmp_path):
    port = free_port()
    commands = [
        [sys.executable, str(WORKER), "--process-id", str(pid), "--coordinator",
         f"127.0.0.1:{port}", "--out", str(tmp_path / f"p{pid}.npz")]
        for pid in range(2)
    ]  # fmt: skip
    run_processes(commands)
    p0, p1 = (dict(np.load(tmp_path / f"p{pid}.npz")) for pid in range(2))
    assert int(p0["process_count"]) == 2
    assert p0["labels"].shape == (5, 4) and p1["labels"].shape == (5, 4)  # 40 // 8 batches of 8/2
    seen0, seen1 = set(p0["labels"].ravel()), set(p1["labels"].ravel())
    assert not seen0 & seen1 and seen0 | seen1 == set(range(40))  # disjoint, together all
    np.testing.assert_array_equal(p0["pixels"], p0["labels"] % 256)  # each image its record's
    # The global batch of step k is process 0's rows then process 1's rows: the one-process
    # source's batch k, in order.
    whole = StreamSource(list(range(40)), functools.partial(load, size=2), batch_size=8, seed=5)
    for k, (_, labels) in enumerate(whole):
        np.testing.assert_array_equal(labels, np.concatenate([p0["labels"][k], p1["labels"][k]]))
    assert tuple(p0["global_shape"]) == (8, 2, 2, 1)
    np.testing.assert_array_equal(p0["global_labels_local"], p0["labels"][0])


FIT_WORKER = Path(__file__).resolve().parents[1] / "helpers" / "folder_fit_worker.py"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from tests.data.test_image_folder import make_folder

    return make_folder(tmp_path_factory.mktemp("fit_folder"), {"train": 8, "val": 3})


def _reference(folder: Path) -> dict[str, np.ndarray]:
    """The same run in this process, on one device and no mesh."""
    import jax

    from tests.helpers.folder_fit_worker import run

    result = run(str(folder), None)
    params = jax.tree.leaves(result.train_state.params)
    out = {k: np.asarray(result.history[k]) for k in ("val_loss", "val_accuracy", "train_loss")}
    return {**out, **{f"p{i}": np.asarray(a) for i, a in enumerate(params)}}


def _same_run(got: dict, want: dict) -> None:
    """float32 sums in another order (a mesh's all-reduce): equal to 1e-5."""
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("processes,devices", [(2, 1), (1, 2)])
def test_fit_on_an_image_folder_over_a_mesh_equals_one_device(folder, tmp_path, processes, devices):
    """Each process reads its shard of the training and validation folders; the validation
    sources' last batch (9 images in batches of 4) is padded, its padding left out."""
    port = free_port()
    commands = [
        [sys.executable, str(FIT_WORKER), "--folder", str(folder), "--out",
         str(tmp_path / f"p{pid}.npz"), "--processes", str(processes), "--process-id", str(pid),
         "--coordinator", f"127.0.0.1:{port}", "--devices", str(devices)]
        for pid in range(processes)
    ]  # fmt: skip
    run_processes(commands)
    want = _reference(folder)
    assert want["val_accuracy"][-1] > 0.5  # it learns (chance 1/3)
    for pid in range(processes):
        got = dict(np.load(tmp_path / f"p{pid}.npz"))
        assert int(got["devices"]) == 2 and int(got["processes"]) == processes
        _same_run(got, want)
