"""examples/colab_tpu.ipynb runs top to bottom on a CPU, and is committed without outputs.

The notebook is executed with nbclient in a real IPython kernel (the interpreter running the
tests, jcnn installed in it), from a temporary folder outside the repository, with
``JCNN_NOTEBOOK_QUICK=1`` (its tiny settings even where an accelerator is present), no
``$JCNN_DATA_DIR``, an empty ``$XDG_CACHE_HOME`` and the HTTP(S) proxies pointing at a closed
port: no data of this machine, no network. Every code cell must run without an error, and the
last one must print the final validation accuracy of both models.

Needs ``nbclient``, ``nbformat`` and ``ipykernel`` (the ``dev`` extra); skipped without them.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "colab_tpu.ipynb"

TIMEOUT_S = 240
"""Seconds the whole notebook may take (a cell that hangs fails the test at this limit too)."""

BUDGET_S = 120
"""What the notebook promises on a CPU; exceeding it fails, with the time, so it stays small."""

FINAL = re.compile(r"final val_accuracy: course CNN (\d\.\d{4}), ResNet (\d\.\d{4})")
_CLOSED_PROXY = "http://127.0.0.1:9"


def _source(cell) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _text(outputs) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
    return "".join(parts)


def test_the_committed_notebook_has_no_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{NOTEBOOK} has no code cells"
    dirty = [i for i, c in enumerate(nb["cells"]) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, (
        f"cells {dirty} of {NOTEBOOK.relative_to(REPO)} hold outputs or execution counts; clear "
        "them before committing (Jupyter/Colab: Edit > Clear all outputs; or, with nbconvert, "
        "`jupyter nbconvert --clear-output --inplace examples/colab_tpu.ipynb`)"
    )


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    """A kernelspec of THIS interpreter, found first (so no other 'python3' on the machine)."""
    pytest.importorskip("ipykernel")
    spec = tmp_path / "jupyter" / "kernels" / "jcnn-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "jcnn test", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "jcnn-test"


def test_notebook_runs_on_cpu(tmp_path, monkeypatch, kernel_name):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    # The kernel inherits this process's environment.
    monkeypatch.setenv("JCNN_NOTEBOOK_QUICK", "1")
    monkeypatch.delenv("JCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, _CLOSED_PROXY)
    for name in ("no_proxy", "NO_PROXY", "PYTHONPATH"):
        monkeypatch.delenv(name, raising=False)
    # No user profile or startup files in the kernel; connection files in tmp_path.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    try:  # matplotlib's font cache lives under XDG_CACHE_HOME: keep this one (no rebuild)
        import matplotlib

        monkeypatch.setenv(
            "MPLCONFIGDIR", os.environ.get("MPLCONFIGDIR") or matplotlib.get_cachedir()
        )
    except Exception:  # only a speed-up
        pass
    work = tmp_path / "cwd"
    work.mkdir()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name=kernel_name,
        allow_errors=True,  # run every cell; the errors are reported below, cell by cell
        resources={"metadata": {"path": str(work)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellTimeoutError as err:
        pytest.fail(f"{NOTEBOOK.name}: a cell ran past {TIMEOUT_S} s: {err}", pytrace=False)
    seconds = time.perf_counter() - start

    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    for i, cell in code:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if errors:
            err = errors[0]
            tb = "\n".join(err.get("traceback", []))
            tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)  # IPython colours its tracebacks
            pytest.fail(
                f"{NOTEBOOK.name} cell {i + 1}/{len(nb.cells)} raised {err.ename}: {err.evalue}"
                "\n--- cell source "
                f"(first lines) ---\n{_source(cell)[:600]}\n--- traceback tail ---\n"
                + "\n".join(tb.splitlines()[-25:]),
                pytrace=False,
            )
        assert cell.get("execution_count"), f"{NOTEBOOK.name} cell {i + 1} did not run"

    last_i, last = code[-1]
    printed = _text(last.outputs)
    match = FINAL.search(printed)
    assert match, (
        f"{NOTEBOOK.name}: the last cell ({last_i + 1}/{len(nb.cells)}) did not print the final metric line "
        f"'final val_accuracy: course CNN <acc>, ResNet <acc>'; it printed:\n{printed[-1000:]}"
    )
    for acc in match.groups():
        assert 0.0 <= float(acc) <= 1.0, match.group(0)
    everything = "".join(_text(c.outputs) for _, c in code)
    assert "tiny settings" in everything, "JCNN_NOTEBOOK_QUICK=1 did not select tiny settings"
    assert "identical arrays: True" in everything, "the checkpoint did not restore the same state"
    assert any("image/png" in o.get("data", {}) for _, c in code for o in c.outputs), (
        "no learning-curve image was displayed"
    )
    assert seconds < BUDGET_S, (
        f"{NOTEBOOK.name} took {seconds:.0f} s on this machine; its tiny settings promise under "
        f"{BUDGET_S} s on a CPU: make them smaller"
    )
