"""A multi-label set from single-label photos: 2x2 mosaics of photos of several kinds, a label for each kind present.

Each mosaic has four cells; a cell holds a photo of one of the chosen kinds or a plain grey tile, so a mosaic's
labels are exactly the kinds it shows (one to four of them), and a share of mosaics show none (four grey tiles).
The photos are real (e.g. ../shared/data/flowers5-128) and each one is used at most once, so no two mosaics share a
photo. The table is written both ways the importer reads: one delimited column, and one 0/1 column per label.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image

GREY = (128, 128, 128)


def photos_by_kind(folder: str | os.PathLike, kinds: list[str] | None = None) -> dict[str, list[Path]]:
    """The photos of each class folder of a single-label dataset (the first `kinds`, sorted, when given)."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = [n for n in names if kinds is None or n in kinds]
    return {name: sorted(p for p in (folder / name).iterdir() if p.is_file()) for name in names}


def _cell(path: Path | None, size: int, rng: np.random.Generator) -> Image.Image:
    if path is None:
        tile = np.full((size, size, 3), GREY, dtype=np.float32) + rng.normal(0, 6, (size, size, 3))
        return Image.fromarray(np.clip(tile, 0, 255).astype(np.uint8), "RGB")
    with Image.open(path) as image:
        image = image.convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)


def draw_mosaics(
    sources: dict[str, list[Path]],
    out: str | os.PathLike,
    count: int,
    seed: int = 0,
    cell: int = 64,
    none_share: float = 0.1,
    cells: bool = False,
) -> list[tuple[str, list]]:
    """Write `count` mosaics as JPEGs into `out`; return [(file name, labels)] in order; with `cells`, [(file name,
    the kind in each cell: top left, top right, bottom left, bottom right, None for grey)] instead.

    Raises:
        ValueError: fewer than 2 kinds, or not enough photos for `count` mosaics.
    """
    kinds = sorted(sources)
    if len(kinds) < 2:
        raise ValueError(f"mosaics need at least 2 kinds of photo. Received: {kinds}")
    rng = np.random.default_rng(seed)
    pools = {kind: list(rng.permutation(len(sources[kind]))) for kind in kinds}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        present = [] if rng.random() < none_share else _draw_kinds(kinds, rng)
        kinds_in: list[str | None] = list(present) + [None] * (4 - len(present))
        for j in range(len(present), 4):  # the other cells: grey, or another photo of a kind already present
            kinds_in[j] = present[int(rng.integers(len(present)))] if present and rng.random() < 0.3 else None
        placed = [kinds_in[j] for j in rng.permutation(4)]
        canvas = Image.new("RGB", (2 * cell, 2 * cell))
        for j, kind in enumerate(placed):
            path = None
            if kind is not None:
                if not pools[kind]:
                    raise ValueError(f"not enough photos of {kind!r} for {count} mosaics")
                path = sources[kind][pools[kind].pop()]
            canvas.paste(_cell(path, cell, rng), ((j % 2) * cell, (j // 2) * cell))
        name = f"mosaic_{i:05d}.jpg"
        canvas.save(out / name, quality=92)
        made.append((name, placed if cells else sorted(present)))
    return made


def _draw_kinds(kinds: list[str], rng: np.random.Generator) -> list[str]:
    """One to four kinds (fewer more often), each at most once."""
    weights = np.array([0.4, 0.3, 0.2, 0.1])[: min(4, len(kinds))]
    how_many = 1 + int(rng.choice(len(weights), p=weights / weights.sum()))
    return [kinds[j] for j in sorted(rng.choice(len(kinds), size=how_many, replace=False))]


def write_tables(made: list[tuple[str, list[str]]], kinds: list[str], folder: str | os.PathLike) -> dict[str, Path]:
    """The table both ways: `delimited.csv` (image,tags: labels separated by spaces) and `columns.csv` (image and
    one 0/1 column per kind)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    delimited, columns = folder / "delimited.csv", folder / "columns.csv"
    with open(delimited, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "tags"])
        writer.writerows([name, " ".join(labels)] for name, labels in made)
    with open(columns, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *kinds])
        writer.writerows([name, *(int(kind in labels) for kind in kinds)] for name, labels in made)
    return {"delimited": delimited, "columns": columns}
