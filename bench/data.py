"""``python -m bench.data``: images/s of jcnn's training input pipeline against torchvision's.

    python -m bench.data                          # 512 JPEGs, batch 64, workers 0, 1, 2
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

Each repetition is two epochs of each pipeline, each from a fresh source or loader (closed
after it), so both start their worker processes in every timed epoch, as torchvision's
``DataLoader`` does by default (a jcnn source keeps its workers for its later epochs, so there
the start-up is paid once per source): one over the folder and one over its first half (hard
links), interleaved (jcnn, torchvision, jcnn, ...) after one warm-up repetition per row that is
not counted (page cache, imports). ``images/s`` is the throughput once running, the slope of
epoch time over images (the extra images of the full epoch over its extra seconds), and
``start-up s`` the rest of the full epoch (its time less its images at that rate: starting the
workers, the first batches); ``epoch images/s`` is the full epoch's images over its wall time
and ``first batch s`` its time to the first batch. Medians over the repetitions (``spread``:
min-max of images/s); ``vs torchvision`` is jcnn's figure over torchvision's at the same workers
and batch (> 1: jcnn faster). Grain runs a pool of 16 threads in each worker (and, with
``W = 0``, in the main process), which Pillow's decode and resize use beside the GIL;
torchvision's ``W = 0`` is one thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TAG = "@@DATA "
DEFAULT_CACHE = Path("~/.cache/jcnn/bench_data").expanduser()


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


def half_folder(folder: Path) -> Path:
    """``folder`` with the first half of each class's images (hard links, else copies), made
    once beside it: the short epoch of the start-up / throughput fit."""
    import shutil

    half = folder.with_name(folder.name + "_half")
    done = half / ".complete"
    if done.exists():
        return half
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(cls.glob("*.jpg"))
        (half / cls.name).mkdir(parents=True, exist_ok=True)
        for f in files[: max(len(files) // 2, 1)]:
            target = half / cls.name / f.name
            if not target.exists():
                try:
                    os.link(f, target)
                except OSError:
                    shutil.copy(f, target)
    done.write_text("half of " + folder.name)
    return half


# ---------------------------------------------------------------------------------------------
# One epoch of each pipeline
# ---------------------------------------------------------------------------------------------


def _timed(batches: Iterable[Any], batch_size: int) -> dict[str, float | None]:
    """Consumes one epoch of ``batches``: its images, wall time and time to the first batch."""
    start = time.perf_counter()
    first, n = None, 0
    for _ in batches:
        n += 1
        if first is None:
            first = time.perf_counter() - start
    return {
        "images": n * batch_size,
        "epoch_s": time.perf_counter() - start,
        "first_batch_s": first,
    }


def jcnn_epoch(
    folder: Path, workers: int, batch: int, crop: int, epoch: int = 0
) -> dict[str, float]:
    """One epoch of ``jcnn.data.image_folder``'s training pipeline from a fresh source."""
    from jcnn.data import image_folder

    source = image_folder(
        folder, train=True, image_size=crop, batch_size=batch, workers=workers, seed=0,
        shard_index=0, shard_count=1,
    )  # fmt: skip
    source.set_epoch(epoch)
    shapes = []

    def batches():
        for images, labels in source:
            if not shapes:
                shapes.append((images.shape, str(images.dtype)))
            yield images, labels

    try:
        out = _timed(batches(), batch)
    finally:  # a source keeps its workers across epochs until closed: stop them here
        close = getattr(source, "close", None)
        if close is not None:
            close()
    out["shape"] = list(shapes[0][0]) if shapes else None
    return out


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


def torch_epoch(
    folder: Path, workers: int, batch: int, crop: int, epoch: int = 0
) -> dict[str, float]:
    """One epoch of torchvision's ``ImageFolder`` + ``DataLoader`` with the same transforms."""
    import torch

    tv = import_torchvision()
    from torchvision import transforms as T

    transform = T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), T.PILToTensor()])
    dataset = tv.datasets.ImageFolder(str(folder), transform=transform)
    generator = torch.Generator().manual_seed(epoch)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
        generator=generator,
    )  # fmt: skip
    shapes = []

    def batches():
        for images, labels in loader:
            if not shapes:
                shapes.append(tuple(images.shape))
            yield images, labels

    out = _timed(batches(), batch)
    out["shape"] = list(shapes[0]) if shapes else None
    return out


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
            _say(torch_epoch(Path(req["folder"]), req["workers"], req["batch"], req["crop"],
                             req["epoch"]))  # fmt: skip
        except Exception as err:  # noqa: BLE001
            _say({"skip": f"torchvision failed: {type(err).__name__}: {err}"})
            return


def _tv_version() -> str:
    import torchvision

    return str(torchvision.__version__)


def _say(obj: dict) -> None:
    sys.stdout.write(TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


class TorchSide:
    """A ``--torch-worker`` process of ``python`` and its tagged replies."""

    def __init__(self, python: str, timeout: float) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [python, "-m", "bench.data", "--torch-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        assert self.proc.stdout is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.close()
                return {"skip": f"no reply within {self.timeout:.0f} s"}
            line = self.proc.stdout.readline()
            if not line:
                return {"skip": f"torchvision worker exited (code {self.proc.wait()})"}
            if line.startswith(TAG):
                return json.loads(line[len(TAG) :])

    def epoch(self, **request: Any) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


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
    images: int = 512,
    size: tuple[int, int] = (500, 375),
    classes: int = 4,
    batch: int = 64,
    workers: Iterable[int] = (0, 1, 2),
    crop: int = 224,
    reps: int = 3,
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
    batch = min(batch, images // 2)  # the half epoch has at least one batch
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
    folders = {"full": str(folder), "half": str(half_folder(folder))}
    try:
        for w in workers:
            jc: dict[str, Any] = {"pipeline": "jcnn", "workers": w, "batch": batch, "runs": []}
            tv: dict[str, Any] = {"pipeline": "torchvision", "workers": w, "batch": batch,
                                  "runs": []}  # fmt: skip
            for rep in range(reps + 1):  # rep 0: the warm-up epochs, not counted
                run_jc, run_tv = {}, {}
                for part, path in folders.items():
                    run_jc[part] = jcnn_epoch(Path(path), w, batch, crop, epoch=rep)
                    if torch_side is not None:
                        got = torch_side.epoch(folder=path, workers=w, batch=batch, crop=crop,
                                               epoch=rep)  # fmt: skip
                        if "skip" in got:
                            torch_skip, torch_side = got["skip"], None
                        run_tv[part] = got
                if rep:
                    jc["runs"].append(run_jc)
                    if torch_side is not None:
                        tv["runs"].append(run_tv)
            if torch_side is None:
                tv = {**tv, "skip": torch_skip, "runs": []}
            for row in (jc, tv):
                summarise(row)
            for key in ("images_per_s", "epoch_images_per_s"):
                if jc.get(key) and tv.get(key):
                    jc[key.replace("images_per_s", "vs_torchvision")] = jc[key] / tv[key]
            report["rows"] += [jc, tv]
            log(table([jc, tv], header=False))
    finally:
        if torch_side is not None:
            torch_side.close()
    report["load"].append("{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return report


def fit_run(run: dict) -> dict:
    """One repetition's figures from its full and half epochs: the throughput is the slope of
    wall time over images (``(images_full - images_half) / (s_full - s_half)``), the start-up
    the intercept (the full epoch's time less its images at that rate)."""
    full, half = run["full"], run["half"]
    extra_s = full["epoch_s"] - half["epoch_s"]
    rate = (full["images"] - half["images"]) / extra_s if extra_s > 0 else None
    return {
        "images_per_s": rate,
        "startup_s": max(full["epoch_s"] - full["images"] / rate, 0.0) if rate else None,
        "epoch_images_per_s": full["images"] / full["epoch_s"],
        "first_batch_s": full["first_batch_s"],
    }


def summarise(row: dict) -> None:
    """Medians (and the min-max spread of images/s) over a row's repetitions."""
    figures = [fit_run(run) for run in row.get("runs", [])]
    for key in ("images_per_s", "startup_s", "epoch_images_per_s", "first_batch_s"):
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
            "| epoch images/s | epoch vs torchvision | first batch s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        if header
        else []
    )
    for r in rows:
        if "skip" in r:
            lines.append(
                f"| {r['pipeline']} | {r['workers']} | {r['batch']} | skipped: "
                f"{' '.join(r['skip'].split())[:60]} | | | | | | |"
            )
            continue
        spread = r.get("spread")
        lines.append(
            f"| {r['pipeline']} | {r['workers']} | {r['batch']} | {_f(r['images_per_s'], '.0f')} "
            f"| {'-' if not spread else f'{spread[0]:.0f}-{spread[1]:.0f}'} "
            f"| {_f(r.get('vs_torchvision'), '.2f')} | {_f(r['startup_s'], '.2f')} "
            f"| {_f(r['epoch_images_per_s'], '.0f')} | {_f(r.get('epoch_vs_torchvision'), '.2f')} "
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
    p.add_argument("--images", type=int, default=None, help="images (default 512; --quick 64)")
    p.add_argument("--size", type=_size, default=(500, 375), help="WxH of the JPEGs (500x375)")
    p.add_argument("--classes", type=int, default=4, help="class folders (default 4)")
    p.add_argument("--batch", type=int, default=None, help="batch (default 64; --quick 16)")
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (0,1,2)")
    p.add_argument("--crop", type=int, default=224, help="random-resized-crop side (224)")
    p.add_argument("--reps", type=int, default=None, help="timed epochs per row (3; --quick 1)")
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
    args.images = args.images or (64 if args.quick else 512)
    args.batch = args.batch or (16 if args.quick else 64)
    args.reps = args.reps or (1 if args.quick else 3)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.torch_python == "none":
        args.torch_python = None
    if args.images < 2 * args.classes or args.reps < 1 or any(w < 0 for w in args.workers):
        p.error("--images >= 2 x --classes, --reps >= 1 and --workers >= 0 please")
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
        workers=args.workers, crop=args.crop, reps=args.reps, cache=cache,
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
