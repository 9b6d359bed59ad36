"""Two jax.distributed processes on 127.0.0.1: each reads only its shard of every global batch."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

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
