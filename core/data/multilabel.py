"""Datasets whose photos carry any number of labels (multi-label): their files, their label lists, their figures.

A multi-label dataset is a kind of dataset, not a fork: the same scan, fingerprint, cache, split rule and run store
hold it; `DatasetIndex.task` says which kind a dataset is and every part asks it. On disk:

  DATA/images/<photo>        the photos (an import links them where they are, as a single-label import does)
  DATA/labels.csv            path,labels[,split]: one row per photo, its labels joined by "|" (empty: none)
  DATA/flora.json            {"task": "multilabel", "label_file": "labels.csv", "label_names": [...], ...}

A photo with no label is a row with an empty list, never dropped: "none of these" is an answer the model must learn.
The label names come from flora.json, so a label no photo has (a 0/1 column of zeros) is still one.

`LabelSets` holds the lists in compressed rows (a photo's labels are `indices[indptr[i]:indptr[i + 1]]`): 100,000
photos x 1,000 labels, a few labels each, take a few MB where a dense 0/1 matrix takes 100 MB; `dense(rows)` gives the
0/1 rows a batch, a metric or a split needs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from stat import S_ISLNK
from typing import Any

import numpy as np

from core.data.imaging import is_image_name
from core.data.tasks import MULTI_LABEL, SINGLE_LABEL, TASKS  # noqa: F401 (their names here too)
from core.errors import InvalidInput
from core.fileio import write_bytes_atomic

LABEL_FILE = "labels.csv"
IMAGES_FOLDER = "images"
LABEL_SEPARATOR = "|"  # between the labels of one photo in labels.csv (a label name may not hold it)
NO_LABEL = "none of these"  # what a photo with no label is called where an answer is shown


class LabelFileError(InvalidInput):
    """A multi-label dataset's label file cannot be read as one; the message says which line and why."""


class LabelSets:
    """The label lists of N photos over C label names, in compressed rows."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, num_labels: int):
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int32)
        self.num_labels = int(num_labels)
        if len(self.indptr) == 0 or self.indptr[0] != 0 or self.indptr[-1] != len(self.indices):
            raise ValueError("indptr must start at 0 and end at len(indices)")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= self.num_labels):
            raise ValueError(f"label indices must be in [0, {self.num_labels})")

    @classmethod
    def from_lists(cls, lists: Iterable[Iterable[int]], num_labels: int) -> LabelSets:
        indptr, indices = [0], []
        for labels in lists:
            row = sorted({int(j) for j in labels})
            indices += row
            indptr.append(len(indices))
        return cls(np.array(indptr), np.array(indices, dtype=np.int32), num_labels)

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> LabelSets:
        matrix = np.asarray(matrix)
        rows, cols = np.nonzero(matrix > 0)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(matrix)))])
        return cls(indptr, cols.astype(np.int32), matrix.shape[1])

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, rows) -> np.ndarray:
        """The 0/1 rows (uint8) of these photos: what a batch or a metric reads."""
        return self.dense(rows)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.num_labels)

    @property
    def ndim(self) -> int:
        return 2

    def labels_of(self, row: int) -> list[int]:
        return self.indices[self.indptr[row] : self.indptr[row + 1]].tolist()

    def lists(self) -> list[list[int]]:
        return [self.labels_of(i) for i in range(len(self))]

    def dense(self, rows=None) -> np.ndarray:
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.zeros((len(rows), self.num_labels), dtype=np.uint8)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        if lengths.sum():
            which = np.repeat(np.arange(len(rows)), lengths)
            offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            out[which, self.indices[np.repeat(starts, lengths) + offsets]] = 1
        return out

    def take(self, rows) -> LabelSets:
        """The label lists of these photos, in this order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        lengths = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        if lengths.sum():
            starts = np.repeat(self.indptr[rows], lengths)
            offsets = np.arange(lengths.sum()) - np.repeat(indptr[:-1], lengths)
            indices = self.indices[starts + offsets]
        else:
            indices = np.zeros(0, dtype=np.int32)
        return LabelSets(indptr, indices, self.num_labels)

    def sizes(self) -> np.ndarray:
        """How many labels each photo has."""
        return np.diff(self.indptr)

    def positives(self, rows=None) -> np.ndarray:
        """How many photos (of `rows`, default all) have each label."""
        indices = self.indices if rows is None else self.take(rows).indices
        return np.bincount(indices, minlength=self.num_labels)

    def cooccurrence(self) -> np.ndarray:
        """(C, C) counts of photos having both labels; the diagonal is each label's count."""
        from scipy import sparse  # heavy: scipy

        matrix = sparse.csr_matrix(
            (np.ones(len(self.indices), dtype=np.int64), self.indices, self.indptr), shape=self.shape
        )
        return np.asarray((matrix.T @ matrix).todense(), dtype=np.int64)


def names_of(sets: LabelSets, row: int, names: Sequence[str]) -> list[str]:
    return [names[j] for j in sets.labels_of(row)]


def text_of(labels: Sequence[str]) -> str:
    """A photo's label list as one cell: "a|b", or "" for none."""
    return LABEL_SEPARATOR.join(labels)


def photos_of(index, name: str) -> list[str]:
    """The paths of a dataset's photos of class `name`, or (multi-label) having label `name`."""
    j = index.classes.index(name)
    if index.targets is None:
        return [e.path for e in index.entries if e.label == j]
    rows = np.repeat(np.arange(len(index.targets)), index.targets.sizes())[index.targets.indices == j]
    return [index.entries[int(i)].path for i in rows]


def label_texts(sets: LabelSets, names: Sequence[str]) -> list[str]:
    """Each photo's label list as one cell ("a|b"; "" for none)."""
    return [text_of(names_of(sets, i, names)) for i in range(len(sets))]


def label_set_ids(sets: LabelSets, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Each photo's label list as one id, and what each id is called ("a|b", NO_LABEL): a list taken as a value."""
    texts = label_texts(sets, names)
    distinct = sorted(set(texts))
    number = {text: i for i, text in enumerate(distinct)}
    return np.array([number[text] for text in texts], dtype=np.int64), [text or NO_LABEL for text in distinct]


def check_label_name(name: str) -> str | None:
    """Why `name` cannot be a label (None: it can)."""
    if not name or not name.strip():
        return "an empty label name"
    if LABEL_SEPARATOR in name:
        return f"{name!r} holds {LABEL_SEPARATOR!r}, which separates labels in the dataset's label file"
    if name != name.strip():
        return f"{name!r} starts or ends with a space"
    return None


def write_label_file(
    folder: str | os.PathLike, rows: Sequence[tuple[str, Sequence[str], str | None]], names: Sequence[str]
) -> None:
    """labels.csv of a dataset: (path relative to the dataset, label names, split or None) per photo, in order."""
    known = set(names)
    buffer = io.StringIO()
    with_split = any(split for _, _, split in rows)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "labels", "split"] if with_split else ["path", "labels"])
    for path, labels, split in rows:
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise ValueError(f"{path}: labels {unknown} are not among the dataset's label names")
        cells = [path, text_of(sorted(set(labels), key=list(names).index))]
        writer.writerow([*cells, split or ""] if with_split else cells)
    write_bytes_atomic(Path(folder) / LABEL_FILE, buffer.getvalue().encode("utf-8"))


def read_label_file(root: Path, meta: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[int], str | None]]]:
    """(label names, [(path, label indices, split)]) of a multi-label dataset's label file.

    Raises:
        LabelFileError: the file is missing or unreadable, a row names an unknown label or a path outside the
            dataset, or a photo is listed twice.
    """
    names = meta.get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        raise LabelFileError(f"{root}/flora.json says the dataset is multi-label but lists no label_names")
    if len(set(names)) != len(names):
        raise LabelFileError(f"{root}/flora.json lists a label name twice")
    position = {name: j for j, name in enumerate(names)}
    path = root / str(meta.get("label_file") or LABEL_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelFileError(f"the label file of multi-label dataset {root} cannot be read ({path}): {e}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[:2] != ["path", "labels"]:
        raise LabelFileError(f"{path} must start with the header path,labels[,split]. Received: {header}")
    rows, seen = [], set()
    for number, cells in enumerate(reader, start=2):
        if not cells:
            continue
        rel = cells[0]
        if not rel or rel.startswith("/") or ".." in Path(rel).parts:
            raise LabelFileError(f"{path} line {number}: {rel!r} is not a path inside the dataset")
        if rel in seen:
            raise LabelFileError(f"{path} line {number}: {rel} is listed twice")
        seen.add(rel)
        cell = cells[1] if len(cells) > 1 else ""
        labels = [label for label in cell.split(LABEL_SEPARATOR) if label] if cell else []
        unknown = [label for label in labels if label not in position]
        if unknown:
            raise LabelFileError(f"{path} line {number}: unknown label(s) {unknown} (not in flora.json's label_names)")
        split = cells[2].strip().lower() if len(cells) > 2 and cells[2].strip() else None
        rows.append((rel, sorted({position[label] for label in labels}), split))
    return list(names), rows


def scan_files(root: Path, rows: list[tuple[str, list[int], str | None]]):
    """The listed photos that are there: [(rel, labels, split, bytes, mtime ns)], the listed ones that are not (or
    are not images by their name), and those that are symbolic links (the app's link rule)."""
    found, missing, links = [], [], []
    for rel, labels, split in rows:
        if not is_image_name(rel):
            missing.append(f"{rel} (not an image by its name)")
            continue
        full = os.path.join(root, rel)
        try:
            stat = os.lstat(full)
            if S_ISLNK(stat.st_mode):
                links.append(rel)
                stat = os.stat(full)
        except OSError:
            missing.append(f"{rel} (listed in {LABEL_FILE}, not found)")
            continue
        found.append((rel, labels, split, stat.st_size, stat.st_mtime_ns))
    found.sort(key=lambda row: row[0])
    return found, missing, links


def fingerprint(layout: str, found, names: Sequence[str]) -> str:
    """What names this exact content: the photos (path, size, time, split) and every photo's labels, so relabelling a
    photo is a new dataset (as moving it to another class folder is), and never a single-label fingerprint."""
    digest = hashlib.sha256(f"layout=multilabel-{layout}\nlabels={LABEL_SEPARATOR.join(names)}\n".encode())
    for rel, labels, split, size, mtime in found:
        digest.update(f"{rel}\t{size}\t{mtime}\t{split}\t{','.join(map(str, labels))}\n".encode())
    return digest.hexdigest()[:16]


def scan(root: Path, meta: dict[str, Any], entry: Callable, split_names: dict[str, str]) -> dict[str, Any]:
    """What a scan of a multi-label dataset finds, as DatasetIndex fields: `entry(path, -1, split, bytes)` makes
    each photo's ImageEntry, `split_names` reads a split's name (core.data.datasets gives both).

    Raises:
        LabelFileError: as read_label_file, or no listed photo is there.
    """
    names, rows = read_label_file(root, meta)
    found, missing, links = scan_files(root, rows)
    if not found:
        raise LabelFileError(f"no photo listed in {root / LABEL_FILE} is there")
    layout = "manifest" if any(split for _, _, split, _, _ in found) else "classes"
    return {
        "classes": names,
        "entries": [
            entry(rel, -1, split_names.get(split or "") if layout == "manifest" else None, size)
            for rel, _, split, size, _ in found
        ],
        "fingerprint": fingerprint(layout, found, names),
        "layout": layout,
        "ignored_files": sorted(missing),
        "links": sorted(links),
        "task": MULTI_LABEL,
        "targets": LabelSets.from_lists((labels for _, labels, _, _, _ in found), len(names)),
    }


def label_statistics(sets: LabelSets, names: Sequence[str]) -> dict[str, Any]:
    """Photos per label, labels per photo and the pairs that come together most: the Dataset page's figures."""
    positives = sets.positives()
    sizes = sets.sizes()
    co = sets.cooccurrence() if sets.num_labels <= 200 else None
    pairs = []
    if co is not None:
        upper = np.triu(co, 1)
        for i, j in zip(*np.nonzero(upper), strict=True):
            pairs.append((names[i], names[j], int(upper[i, j])))
        pairs.sort(key=lambda pair: (-pair[2], pair[0], pair[1]))
    return {
        "photos": len(sets),
        "labels": len(names),
        "per_label": {name: int(positives[j]) for j, name in enumerate(names)},
        "labels_per_photo": {int(k): int(v) for k, v in zip(*np.unique(sizes, return_counts=True), strict=True)},
        "without_label": int((sizes == 0).sum()),
        "mean_labels": float(sizes.mean()) if len(sizes) else 0.0,
        "pairs": pairs,
    }


__all__ = [
    "IMAGES_FOLDER",
    "LABEL_FILE",
    "MULTI_LABEL",
    "NO_LABEL",
    "SINGLE_LABEL",
    "LabelFileError",
    "LabelSets",
    "label_statistics",
    "read_label_file",
    "write_label_file",
]
