"""The image table: one row per image file, from its header only (size, mode, format, readable)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd
from PIL import Image

from core.data.datasets import DatasetIndex, scan_dataset
from core.data.imaging import MAX_PIXELS, ImageError, load_square
from core.data.multilabel import label_texts
from core.fileio import read_json, write_json_atomic
from core.paths import health_cache_name
from core.progress import StageCallback

CACHE_VERSION = 2  # of the cached table and analysis files; bump when their content changes (2: mean colour)
TABLE_COLUMNS = ["path", "class", "split", "width", "height", "mode", "format", "bytes", "readable", "reason"]
CHUNK = 64  # files between progress reports


def as_index(value: DatasetIndex | str | os.PathLike) -> DatasetIndex:
    return value if isinstance(value, DatasetIndex) else scan_dataset(value)


def report(progress: StageCallback | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def cache_file(cache_root, index: DatasetIndex, what: str, suffix: str) -> Path | None:
    if cache_root is None:
        return None
    return Path(cache_root) / health_cache_name(index.fingerprint, what, CACHE_VERSION, suffix)


def image_table(
    index: DatasetIndex | str | os.PathLike,
    progress: StageCallback | None = None,
    cache_root: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """One row per scanned image file, from its header only (fast: no pixels are decoded).

    Columns: path, class, split, width, height (as displayed, after EXIF rotation), mode,
    format, bytes, readable, reason. A file whose header cannot be read, or that is over the
    decompression-bomb limit, has readable False and the reason decoding would give.
    A truncated file can still look readable here; `check_dataset` decodes every file.

    Args:
        index: a scanned dataset, or its folder.
        progress: called as progress("reading headers", done, total).
        cache_root: where to cache the table by dataset fingerprint (e.g. `data/.cache`).
    """
    index = as_index(index)
    cache = cache_file(cache_root, index, "table", "json")
    if cache is not None:
        cached = read_json(cache)
        if cached and cached.get("version") == CACHE_VERSION and len(cached.get("path", [])) == len(index.entries):
            report(progress, "reading headers", len(index.entries), len(index.entries))
            return pd.DataFrame({c: cached[c] for c in TABLE_COLUMNS})
    rows = {c: [] for c in TABLE_COLUMNS}
    total = len(index.entries)
    named = label_texts(index.targets, index.classes) if index.multilabel else None  # "a|b" per photo
    for i, entry in enumerate(index.entries):
        width, height, mode, fmt, readable, reason = _header(index.root / entry.path)
        label = named[i] if named is not None else index.classes[entry.label]
        row = (entry.path, label, entry.split, width, height, mode, fmt, entry.bytes)
        for column, value in zip(TABLE_COLUMNS, (*row, readable, reason), strict=True):
            rows[column].append(value)
        if (i + 1) % CHUNK == 0 or i + 1 == total:
            report(progress, "reading headers", i + 1, total)
    if cache is not None:
        write_json_atomic(cache, {"version": CACHE_VERSION, **rows})
    return pd.DataFrame(rows)


def _header(path: Path) -> tuple[int, int, str, str, bool, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                mode, fmt = image.mode, image.format or ""
                orientation = _orientation(image)
    except Exception:
        return 0, 0, "", "", False, _decode_reason(path)
    if orientation in (5, 6, 7, 8):  # rotated a quarter turn: displayed with the sides swapped
        width, height = height, width
    if width * height > MAX_PIXELS or width < 1 or height < 1:
        return width, height, mode, fmt, False, _decode_reason(path)
    return width, height, mode, fmt, True, ""


def _orientation(image: Image.Image) -> int:
    # getexif() on a PNG without an early eXIf chunk decodes the whole image; only ask where it is cheap
    if image.format in ("JPEG", "MPO", "TIFF", "WEBP") or "exif" in image.info:
        try:
            return int(image.getexif().get(0x0112, 1))
        except Exception:
            return 1
    return 1


def _decode_reason(path: Path) -> str:
    """The reason training's decoder gives for this file (it fails fast on a bad header)."""
    try:
        load_square(path, 8)
    except ImageError as e:
        return str(e)
    except Exception as e:
        return f"could not decode ({type(e).__name__}: {e})"
    return "its header could not be read"
