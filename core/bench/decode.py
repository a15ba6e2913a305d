"""Item 2: decoding photos into the cache against a plain PIL loop over the same files.

Baseline: `np.asarray(Image.open(p).convert("RGB").resize((s, s)))` for every file, one
process, into an array held in memory. Ours: `core.data.ingest.ingest` into a fresh cache folder
(every worker started, every row written). Same files, same square size, timed alternately
(baseline first, then ours first, ...) and compared by their medians.
"""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path

import numpy as np

from core.bench.common import Row, Scale, link_subset, make_photos, photos_of, rate_row, remove, timed
from core.data.datasets import scan_dataset
from core.data.ingest import ingest
from core.settings.config import cache_size_for

log = logging.getLogger("flora")
ITEM = "2 ingest"


def plain_loop(paths: list[Path], size: int) -> np.ndarray:
    """What a competent user writes first: open, convert, resize, keep."""
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = np.asarray(Image.open(path).convert("RGB").resize((size, size)))
    return out


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:

    per_class = None if scale.ingest_photos is None else max(1, scale.ingest_photos // 5)
    real = dataset if per_class is None else link_subset(dataset, workdir / "ingest-photos", per_class)
    large = make_photos(dataset, workdir / "ingest-large", scale.large_photos, seed=1)
    cases = [
        ("ingest.photos128", real, 128, "the dataset's own photos"),
        ("ingest.large128", large, 128, "tf_flowers-sized photos made from them"),
        ("ingest.large224", large, 224, "tf_flowers-sized photos made from them"),
    ]
    rows = []
    for key, folder, image_size, what in cases:
        size = cache_size_for(image_size)
        rows.append(_case(key, folder, size, image_size, f"{what} ({_describe(folder, size)})", scale.repeats, workdir))
    return rows


def _case(key: str, folder: Path, size: int, image_size: int, what: str, repeats: int, workdir: Path) -> Row:

    index = scan_dataset(folder)
    paths = [index.root / entry.path for entry in index.entries]
    plain_runs, ours_runs = [], []

    def plain():
        with timed() as t:
            plain_loop(paths, size)
        plain_runs.append(t)

    def ours():
        target = workdir / "ingest-cache"
        remove(target)
        with timed() as t:
            cache = ingest(index, size, target)
        ours_runs.append(t)
        if len(cache) != len(paths):
            raise RuntimeError(f"ingest decoded {len(cache)} of {len(paths)} photos: {cache.failures[:3]}")
        remove(target)

    for i in range(max(1, repeats)):
        for step in (plain, ours) if i % 2 == 0 else (ours, plain):
            step()
    n = len(paths)
    plain_wall = statistics.median(t.wall for t in plain_runs)
    ours_wall = statistics.median(t.wall for t in ours_runs)
    plain_cpu = statistics.median(t.cpu for t in plain_runs)
    ours_cpu = statistics.median(t.cpu for t in ours_runs)
    log.info("bench: %s plain %.2f s, ours %.2f s", key, plain_wall, ours_wall)
    return rate_row(
        key,
        ITEM,
        f"decode + resize to {size} px squares (for {image_size} px models)",
        "img/s",
        n / ours_wall,
        n / plain_wall,
        "PIL Image.open().convert('RGB').resize() loop, one process",
        target_ratio=2,
        notes=f"{what}; median of {len(ours_runs)} alternating runs; {os.cpu_count()} cores",
        cpu_seconds=ours_cpu,
        baseline_cpu_seconds=plain_cpu,
        cpu_ratio=plain_cpu / ours_cpu if ours_cpu else None,
        photos=n,
    )


def _describe(folder: Path, size: int) -> str:
    """How many photos, how large, and how many JPEG draft mode can decode at a reduced scale."""
    from PIL import Image

    photos = photos_of(folder)
    sample = photos[:: max(1, len(photos) // 100)]
    sides, drafted = [], 0
    for photo in sample:
        with Image.open(photo) as image:
            sides.append(max(image.size))
            drafted += min(image.size) >= 2 * size  # libjpeg scales by 1/2, 1/4, 1/8 while >= size
    share = round(100 * drafted / len(sample))
    return f"{len(photos)} JPEGs, long side {min(sides)}-{max(sides)} px, {share}% decodable at 1/2 scale or less"
