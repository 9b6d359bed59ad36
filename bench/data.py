"""``python -m bench.data``: images/s of jcnn's training input pipeline against torchvision's.

    python -m bench.data                          # 1024 JPEGs, batch 64, workers 0, 1, 2
    python -m bench.data --workers 1,2 --reps 5   # interleaved repetitions per row
    python -m bench.data --quick                  # 64 images, 1 repetition: a smoke test

Both pipelines do the same work per image on a generated folder of ImageNet-sized JPEGs (default
500x375, quality 90, about 100 KB each: smooth random colour fields plus grain, in a few
classes; made once and cached under ``--cache``): decode with Pillow (RGB), random-resized-crop
to 224 (scale 0.08-1, ratio 3/4-4/3, bilinear), horizontal flip, uint8 batch; no normalisation
on either side (jcnn normalises on the device).

* ``jcnn``: ``jcnn.data.image_folder(root, train=True, image_size=224, batch_size=B,
  workers=W)`` (Grain ``mp_prefetch`` worker processes; ``W = 0``: in this process); batches
  ``uint8 (B, 224, 224, 3)``.
* ``torchvision``: ``ImageFolder(root, RandomResizedCrop(224) + RandomHorizontalFlip() +
  PILToTensor())`` and ``DataLoader(batch_size=B, num_workers=W, shuffle=True,
  drop_last=True)``; batches ``uint8 (B, 3, 224, 224)``. It runs in a worker process of
  ``--torch-python`` (default: this interpreter when it has torchvision), so jcnn's environment
  never needs torch; without one the row says ``skipped``.

Each repetition is one block per pipeline, interleaved (jcnn, torchvision, jcnn, ...): a fresh
source (jcnn) or loader (torchvision, ``persistent_workers=True`` as a jcnn source keeps its
workers across epochs) read for 2 + ``--timed`` (3) epochs back to back, then closed.
``images/s`` is over the timed epochs: not the first, which starts the workers, nor the second,
which drains what one worker read ahead while it waited for the others to start (so timing
begins in the steady state, where what is in flight at its start and at its end balance; each
jcnn process holds at most ``buffer`` batches ready, torchvision ``prefetch_factor``);
``start-up s`` is the first epoch's time less its images at that rate; ``first batch s`` the
time to the first batch of a fresh pipeline. Medians over the repetitions (``spread``: min-max
of images/s); ``vs torchvision`` is jcnn's images/s over torchvision's at the same workers and
batch (> 1: jcnn faster). Each jcnn process loads batches in
:func:`jcnn.data.stream.default_threads` threads (the cores over the processes), which Pillow's
decode and resize use beside the GIL; torchvision's ``W = 0`` is one thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bench.process import ROOT, Worker

TAG = "@@DATA "
DEFAULT_CACHE = Path("~/.cache/jcnn/bench_data").expanduser()
#: Untimed epochs before the timed ones: worker start-up, then a drain of the read-ahead.
WARM_EPOCHS = 2


# ---------------------------------------------------------------------------------------------
# The generated folder
# ---------------------------------------------------------------------------------------------


def make_folder(
    cache: Path,
    images: int,
    size: tuple[int, int] = (500, 375),
    classes: int = 4,
    quality: int = 90,
    seed: int = 0,
) -> Path:
    """A folder ``cache/<params>/<class>/<i>.jpg`` of ``images`` JPEGs of ``size`` (width,
    height), made once: a later call with the same parameters returns it as it is.

    Content: a smooth random colour field (an 8x6 random image resized bicubically) plus
    Gaussian grain (luminance sigma 20, colour sigma 7), so the JPEGs are about as large as
    ImageNet's (about 100 KB at 500x375, quality 90) and decode at a realistic speed.
    """
    from PIL import Image

    width, height = size
    folder = cache / f"{width}x{height}_n{images}_c{classes}_q{quality}_s{seed}"
    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (folder / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), np.float32)
        base += rng.normal(0.0, 20.0, (height, width, 1)).astype(np.float32)
        base += rng.normal(0.0, 7.0, (height, width, 3)).astype(np.float32)
        image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        image.save(folder / f"class_{i % classes:02d}" / f"{i:05d}.jpg", quality=quality)
    done.write_text(json.dumps({"images": images, "size": [width, height]}))
    return folder


# ---------------------------------------------------------------------------------------------
# One epoch of each pipeline
# ---------------------------------------------------------------------------------------------


def _block(epochs: Callable[[], Iterable[Any]], batch_size: int, timed: int) -> dict[str, Any]:
    """Epochs of one source or loader, back to back: the first (worker start-up), one more
    untimed (it drains what a pipeline read ahead while its workers started, so the timed
    epochs begin in the steady state) and ``timed`` timed ones."""
    out: dict[str, Any] = {"epochs_s": []}
    for e in range(timed + WARM_EPOCHS):
        start, n = time.perf_counter(), 0
        for _ in epochs():
            n += 1
            if e == 0 and n == 1:
                out["first_batch_s"] = time.perf_counter() - start
        seconds = time.perf_counter() - start
        if e == 0:
            out["first_epoch_s"], out["images"] = seconds, n * batch_size
        elif e >= WARM_EPOCHS:
            out["epochs_s"].append(seconds)
    return out


def jcnn_block(folder: Path, workers: int, batch: int, crop: int, timed: int) -> dict[str, Any]:
    """Epochs of one ``jcnn.data.image_folder`` training source (its workers live across them)."""
    from jcnn.data import image_folder

    source = image_folder(
        folder, train=True, image_size=crop, batch_size=batch, workers=workers, seed=0,
        shard_index=0, shard_count=1,
    )  # fmt: skip
    try:
        return _block(lambda: source, batch, timed)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def import_torchvision() -> Any:
    """torchvision with its ``torchvision::`` fake-kernel registrations skipped (its C extension
    does not load beside a CPU torch build; as tests/fixtures/make_torchvision_fixtures.py)."""
    import torch

    original = torch.library.register_fake

    def skip_torchvision(op: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(op, str) and op.startswith("torchvision::"):
            return lambda fn: fn
        return original(op, *args, **kwargs)

    torch.library.register_fake = skip_torchvision
    try:
        import torchvision
    finally:
        torch.library.register_fake = original
    return torchvision


def torch_block(folder: Path, workers: int, batch: int, crop: int, timed: int) -> dict[str, Any]:
    """Epochs of one torchvision ``ImageFolder`` + ``DataLoader`` (``persistent_workers``)."""
    import torch

    tv = import_torchvision()
    from torchvision import transforms as T

    transform = T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), T.PILToTensor()])
    dataset = tv.datasets.ImageFolder(str(folder), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
        generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0,
    )  # fmt: skip
    return _block(lambda: loader, batch, timed)  # its persistent workers stop with it


def torch_worker() -> None:
    """The torchvision side: answers one JSON line per request line on stdin."""
    try:
        import_torchvision()
        import torch

        _say({"ready": True, "torch": torch.__version__, "torchvision": _tv_version()})
    except Exception as err:  # noqa: BLE001 - any import failure means "skip this row"
        _say({"skip": f"torchvision not importable: {type(err).__name__}: {err}"})
        return
    for line in sys.stdin:
        if not line.strip() or line.strip() == "quit":
            break
        req = json.loads(line)
        try:
            _say(torch_block(Path(req["folder"]), req["workers"], req["batch"], req["crop"],
                             req["timed"]))  # fmt: skip
        except Exception as err:  # noqa: BLE001
            _say({"skip": f"torchvision failed: {type(err).__name__}: {err}"})
            return


def _tv_version() -> str:
    import torchvision

    return str(torchvision.__version__)


def _say(obj: dict) -> None:
    sys.stdout.write(TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


class TorchSide(Worker):
    """A ``--torch-worker`` process of ``python`` and its tagged replies."""

    def __init__(self, python: str, timeout: float) -> None:
        super().__init__([python, "-m", "bench.data", "--torch-worker"], timeout, TAG)

    def epoch(self, **request: Any) -> dict:
        """One block of epochs (:func:`torch_block`'s figures), or ``{"skip": why}``."""
        self.send(json.dumps(request))
        return self.read()

    def close(self) -> None:
        """Asks the worker to quit (its persistent loader workers with it), else kills it."""
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()


def default_torch_python() -> str | None:
    """This interpreter when it has torch and torchvision (found, not imported), else None."""
    if importlib.util.find_spec("torch") and importlib.util.find_spec("torchvision"):
        return sys.executable
    return None


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------


def measure(
    *,
    images: int = 1024,
    size: tuple[int, int] = (500, 375),
    classes: int = 4,
    batch: int = 64,
    workers: Iterable[int] = (0, 1, 2),
    crop: int = 224,
    reps: int = 3,
    timed: int = 3,
    cache: Path | None = None,
    torch_python: str | None = "default",
    timeout: float = 600.0,
    log: Callable[[str], None] = print,
) -> dict:
    """The data benchmark's report: settings, the torchvision side's versions and one row per
    (pipeline, workers) with the per-repetition figures and their medians."""
    if torch_python == "default":
        torch_python = default_torch_python()
    cache = Path(cache) if cache else DEFAULT_CACHE
    batch = min(batch, images)
    t0 = time.perf_counter()
    folder = make_folder(cache, images, size, classes)
    made_s = time.perf_counter() - t0
    sizes = [p.stat().st_size for p in folder.rglob("*.jpg")]
    log(
        f"data: {len(sizes)} JPEGs {size[0]}x{size[1]} (mean {np.mean(sizes) / 1e3:.0f} KB) in "
        f"{folder} ({made_s:.1f} s); batch {batch}, crop {crop}, {reps} reps, "
        f"nproc {os.cpu_count()}"
    )
    report: dict[str, Any] = {
        "folder": str(folder),
        "images": len(sizes),
        "size": list(size),
        "mean_jpeg_kb": float(np.mean(sizes) / 1e3),
        "batch": batch,
        "crop": crop,
        "reps": reps,
        "nproc": os.cpu_count(),
        "load": ["{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())],
        "rows": [],
    }
    torch_side = None
    torch_skip = "torchvision not found (give --torch-python PATH)"
    if torch_python:
        torch_side = TorchSide(torch_python, timeout)
        hello = torch_side.read()
        if "skip" in hello:
            torch_skip, torch_side = hello["skip"], None
        else:
            report["torch"], report["torchvision"] = hello["torch"], hello["torchvision"]
    try:
        for w in workers:
            jc: dict[str, Any] = {"pipeline": "jcnn", "workers": w, "batch": batch, "runs": []}
            tv: dict[str, Any] = {"pipeline": "torchvision", "workers": w, "batch": batch,
                                  "runs": []}  # fmt: skip
            for _ in range(reps):
                jc["runs"].append(jcnn_block(folder, w, batch, crop, timed))
                if torch_side is not None:
                    got = torch_side.epoch(folder=str(folder), workers=w, batch=batch,
                                           crop=crop, timed=timed)  # fmt: skip
                    if "skip" in got:
                        torch_skip, torch_side = got["skip"], None
                    else:
                        tv["runs"].append(got)
            if torch_side is None:
                tv = {**tv, "skip": torch_skip, "runs": []}
            for row in (jc, tv):
                summarise(row)
            if jc.get("images_per_s") and tv.get("images_per_s"):
                jc["vs_torchvision"] = jc["images_per_s"] / tv["images_per_s"]
            report["rows"] += [jc, tv]
            log(table([jc, tv], header=False))
    finally:
        if torch_side is not None:
            torch_side.close()
    report["load"].append("{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return report


def block_figures(run: dict) -> dict:
    """One block's figures: images/s over its timed epochs, the first epoch's excess over that
    rate (the start-up), the first batch."""
    rate = run["images"] * len(run["epochs_s"]) / sum(run["epochs_s"])
    return {
        "images_per_s": rate,
        "startup_s": max(run["first_epoch_s"] - run["images"] / rate, 0.0),
        "first_batch_s": run.get("first_batch_s"),
    }


def summarise(row: dict) -> None:
    """Medians (and the min-max spread of images/s) over a row's repetitions."""
    figures = [block_figures(run) for run in row.get("runs", [])]
    for key in ("images_per_s", "startup_s", "first_batch_s"):
        vals = [f[key] for f in figures if f.get(key) is not None]
        row[key] = statistics.median(vals) if vals else None
        if key == "images_per_s" and vals:
            row["spread"] = [min(vals), max(vals)]


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict], header: bool = True) -> str:
    """A Markdown table of :func:`measure`'s rows."""
    lines = (
        [
            "| pipeline | workers | batch | images/s | spread | vs torchvision | start-up s "
            "| first batch s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        if header
        else []
    )
    for r in rows:
        if "skip" in r:
            lines.append(
                f"| {r['pipeline']} | {r['workers']} | {r['batch']} | skipped: "
                f"{' '.join(r['skip'].split())[:60]} | | | | |"
            )
            continue
        spread = r.get("spread")
        lines.append(
            f"| {r['pipeline']} | {r['workers']} | {r['batch']} | {_f(r['images_per_s'], '.0f')} "
            f"| {'-' if not spread else f'{spread[0]:.0f}-{spread[1]:.0f}'} "
            f"| {_f(r.get('vs_torchvision'), '.2f')} | {_f(r['startup_s'], '.2f')} "
            f"| {_f(r['first_batch_s'], '.2f')} |"
        )
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.data",
        description=__doc__.split("\n")[0].strip("`: "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--images", type=int, default=None, help="images (default 1024; --quick 64)")
    p.add_argument("--size", type=_size, default=(500, 375), help="WxH of the JPEGs (500x375)")
    p.add_argument("--classes", type=int, default=4, help="class folders (default 4)")
    p.add_argument("--batch", type=int, default=None, help="batch (default 64; --quick 16)")
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (0,1,2)")
    p.add_argument("--crop", type=int, default=224, help="random-resized-crop side (224)")
    p.add_argument(
        "--reps", type=int, default=None, help="interleaved repetitions per row (3; --quick 1)"
    )
    p.add_argument("--timed", type=int, default=3, help="timed epochs per block (3)")
    p.add_argument("--quick", action="store_true", help="64 images, 1 repetition: a smoke test")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"folder for the generated JPEGs (default {DEFAULT_CACHE}; --quick: a temporary one)",
    )
    p.add_argument(
        "--torch-python",
        default="default",
        help="a Python with torch and torchvision for the torchvision rows (default: this one, "
        "when it has them); 'none' skips them",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="JSON file (default runs/bench/data.json)"
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per torchvision reply")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.images = args.images or (64 if args.quick else 1024)
    args.batch = args.batch or (16 if args.quick else 64)
    args.reps = args.reps or (1 if args.quick else 3)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.torch_python == "none":
        args.torch_python = None
    if args.images < 2 or args.reps < 1 or any(w < 0 for w in args.workers):
        p.error("--images >= 2, --reps >= 1 and --workers >= 0 please")
    return args


def docs_section(report: dict | None, command: str = "python -m bench.data") -> list[str]:
    """A section for docs/benchmarks.md from a :func:`measure` report (empty without one)."""
    if not report:
        return []
    versions = (
        f"torch {report['torch']}, torchvision {report['torchvision']}"
        if report.get("torch")
        else "torchvision not installed: its rows are skipped"
    )
    return [
        SECTION,
        "",
        f"`{command}`: {report['images']} JPEGs of {report['size'][0]}x{report['size'][1]} "
        f"(quality 90, mean {report['mean_jpeg_kb']:.0f} KB), batch {report['batch']}, crop "
        f"{report['crop']}, {report['reps']} interleaved repetitions, nproc {report['nproc']}, "
        f"load average before / after {report['load'][0]} / {report['load'][-1]}; {versions}.",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        table(report["rows"]),
        "",
    ]


SECTION = "## Data: the training input pipeline against torchvision"


def kept_section(page: str) -> list[str]:
    """This benchmark's section as it stands in ``page`` (docs/benchmarks.md), so a rewrite of the
    page by a run without the data benchmark keeps it; empty when the page has none."""
    lines = page.splitlines()
    if SECTION not in lines:
        return []
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    kept = lines[start:end]
    while kept and not kept[-1].strip():
        kept.pop()
    return [*kept, ""]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.torch_worker:
        torch_worker()
        return 0
    cache = args.cache or (Path(tempfile.mkdtemp(prefix="bench_data_")) if args.quick else None)
    report = measure(
        images=args.images, size=args.size, classes=args.classes, batch=args.batch,
        workers=args.workers, crop=args.crop, reps=args.reps, timed=args.timed, cache=cache,
        torch_python=args.torch_python, timeout=args.timeout,
    )  # fmt: skip
    report["command"] = "python -m bench.data " + " ".join(sys.argv[1:] if argv is None else argv)
    print()
    print(table(report["rows"]))
    out = args.out or ROOT / "runs" / "bench" / "data.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
