"""Multi-label datasets from a table: a folder of images and a CSV/Parquet naming each photo's labels.

Two shapes are read (core.importers.csv_labels.import_csv reads the table and hands it here):
  delimited   one column holds a photo's labels in one cell, separated by a space, `|`, `,` or `;`
              (Planet's `image_name,tags`: "clear primary road"; NIH chest X-ray's `Finding Labels`: "Mass|Nodule")
  columns     one 0/1 column per label (CelebA's -1/1 too): the header names the labels
The shape and the delimiter are detected and said (or given). A photo with no label (an empty cell, all zeros) is
kept with an empty list, never dropped. Every malformed row is named (its line, and why) and nothing is imported
until none is left; rows whose image is not there are listed (`skip_missing` imports the rest).

The dataset made is core.data.multilabel's layout: `images/` holds a link per photo, `labels.csv` the lists.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data import multilabel
from core.importers.common import (
    SPLITS,
    ImportRejected,
    ImportResult,
    TableRows,
    finish,
    linked_notes,
    some,
    staging_folder,
    write_meta,
)

DELIMITERS = ("|", ";", ",", " ")  # in the order they are tried: the rarer in a label's own name first
DELIMITER_NAMES = {"|": "'|'", ";": "';'", ",": "commas", " ": "spaces"}
MULTI_COLUMNS = ("labels", "tags", "finding labels", "finding_labels", "attributes", "categories")
TRUE_VALUES = {"1", "1.0", "true", "yes", "y"}
FALSE_VALUES = {"0", "0.0", "-1", "-1.0", "false", "no", "n"}
# A cell saying "no label" in words (NIH chest X-ray's "No Finding"): read as an empty list when it never comes with
# another label in a cell; `no_label` names any other such value.
NO_LABEL_WORDS = {"no finding", "no findings", "none", "no label", "no labels", "nothing"}


@dataclass
class LabelShape:
    """Where a table keeps its labels: one delimited column, or one 0/1 column per label."""

    kind: str  # "delimited" | "columns"
    column: str | None = None  # delimited: the column
    delimiter: str | None = None  # delimited: between a cell's labels
    columns: list[str] = field(default_factory=list)  # columns: one per label, named by its header
    why: str = ""  # how it was found, in words
    no_label: str | None = None  # delimited: the cell that means no label ("No Finding"), given or found

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "delimited":
            found = {"no_label": self.no_label} if self.no_label else {}
            return {"kind": self.kind, "column": self.column, "delimiter": self.delimiter, **found}
        return {"kind": self.kind, "columns": list(self.columns)}


def detect_delimiter(values: list[str], lists: bool = False) -> str | None:
    """The delimiter of a column of label lists, or None when its cells look like single labels.

    A delimiter is one whose pieces recombine: some cell splits into several labels and there are fewer distinct
    labels than distinct cells ("clear primary road" over 17 tags); a class name with a space ("sweet pea") splits
    into pieces that do not come back in other cells. Spaces must halve the count, as names have spaces more often.
    A column whose name says it holds lists (`lists`: tags, labels...) needs less: a piece that comes back in
    another cell (Planet's first rows: "haze primary", "clear primary" share "primary").
    """
    distinct = {value for value in values if value}
    for delimiter in DELIMITERS:
        pieces = [[piece.strip() for piece in value.split(delimiter) if piece.strip()] for value in distinct]
        if not any(len(found) > 1 for found in pieces):
            continue
        tokens = {piece for found in pieces for piece in found}
        if lists and len(tokens) < sum(len(set(found)) for found in pieces):
            return delimiter
        limit = len(distinct) / 2 if delimiter == " " else len(distinct)
        if len(tokens) < limit:
            return delimiter
    return None


def indicator_columns(rows: list[dict[str, str]], columns: list[str], others: set[str]) -> list[str]:
    """The columns (other than `others`) that read as 0/1 (or -1/1, true/false): at least one 1, and something else
    in one row, or one in ten at most (each such row is named as malformed when the table is read)."""
    allowed = TRUE_VALUES | FALSE_VALUES
    found = []
    for column in columns:
        if column in others:
            continue
        values = [row.get(column, "").strip().lower() for row in rows]
        others_seen = sum(value not in allowed for value in values)
        if values and others_seen <= max(1, len(values) // 10) and any(value in TRUE_VALUES for value in values):
            found.append(column)
    return found


def detect(
    rows: list[dict[str, str]],
    columns: list[str],
    path_col: str,
    label_col: str | None,
    split_col: str | None,
    multi_label: bool | None,
    delimiter: str | None = None,
    label_columns: list[str] | None = None,
    no_label: str | None = None,
) -> LabelShape | None:
    """The table's multi-label shape, or None for a single-label table.

    `multi_label` None detects; True insists (and says what is missing); False is single-label. `delimiter` and
    `label_columns` give the shape instead of detecting it; `no_label` the cell meaning no label (else one in words,
    NO_LABEL_WORDS, that never comes with another label is found).

    Raises:
        ImportRejected: multi-label asked for, and no shape found; a given column is not in the table.
    """
    if multi_label is False:
        return None
    if label_columns:
        missing = [c for c in label_columns if c not in columns]
        if missing:
            raise ImportRejected(f"no column(s) {missing} in the table; its columns: {', '.join(columns)}")
        return LabelShape("columns", columns=list(label_columns), why="the label columns given")
    multi_named = {c.lower(): c for c in columns if c.lower() in MULTI_COLUMNS}
    column = label_col or next(iter(multi_named.values()), None)
    if column is not None:
        values = [row.get(column, "").strip() for row in rows]
        if delimiter is not None:
            shape = LabelShape("delimited", column, delimiter, why=f"labels separated by {_named(delimiter)}, as given")
            return _with_no_label(shape, values, no_label)
        found = detect_delimiter(values, lists=column.lower() in MULTI_COLUMNS)
        if found is not None:
            why = f"column {column!r} holds lists of labels separated by {_named(found)}"
            return _with_no_label(LabelShape("delimited", column, found, why=why), values, no_label)
        if column.lower() in MULTI_COLUMNS or multi_label:
            one = "each cell one label (or none)"
            shape = LabelShape("delimited", column, "|", why=f"column {column!r} holds label lists, {one} so far")
            return _with_no_label(shape, values, no_label)
        return None
    others = {path_col, *(c for c in (split_col,) if c)}
    flags = indicator_columns(rows, columns, others)
    if len(flags) >= 2 or (multi_label and flags):
        return LabelShape("columns", columns=flags, why=f"{len(flags)} columns of 0/1, one per label")
    if multi_label:
        raise ImportRejected(
            "asked for a multi-label import, but the table has neither a column of label lists (labels, tags...) "
            f"nor columns of 0/1: its columns are {', '.join(columns)}"
        )
    return None


def _with_no_label(shape: LabelShape, values: list[str], given: str | None) -> LabelShape:
    """`shape` with the cell meaning no label: the one given, else a NO_LABEL_WORDS cell never with another label."""
    if given:
        shape.no_label = given
        shape.why += f"; {given!r} means no label, as given"
        return shape
    pieces = [[piece.strip() for piece in value.split(shape.delimiter) if piece.strip()] for value in values]
    alone = {found[0] for found in pieces if len(found) == 1 and found[0].lower() in NO_LABEL_WORDS}
    for word in sorted(alone):
        if not any(word in found for found in pieces if len(found) > 1):
            shape.no_label = word
            shape.why += f"; {word!r} read as no label (it never comes with another)"
            break
    return shape


def _named(delimiter: str) -> str:
    return DELIMITER_NAMES.get(delimiter, repr(delimiter))


def labels_of_rows(rows, shape: LabelShape, path_col: str):
    """[(line, path value, [label names])] and the malformed rows, named: each row read by `shape`."""
    no_label = shape.no_label
    read, bad = [], []
    for number, row in enumerate(rows, start=2):  # the header is line 1
        value = row.get(path_col, "").strip()
        if shape.kind == "delimited":
            cell = row.get(shape.column, "").strip()
            labels = [piece.strip() for piece in cell.split(shape.delimiter)] if cell else []
            labels = [label for label in labels if label and label != no_label]
        else:
            labels, wrong = [], []
            for column in shape.columns:
                flag = row.get(column, "").strip().lower()
                if flag in TRUE_VALUES:
                    labels.append(column)
                elif flag not in FALSE_VALUES:
                    wrong.append(f"{column}={row.get(column, '')!r}")
            if wrong:
                bad.append(f"line {number}: not 0 or 1: {', '.join(wrong[:3])}")
                continue
        problems = [why for why in map(multilabel.check_label_name, labels) if why]
        if problems:
            bad.append(f"line {number}: {problems[0]}")
            continue
        read.append((number, value, sorted(set(labels))))
    return read, bad


def import_table(
    rows: list[dict[str, str]],
    shape: LabelShape,
    images: Path,
    name: str,
    data_root: str | os.PathLike,
    path_col: str,
    split_col: str | None,
    table: str | os.PathLike,
    notes: list[str],
    skip_missing: bool = False,
    overwrite: bool = False,
) -> ImportResult:
    """Import a checked table as a multi-label dataset `name` (links, not copies).

    Raises:
        ImportRejected: malformed rows, missing images (unless `skip_missing`), conflicting repeats, no usable row.
    """
    read, bad = labels_of_rows(rows, shape, path_col)
    entries, bad_split = [], []
    placed = TableRows(images)
    for number, value, labels in read:
        split = ""
        if split_col:
            given = rows[number - 2].get(split_col, "").strip().lower()
            split = SPLITS.get(given, "")
            if given and not split:
                bad_split.append(f"line {number}: {rows[number - 2].get(split_col)!r}")
                continue
        target = placed.place(number, value, labels)
        if target is None:
            continue
        rel = f"{multilabel.IMAGES_FOLDER}/{target.relative_to(images).as_posix().replace('/', '__')}"
        entries.append((rel, labels, split, target))
    problems = []
    if bad:
        problems.append(f"{len(bad)} malformed row(s): {some(bad)}")
    if bad_split:
        problems.append(f"{len(bad_split)} split value(s) other than train, val or test: {some(bad_split)}")
    problems += placed.problems(skip_missing)
    if problems:
        raise ImportRejected("nothing imported: " + "; ".join(problems))
    if not entries:
        raise ImportRejected("nothing imported: no row names an image that is there")
    counts = Counter(label for _, labels, _, _ in entries for label in labels)
    names = list(shape.columns) if shape.kind == "columns" else sorted(counts)
    if len(names) < 2:
        raise ImportRejected(f"a multi-label dataset needs at least 2 labels; the table has {len(names)}: {names}")
    notes.append(f"multi-label: {shape.why}; {len(names)} labels")
    without = sum(1 for _, labels, _, _ in entries if not labels)
    if without:
        notes.append(f"{without} photo(s) have no label: kept, with an empty list (the model learns 'none of these')")
    if placed.repeats:
        notes.append(f"{placed.repeats} row(s) repeat an image with the same labels: counted once")
    with staging_folder(data_root, name, overwrite) as staging:
        for rel, _labels, _split, target in entries:
            link = staging / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
        multilabel.write_label_file(staging, [(rel, labels, split or None) for rel, labels, split, _ in entries], names)
        write_meta(
            staging,
            {
                "name": name,
                "source": "csv",
                "labels": str(Path(table).resolve()),
                "images": str(images),
                "linked": True,
                "task": multilabel.MULTI_LABEL,
                "label_file": multilabel.LABEL_FILE,
                "label_names": names,
                "label_shape": shape.to_dict(),
            },
        )
        notes += linked_notes(len(entries), images, data_root)
        return finish(staging, name, data_root, "csv", placed.skipped(), notes)
