"""Bench item `multilabel`: what a multi-label run costs against a single-label one on the same photos (issue 41).

cost    The same 2x2 mosaics of real photos (`--dataset`: 5 kinds of flower), imported twice from a table: with
        20 labels (a kind in a quadrant, "daisy_top_left": every label a photo shows) and single-label (the kind in
        the top-left cell, or "none"). Each is trained cold by `core train` in a process of its own (its own data
        folder, so decoding, features, the head, fine-tuning and the evaluation are all paid), alternated S M M S;
        the median of each. Target: the multi-label run within 10% of the single-label one.
memory  1,000 labels x N photos (N = 100,000 at full scale): the scale bench's synthetic photos (core.bench.scale_data),
        each labelled with its class and 0-2 more drawn by a Zipf law (so labels co-occur and many are rare),
        imported from one delimited column (the importer's own iterative stratification splits them) and trained as
        the scale bench trains (32 px, 2 epochs, frozen backbone); its peak RSS against the scale bench's budget
        (core.bench.scale.RSS_TARGET_GB), beside the single-label run on the same photos.

Both are asked for by name: `--only multilabel` (4 cold runs on 1,200 mosaics at full scale) and `--only
multilabel_memory` (draws 100,000 photos and trains on them twice).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.bench.common import Row, Scale, with_target
from core.bench.mosaics import draw_mosaics, photos_by_kind
from core.bench.scale import RSS_TARGET_GB
from core.bench.scale_data import draw_dataset
from core.bench.scale_stages import run_stage

log = logging.getLogger("flora")

COST_TARGET = 1 / 1.10  # single-label seconds / multi-label seconds: the multi-label run within 10%
QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")


@dataclass(frozen=True)
class Sizes:
    mosaics: int  # for the cost figure
    cell: int  # each mosaic is 2 x cell pixels square
    train_px: int
    epochs: int
    fine_tune_epochs: int
    photos: int  # for the memory figure
    labels: int


SIZES = {
    "full": Sizes(1_200, 64, 64, 4, 1, 100_000, 1_000),
    "quick": Sizes(400, 48, 64, 3, 1, 20_000, 1_000),
    "tiny": Sizes(40, 32, 32, 1, 0, 300, 20),  # the test suite's: every code path, seconds
}


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:
    """Item `multilabel`: the cost figure."""
    workdir.mkdir(parents=True, exist_ok=True)
    return [cost_row(SIZES[scale.name], dataset, workdir / "cost")]


def run_memory(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:
    """Item `multilabel_memory`: the memory figure (its photos are drawn, not `dataset`'s)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return [memory_row(SIZES[scale.name], workdir / "memory")]


# --- cost ----------------------------------------------------------------------------------------------------


def quadrant_tables(made: list[tuple[str, list[str | None]]], folder: Path) -> tuple[Path, Path, list[str]]:
    """From mosaics and the kind in each of their cells (None: grey): the 20-label table (a label per kind and
    quadrant shown) and the single-label one (the top-left cell's kind, or "none"); and the labels used."""
    folder.mkdir(parents=True, exist_ok=True)
    multi, single = folder / "quadrants.csv", folder / "top_left.csv"
    used: set[str] = set()
    with open(multi, "w", newline="") as m, open(single, "w", newline="") as s:
        multi_writer, single_writer = csv.writer(m), csv.writer(s)
        multi_writer.writerow(["image", "tags"])
        single_writer.writerow(["image", "label"])
        for name, cells in made:
            labels = sorted(f"{kind}_{QUADRANTS[j]}" for j, kind in enumerate(cells) if kind is not None)
            used.update(labels)
            multi_writer.writerow([name, " ".join(labels)])
            single_writer.writerow([name, cells[0] or "none"])
    return multi, single, sorted(used)


def cost_row(sizes: Sizes, dataset: Path, work: Path) -> Row:
    from core.importers.csv_labels import import_csv  # heavy: the importers read tables with pandas

    shutil.rmtree(work, ignore_errors=True)
    images = work / "mosaics"
    made = draw_mosaics(photos_by_kind(dataset), images, sizes.mosaics, seed=0, cell=sizes.cell, cells=True)
    multi, single, labels = quadrant_tables(made, work)
    data = work / "data"
    multi_set = import_csv(multi, images, "quadrants", data, multi_label=True)
    single_set = import_csv(single, images, "top_left", data, multi_label=False)
    flags = ["--weights", "none", "--image-size", str(sizes.train_px), "--epochs", str(sizes.epochs)]
    flags += ["--fine-tune-epochs", str(sizes.fine_tune_epochs), "--batch-size", "32", "--seed", "1", "--json"]
    seconds: dict[str, list[float]] = {"single": [], "multi": []}
    stages: dict[str, list[dict[str, float]]] = {"single": [], "multi": []}  # train's own stages, each turn
    for turn, kind in enumerate(("single", "multi", "multi", "single")):
        path = (multi_set if kind == "multi" else single_set).path
        cold = work / f"cold{turn}"  # its own data and models folders: nothing cached from another turn
        argv = ["train", str(path), *flags, "--models-dir", str(cold / "models"), "--data-dir", str(cold / "data")]
        result = run_stage(work / f"train{turn}.json", argv, None, {})
        if result["rc"] != 0:
            raise RuntimeError(f"core train ({kind}) failed: {result.get('tail', '')[-800:]}")
        seconds[kind].append(result["seconds"])
        stages[kind].append(result.get("stages", {}))
        log.info("multilabel: %s run %.1f s", kind, result["seconds"])
        shutil.rmtree(cold, ignore_errors=True)
    ours, theirs = statistics.median(seconds["multi"]), statistics.median(seconds["single"])
    row = Row(
        "multilabel.cost",
        "multilabel",
        f"a {len(labels)}-label run against a single-label one on the same {sizes.mosaics:,} photos (cold)",
        "s",
        ours,
        theirs,
        "single-label",
        theirs / ours if ours else None,
        notes=(
            f"{sizes.train_px} px, {sizes.epochs} head + {sizes.fine_tune_epochs} fine-tune epochs, weights none; "
            f"medians of 2 runs each, alternated: multi-label {', '.join(f'{s:.1f}' for s in seconds['multi'])} s, "
            f"single-label {', '.join(f'{s:.1f}' for s in seconds['single'])} s"
        ),
        extra={"seconds": seconds, "stages": stages, "labels": len(labels)},
    )
    row = with_target(row, COST_TARGET)
    row.target = "within 10% (>= 0.91x)"
    return row


# --- memory --------------------------------------------------------------------------------------------------


def label_lists(n: int, labels: int, seed: int = 0) -> list[list[int]]:
    """Photo i's labels: its class (i % labels, as the scale bench draws it) and 0-2 more by a Zipf law."""
    rng = np.random.default_rng(seed)
    extra = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    ranks = np.arange(1, labels + 1)
    weights = 1.0 / ranks
    weights /= weights.sum()
    out = []
    for i in range(n):
        own = i % labels
        more = rng.choice(labels, size=int(extra[i]), p=weights) if extra[i] else []
        out.append(sorted({own, *map(int, more)}))
    return out


def memory_table(root: Path, labels: int, table: Path) -> int:
    """The delimited table of every photo under `root` (the scale bench's layout: split/class/photo), its labels
    from label_lists by the photo's number; the number of rows."""
    photos = sorted(root.rglob("*.jpg"))
    numbers = [int(p.stem) for p in photos]
    lists = label_lists(max(numbers) + 1 if numbers else 0, labels)
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "tags"])
        for path, number in zip(photos, numbers, strict=True):
            writer.writerow([path.relative_to(root).as_posix(), " ".join(f"label_{j:04d}" for j in lists[number])])
    return len(photos)


def memory_row(sizes: Sizes, work: Path) -> Row:
    from core.importers.csv_labels import import_csv  # heavy: the importers read tables with pandas

    shutil.rmtree(work, ignore_errors=True)
    photos = work / "photos"
    draw_dataset(photos, sizes.photos, sizes.labels, workers=max(2, min(8, os.cpu_count() or 2)))
    table = work / "labels.csv"
    count = memory_table(photos, sizes.labels, table)
    data = work / "data"
    imported = import_csv(table, photos, "many_labels", data, multi_label=True)
    flags = ["--image-size", "32", "--epochs", "2", "--weights", "none", "--augment", "none", "--batch-size", "64"]
    flags += ["--fine-tune-epochs", "0", "--json"]
    found: dict[str, dict[str, Any]] = {}
    for kind, path in (("multi", imported.path), ("single", photos)):
        cold = work / f"cold_{kind}"
        argv = ["train", str(path), *flags, "--models-dir", str(cold / "models"), "--data-dir", str(cold / "data")]
        result = run_stage(work / f"train_{kind}.json", argv, None, {})
        if result["rc"] != 0:
            raise RuntimeError(f"core train ({kind}) failed: {result.get('tail', '')[-800:]}")
        found[kind] = {"rss_gb": result["rss_gb"], "seconds": result["seconds"], "stages": result.get("stages", {})}
        log.info("multilabel: %s at %d photos: %.2f GB, %.0f s", kind, count, result["rss_gb"], result["seconds"])
        shutil.rmtree(cold, ignore_errors=True)
    ours, theirs = found["multi"]["rss_gb"], found["single"]["rss_gb"]
    return Row(
        "multilabel.memory",
        "multilabel",
        f"peak RSS of `core train` on {sizes.labels:,} labels x {count:,} photos (32 px, frozen backbone)",
        "GB",
        ours,
        theirs,
        f"single-label, {sizes.labels:,} classes",
        theirs / ours if ours else None,
        target=f"<= {RSS_TARGET_GB:g} GB (the scale bench's budget)",
        met=bool(ours <= RSS_TARGET_GB),
        notes=(
            f"multi-label {found['multi']['seconds']:.0f} s, single-label {found['single']['seconds']:.0f} s; "
            "labels: each photo's class and 0-2 more by a Zipf law; split by the importer's iterative stratification"
        ),
        extra={"runs": json.loads(json.dumps(found, default=str)), "photos": count},
    )
