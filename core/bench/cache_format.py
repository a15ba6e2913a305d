"""Item 11: the compact cache (each square a q95 JPEG) against the raw one (uint8 squares).

Three figures, each against the raw cache in the same run:
- disk: the bytes of both caches of the same tf_flowers-sized photos at 224 px (squares of 256);
- read throughput: images a second one core reads back (a batch of 64 at a time, as training does),
  against what training needs: ResNet-50 224 px on this CPU (about 15 img/s) and the GPU target
  (3,000 img/s: JPEG reads need that many decoding cores to keep up);
- accuracy: `core train` twice on the shared flowers at the same seed and settings, once per cache
  format (FLORA_CACHE_FORMAT), so the JPEG round trip is the only difference. No ImageNet weights on
  this machine: the backbone is a seeded random ResNet-50 (`--weights none`) and only the head trains,
  which measures what the pixels change, not how good transfer learning is.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from core.bench.common import Row, Scale, link_subset, make_photos, rate_row
from core.data.cache_disk import COMPACT, RAW
from core.data.datasets import scan_dataset
from core.data.ingest import ingest
from core.paths import PROJECT_ROOT

log = logging.getLogger("flora")
READ_BATCH = 64
CPU_NEED = 15.0  # img/s ResNet-50 224 px forward on this CPU (docs/PERFORMANCE.md)
GPU_NEED = 3000.0  # img/s, the GPU fine-tuning target


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:

    photos = make_photos(dataset, workdir / "photos", scale.large_photos, seed=2)
    index = scan_dataset(photos)
    caches = {}
    for format in (RAW, COMPACT):
        started = time.perf_counter()
        caches[format] = ingest(index, 256, workdir / f"cache-{format}", format=format)
        log.info("cache: %s cache of %d photos in %.1f s", format, len(index.entries), time.perf_counter() - started)
    sizes = {f: sum(p.stat().st_size for p in c.directory.iterdir()) for f, c in caches.items()}
    rates = {f: read_rate(c, scale.read_seconds) for f, c in caches.items()}
    rows = [
        size_row(
            "cache.disk",
            "cache",
            f"disk of {len(index.entries)} tf_flowers-sized photos at 224 px (squares of 256)",
            sizes[COMPACT] / 1e6,
            sizes[RAW] / 1e6,
            "the raw cache (uint8 squares)",
            notes=f"compact {sizes[COMPACT] / 1e6:.1f} MB, raw {sizes[RAW] / 1e6:.1f} MB: "
            f"{sizes[RAW] / max(sizes[COMPACT], 1):.1f}x smaller; 300k photos would take "
            f"{sizes[COMPACT] / len(index.entries) * 300_000 / 1e9:.1f} GB instead of "
            f"{sizes[RAW] / len(index.entries) * 300_000 / 1e9:.1f} GB",
        ),
        rate_row(
            "cache.read",
            "cache",
            "images read back a second, one core, batches of 64 at 256 px",
            "img/s",
            rates[COMPACT],
            rates[RAW],
            "the raw cache (positioned reads)",
            notes=f"training needs about {CPU_NEED:g} img/s on this CPU at 224 px (the JPEG cache keeps up with "
            f"{rates[COMPACT] / CPU_NEED:.0f}x to spare on one core) and {GPU_NEED:,.0f} img/s on the GPU target "
            f"(about {GPU_NEED / rates[COMPACT]:.1f} cores of JPEG decoding)",
            cpu_need=CPU_NEED,
            gpu_need=GPU_NEED,
        ),
    ]
    rows.append(accuracy_row(scale, dataset, workdir))
    rows[-2].met = None
    return rows


def size_row(key, item, figure, ours, baseline, baseline_label, notes="") -> Row:
    """A row of sizes in MB (lower is better): ratio = baseline / ours."""
    ratio = baseline / ours if ours and baseline else None
    return Row(key, item, figure, "MB", ours, baseline, baseline_label, ratio, notes=notes)


def read_rate(cache, seconds: float) -> float:
    """Images a second this process reads from `cache` in batches, over at least `seconds` (or every row once)."""
    order = np.random.default_rng(0).permutation(len(cache))
    done, started = 0, time.perf_counter()
    while True:
        for start in range(0, len(order), READ_BATCH):
            cache.read(order[start : start + READ_BATCH])
            done += len(order[start : start + READ_BATCH])
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def accuracy_row(scale: Scale, dataset: Path, workdir: Path) -> Row:
    per_class = scale.train_per_class
    photos = dataset if per_class is None else link_subset(dataset, workdir / "train-photos", per_class)
    size = 32 if scale.name == "tiny" else 64
    epochs = 2 if scale.name == "tiny" else 10
    results = {}
    for format in ("raw", "jpeg"):
        data = workdir / f"train-{format}" / "data"
        command = [sys.executable, "-m", "core", "train", str(photos), "--weights", "none", "--augment", "none"]
        command += ["--image-size", str(size), "--epochs", str(epochs), "--seed", "7", "--json"]
        command += ["--data-dir", str(data), "--models-dir", str(workdir / f"train-{format}" / "models")]
        env = {**os.environ, "FLORA_CACHE_FORMAT": format}
        if scale.name != "tiny":
            env.pop("FLORA_TEST_BACKBONE", None)  # ResNet-50, whatever the test suite selects
        out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(PROJECT_ROOT), timeout=3600)
        if out.returncode != 0:
            raise RuntimeError(f"core train with the {format} cache failed: {out.stderr[-1500:]}")
        results[format] = json.loads(out.stdout)
    accuracy = {f: float(r["accuracy"]) for f, r in results.items()}
    f1 = {f: float(r.get("macro_f1") or 0.0) for f, r in results.items()}
    test = int(results["raw"].get("test_images") or 0)
    difference = accuracy["jpeg"] - accuracy["raw"]
    return Row(
        "cache.accuracy",
        "cache",
        f"test accuracy, {size} px, head only on a seeded random ResNet-50, same seed",
        "accuracy",
        accuracy["jpeg"],
        accuracy["raw"],
        "the same run on the raw cache",
        accuracy["jpeg"] / accuracy["raw"] if accuracy["raw"] else None,
        target="within 1 point",
        met=abs(difference) <= 0.01,
        notes=f"accuracy {accuracy['jpeg']:.4f} (JPEG cache) vs {accuracy['raw']:.4f} (raw), "
        f"{100 * difference:+.2f} points; macro F1 {f1['jpeg']:.4f} vs {f1['raw']:.4f}"
        + (f", on {test} test photos" if test else ""),
    )
