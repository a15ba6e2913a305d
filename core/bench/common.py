"""What every benchmark item shares: result rows, scales, timing, and photos made from real ones."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data.imaging import is_image_name
from core.network.backbones import RESNET50
from core.paths import PROJECT_ROOT

BACKBONE = RESNET50  # every item measures ResNet-50, whatever backbone the test suite selects

DEFAULT_DATASET = PROJECT_ROOT.parent / "shared" / "data" / "flowers5-128"
# Sizes of tf_flowers photos (the set Flora imports): mostly 240-500 px on the long side.
PHOTO_SIZES = ((500, 333), (500, 375), (320, 240), (240, 320), (333, 500), (400, 300), (500, 281))


@dataclass
class Row:
    """One figure: ours, the baseline measured in the same run, and how many times better ours is.

    `ratio` is baseline / ours for durations and sizes, ours / baseline for throughputs.
    """

    key: str
    item: str
    figure: str
    unit: str
    ours: float | None
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_row(key, item, figure, ours, baseline, baseline_label, target_ratio=None, notes="", **extra) -> Row:
    """A row of durations in seconds (lower is better): ratio = baseline / ours."""
    ratio = baseline / ours if ours and baseline else None
    row = Row(key, item, figure, "s", ours, baseline, baseline_label, ratio, notes=notes, extra=extra)
    return with_target(row, target_ratio)


def rate_row(key, item, figure, unit, ours, baseline, baseline_label, target_ratio=None, notes="", **extra) -> Row:
    """A row of throughputs (higher is better): ratio = ours / baseline."""
    ratio = ours / baseline if ours and baseline else None
    row = Row(key, item, figure, unit, ours, baseline, baseline_label, ratio, notes=notes, extra=extra)
    return with_target(row, target_ratio)


def with_target(row: Row, target_ratio: float | None) -> Row:
    """Set the row's target ("at least N times better") and whether the ratio meets it."""
    if target_ratio is not None:
        row.target = f">= {target_ratio:g}x"
        row.met = None if row.ratio is None else bool(row.ratio >= target_ratio)
    return row


@dataclass(frozen=True)
class Scale:
    """How big each item runs. `full` is what docs/PERFORMANCE.md records; `quick` takes minutes."""

    name: str
    train_per_class: int | None  # photos per class in the training item; None: the whole dataset
    train_size: int  # model input of the training item
    epochs: int
    sandwich: bool  # time the cached run before and after the baseline and use their mean
    ingest_photos: int | None  # None: every photo of the dataset
    large_photos: int  # tf_flowers-sized photos made for the ingest item
    repeats: int  # alternating timings per ingest case (the median counts)
    gpu_size: int
    gpu_steps: int  # timed steps per throughput figure (on a GPU; a CPU gets at most 3)
    inference_size: int
    inference_photos: int
    memory_images: int
    memory_size: int
    memory_steps: int
    sweep_trials: int  # trials of the sweep item (on the training item's photos, size and epochs)
    plain_runs: int  # plain-way runs timed for the sweep item's baseline (the rest extrapolated)
    read_seconds: float  # how long the cache item reads each cache back for its rate (every row at least once)


SCALES = {
    "full": Scale("full", None, 128, 10, True, None, 2000, 3, 224, 50, 224, 200, 10_000, 224, 20, 20, 1, 3.0),
    "quick": Scale("quick", 40, 64, 10, False, 1000, 400, 2, 224, 10, 128, 40, 1000, 96, 3, 20, 2, 3.0),
    # the test suite's scale: every code path, seconds per item
    "tiny": Scale("tiny", 6, 32, 2, False, 60, 24, 1, 32, 2, 32, 5, 60, 32, 1, 3, 1, 0.3),
}


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0  # this process (every thread) and its reaped child processes


@contextlib.contextmanager
def timed() -> Iterator[Timing]:
    """Wall-clock and CPU seconds of the block. CPU time is the steadier figure on a shared machine."""
    result = Timing()
    start, before = time.perf_counter(), os.times()
    try:
        yield result
    finally:
        after = os.times()
        result.wall = time.perf_counter() - start
        result.cpu = sum(
            getattr(after, name) - getattr(before, name)
            for name in ("user", "system", "children_user", "children_system")
        )


def photos_of(dataset: Path) -> list[Path]:
    """Every image file under `dataset`'s class folders, in a stable order."""
    return sorted(p for p in dataset.rglob("*") if p.is_file() and is_image_name(p.name))


def link_subset(source: Path, target: Path, per_class: int | None) -> Path:
    """A dataset of symlinks to the first `per_class` photos of each class of `source` (read-only).

    A `--workdir` used again keeps the links it already has.
    """
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        out = target / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        photos = sorted(p for p in class_dir.iterdir() if is_image_name(p.name))
        for photo in photos[:per_class]:
            link = out / photo.name
            if link.is_symlink() and link.resolve() == photo.resolve():
                continue
            link.symlink_to(photo.resolve())
    return target


def make_photos(source: Path, target: Path, count: int, seed: int = 0, splits: dict[str, int] | None = None) -> Path:
    """`count` JPEGs of tf_flowers sizes made from `source`'s photos, in `target/<class>/`.

    Each is a real photo, randomly cropped, flipped and resized to one of PHOTO_SIZES, saved at
    quality 90, so decoding costs what a real photo of that size costs. With `splits`
    ({"val": n, "test": n}) the first photos go to `target/<split>/<class>/`, the rest to train.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = photos_of(source)
    if not sources:
        raise FileNotFoundError(f"no photos in {source}")
    order = rng.permutation(len(sources))
    held = [(name, n) for name, n in (splits or {}).items()]
    for i in range(count):
        photo = sources[order[i % len(order)]]
        split = "" if splits is None else "train"
        start = 0
        for name, n in held:
            if start <= i < start + n:
                split = name
            start += n
        with Image.open(photo) as image:
            image = image.convert("RGB")
            width, height = image.size
            crop = rng.uniform(0.75, 1.0)
            w, h = int(width * crop), int(height * crop)
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            image = image.crop((left, top, left + w, top + h))
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            size = PHOTO_SIZES[int(rng.integers(len(PHOTO_SIZES)))]
            image = image.resize(size, Image.Resampling.BICUBIC)
            folder = target / split / photo.parent.name if split else target / photo.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:05d}.jpg", quality=90)
    return target


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_answering(
    url: str,
    process: subprocess.Popen | None = None,
    timeout: float = 60,
    log: str | Path | None = None,
    what: str = "",
) -> None:
    """Wait until a GET of `url` answers 200 (a server the caller started). RuntimeError, with the tail of its `log`,
    when `process` ends first or `timeout` seconds pass."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:  # refused while it starts, or an HTTP error status
            pass
        ended = process is not None and process.poll() is not None
        if ended or time.time() > deadline:
            why = f"ended with exit code {process.returncode}" if ended else f"did not answer within {timeout:.0f} s"
            tail = Path(log).read_text(errors="replace")[-3000:] if log and Path(log).exists() else ""
            raise RuntimeError(f"{what or url} {why}" + (f":\n{tail}" if tail else ""))
        time.sleep(0.3)
