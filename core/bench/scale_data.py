"""The scale bench's material: a synthetic dataset of 1,000 classes, copies of a run, a filled prediction log.

What `core.bench.scale` measures on; nothing here is timed.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from core.paths import cache_dir
from core.serving.log import PredictionLog

PHOTO_PX = 48


# --- the synthetic dataset -------------------------------------------------------------------------


def draw_dataset(root: Path, n: int, classes: int, workers: int = 2) -> None:
    """`n` JPEGs of PHOTO_PX squares, photo i of class i % `classes`, in the dataset's own split: about
    80/10/10 train/val/test drawn per photo (a split of its own, so even 1 photo per class trains: a
    class whose photo fell in val or test has none to learn from, as in a real set that small)."""
    names = [f"class_{c:04d}" for c in range(classes)]
    chunks = [(str(root), names, start, min(n, start + 2_000)) for start in range(0, n, 2_000)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_draw_chunk, chunks))


def _draw_chunk(job: tuple[str, list[str], int, int]) -> None:
    from PIL import Image

    root, names, start, stop = job
    classes = len(names)
    for i in range(start, stop):
        c = i % classes
        pixels = class_pattern(c) + np.random.default_rng(i).normal(0, 18, (PHOTO_PX, PHOTO_PX, 3))
        pixels = np.roll(pixels, int(i * 7 % PHOTO_PX), axis=1)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = np.random.default_rng(i).random()
        split = "test" if draw < 0.1 else "val" if draw < 0.2 else "train"
        folder = Path(root) / split / names[c]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.jpg", quality=90)


def class_pattern(c: int) -> np.ndarray:
    """Class `c`'s look: two colours in stripes of its own width and angle."""
    rng = np.random.default_rng(10_000 + c)
    a, b = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
    y, x = np.mgrid[0:PHOTO_PX, 0:PHOTO_PX]
    wave = (np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period) + 1) / 2
    return a * wave[..., None] + b * (1 - wave[..., None])


# --- the run store and the log the pages see -------------------------------------------------------


def copy_runs(models: Path, run_id: str, count: int) -> list[str]:
    """`count` copies of the run under ids of their own: small files copied, large ones hard-linked."""
    source = models / run_id
    ids = []
    for i in range(count):
        copy_id = f"{run_id}c{i:03d}"
        target = models / copy_id
        ids.append(copy_id)
        if target.exists():
            continue
        shutil.copytree(source, target, copy_function=_link_or_copy)
        config = json.loads((target / "config.json").read_text())
        config["run_id"] = copy_id
        (target / "config.json").write_text(json.dumps(config, indent=2))
    return ids


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.getsize(src) > 1_000_000:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def fill_log(models: Path, run_id: str, rows: int, classes: int) -> None:
    """`rows` predictions of `run_id` over the last 30 days in the store's prediction log (SQLite)."""

    log_db = PredictionLog.of_store(models)
    with log_db._connect():  # creates the file and its schema, as the server's first prediction does
        pass
    rng = np.random.default_rng(0)
    now = time.time()
    with sqlite3.connect(log_db.path) as db:
        (have,) = db.execute("SELECT COUNT(*) FROM predictions").fetchone()
        for start in range(have, rows, 50_000):
            count = min(rows, start + 50_000) - start
            times = np.sort(now - rng.uniform(0, 30 * 86_400, count))
            labels = rng.integers(0, classes, count)
            confidence = rng.beta(5, 2, count)
            db.executemany(
                "INSERT INTO predictions (time, model, run_id, source, image_sha256, name, width, height, label, "
                "top_k, max_probability, entropy, ood_score, ood_flag, latency_ms) "
                "VALUES (?, ?, ?, 'api', ?, ?, 500, 375, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        float(times[k]),
                        run_id,
                        run_id,
                        f"{start + k:064x}",
                        f"photo_{start + k}.jpg",
                        f"class_{labels[k]:04d}",
                        json.dumps([[f"class_{labels[k]:04d}", round(float(confidence[k]), 4)]]),
                        float(confidence[k]),
                        float(1 - confidence[k]),
                        float(rng.normal()),
                        int(confidence[k] < 0.3),
                        float(rng.gamma(4, 10)),
                    )
                    for k in range(count)
                ),
            )
            db.commit()


def remove_heavy(work: Path) -> None:
    """Keep the drawn dataset (a --workdir used again reuses it); drop caches and runs."""
    shutil.rmtree(work / "models", ignore_errors=True)
    shutil.rmtree(cache_dir(work / "data"), ignore_errors=True)
