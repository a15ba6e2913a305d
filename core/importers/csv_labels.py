"""Datasets labelled by a table: a folder of images and a CSV (or Parquet) of `image, label[, split]`.

Kaggle-style sets come this way (`id,breed`; `image,label,split`; ids with or without the extension; paths
in sub-folders). The import makes an ordinary Flora dataset without copying a photo: `data/<name>/<label>/`
holds a symbolic link per row to the image where it is, and `flora.json` records the split column when
there is one (the "manifest" layout). Links keep the import instant and the disk untouched; the images
must stay where they are (the dataset says where they came from).

Bad input gets a clear message and nothing half-made: a missing column (the columns found are listed),
rows whose file is missing (listed by id; `skip_missing` imports the rest), the same image with two
labels, empty labels, a split other than train/val/test, another encoding or delimiter (detected and
said), 0 usable rows.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from core.data.datasets import META_FILE
from core.importers.common import (
    SPLITS,
    ImportRejected,
    ImportResult,
    TableRows,
    finish,
    linked_notes,
    some,
    staging_folder,
    validate_dataset_name,
    write_meta,
)
from core.importers.multilabel_table import detect, import_table

PATH_COLUMNS = (
    "path", "image", "image_path", "filename", "file", "file_name", "img", "id", "image_id",
    "image_name", "image index", "image_index",  # Planet's image_name, NIH chest X-ray's "Image Index"
)  # fmt: skip
LABEL_COLUMNS = ("label", "class", "category", "species", "breed", "target", "y")
SPLIT_COLUMNS = ("split", "set", "subset", "fold")
# Names that say what a file or folder holds, not which dataset: a suggested name looks past them.
GENERIC_NAMES = {
    "labels", "label", "train", "test", "val", "data", "dataset", "metadata", "annotations", "classes",
    "train_labels", "trainlabels", "image_labels", "images", "image", "imgs", "img", "photos", "pictures",
    "train_images", "test_images", "jpg", "jpeg", "files", "all", "input", "sample_submission",
}  # fmt: skip


def suggest_name(table: str, images: str | os.PathLike | None) -> str:
    """A dataset name from the table's file name, or, when that is generic ("labels.csv", "train.csv"), from the
    images folder or the nearest parent folder whose name is not ("~/kaggle/dogs/train" -> "dogs")."""
    candidates = [Path(table).stem]
    if images:
        folder = Path(images).expanduser()
        candidates += [folder.name, *(parent.name for parent in folder.parents)]
    for candidate in candidates:
        cleaned = "_".join(candidate.split()).strip("._-")
        if cleaned and cleaned.lower() not in GENERIC_NAMES:
            return cleaned
    return "_".join(Path(table).stem.split()) or "table_dataset"


def read_table(path: str | os.PathLike) -> tuple[list[dict[str, str]], list[str], list[str]]:
    """(rows, columns, notes) of a CSV (delimiter and encoding detected) or a Parquet file.

    Raises:
        ImportRejected: unreadable, or no rows.
    """
    path = Path(path)
    notes: list[str] = []
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pandas as pd

            frame = pd.read_parquet(path)
            frame = frame.astype("string").fillna("").astype(str)  # a missing value is empty, not "None"
        except (ImportError, ValueError, OSError) as e:
            raise ImportRejected(f"{path.name} cannot be read as Parquet: {e}") from None
        columns = [str(c) for c in frame.columns]
        return [dict(zip(columns, row, strict=True)) for row in frame.itertuples(index=False)], columns, notes
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImportRejected(f"{path} cannot be read: {e.strerror or e}") from None
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if encoding != "utf-8-sig":
        notes.append(f"{path.name} is not UTF-8: read as {encoding}")
    try:
        dialect = csv.Sniffer().sniff(text[:20_000], delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    if delimiter != ",":
        notes.append(f"{path.name} separates its columns with {delimiter!r}, not commas: read that way")
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not columns or not rows:
        raise ImportRejected(f"{path.name} has no rows (an empty file, or a header alone)")
    return rows, columns, notes


def pick_column(columns: list[str], given: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    """The column to use for `what`: the one given, else the first known name (case-insensitive), else None."""
    if given:
        if given not in columns:
            raise ImportRejected(f"no column {given!r} in the table; its columns: {', '.join(columns)}")
        return given
    lower = {c.lower(): c for c in columns}
    return next((lower[name] for name in candidates if name in lower), None)


def import_csv(
    labels: str | os.PathLike,
    images: str | os.PathLike,
    name: str,
    data_root: str | os.PathLike,
    path_column: str | None = None,
    label_column: str | None = None,
    split_column: str | None = None,
    skip_missing: bool = False,
    overwrite: bool = False,
    multi_label: bool | None = None,
    delimiter: str | None = None,
    label_columns: list[str] | None = None,
    no_label: str | None = None,
) -> ImportResult:
    """Import the table `labels` over the images under `images` as dataset `name` (links, not copies).

    A table of label lists (one delimited column, or one 0/1 column per label) makes a multi-label dataset
    (core.importers.multilabel_table): detected, or asked for with `multi_label` (False: single-label as it is);
    `delimiter`, `label_columns` and `no_label` (a value meaning "no label", as NIH's "No Finding") are passed on.

    Raises:
        ImportRejected: any of the problems in the module's docstring, said with the rows concerned.
    """
    name = validate_dataset_name(name, data_root, overwrite)
    images = Path(images).expanduser().resolve()
    if not images.is_dir():
        raise ImportRejected(f"no folder of images at {images}")
    rows, columns, notes = read_table(labels)
    path_col = pick_column(columns, path_column, PATH_COLUMNS, "image")
    label_col = pick_column(columns, label_column, LABEL_COLUMNS, "label")
    split_col = pick_column(columns, split_column, SPLIT_COLUMNS, "split")
    if path_col is not None:
        shape = detect(rows, columns, path_col, label_col, split_col, multi_label, delimiter, label_columns, no_label)
        if shape is not None:
            args = (path_col, split_col, labels, notes, skip_missing, overwrite)
            return import_table(rows, shape, images, name, data_root, *args)
    if path_col is None or label_col is None:
        missing = [what for what, col in (("images (--path-column)", path_col), ("labels (--label-column)", label_col))
                   if col is None]  # fmt: skip
        raise ImportRejected(
            f"which column holds the {' and the '.join(missing)}? The table's columns: {', '.join(columns)}"
        )
    plan = _plan(rows, images, path_col, label_col, split_col, skip_missing, notes)
    with staging_folder(data_root, name, overwrite) as staging:
        splits: dict[str, str] = {}
        for rel, _label, target, split in plan["entries"]:
            link = staging / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
            if split:
                splits[rel] = split
        meta: dict[str, Any] = {"name": name, "source": "csv", "labels": str(Path(labels).resolve()),
                                "images": str(images), "linked": True}  # fmt: skip
        if splits:
            meta["splits"] = splits
        write_meta(staging, meta)
        notes += linked_notes(len(plan["entries"]), images, data_root)
        return finish(staging, name, data_root, "csv", plan["skipped"], notes)


def _plan(rows, images: Path, path_col: str, label_col: str, split_col: str | None, skip_missing: bool, notes):
    """Check every row; return {"entries": [(rel, label, target, split)], "skipped": [...]} or raise."""
    empty, bad_split, entries = [], [], []
    table = TableRows(images)
    for number, row in enumerate(rows, start=2):  # the header is line 1
        value, label = row.get(path_col, ""), row.get(label_col, "")
        if not label:
            empty.append(f"line {number} ({value or 'no image'})")
            continue
        split = ""
        if split_col:
            given = row.get(split_col, "").lower()
            split = SPLITS.get(given, "")
            if given and not split:
                bad_split.append(f"line {number}: {row.get(split_col)!r}")
                continue
        target = table.place(number, value, label)
        if target is None:
            continue
        folder = label.replace("/", "_").replace("\\", "_").strip(". ") or "_"
        rel = f"{folder}/{target.relative_to(images).as_posix().replace('/', '__')}"
        entries.append((rel, label, target, split))
    problems = []
    if empty:
        problems.append(f"{len(empty)} row(s) with no label: {some(empty)}")
    if bad_split:
        problems.append(f"{len(bad_split)} split value(s) other than train, val or test: {some(bad_split)}")
    problems += table.problems(skip_missing)
    if problems:
        raise ImportRejected("nothing imported: " + "; ".join(problems))
    if table.repeats:
        notes.append(f"{table.repeats} row(s) repeat an image with the same label: counted once")
    if not entries:
        raise ImportRejected("nothing imported: no row names an image that is there")
    return {"entries": entries, "skipped": table.skipped()}


__all__ = ["META_FILE", "import_csv", "read_table"]
