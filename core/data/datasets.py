"""Datasets on disk: scan a folder of class folders, fingerprint it, split it by class.

Layouts understood:
  DATA/<class>/<image>                        one pool, split here with a seed
  DATA/{train,val,test}/<class>/<image>       already split (val or test may be missing)
  DATA/<class>/<image> + DATA/flora.json      a "splits" mapping recorded by an importer
  DATA/images/<image> + DATA/labels.csv       multi-label, any number of labels a photo: core.data.multilabel
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISLNK
from typing import Any

import numpy as np

from core.data import multilabel
from core.data.imaging import is_image_name
from core.data.test_size import SMALL_TEST_SPLIT, accuracy_margin, small_test_note  # noqa: F401 (their old home)
from core.errors import InvalidInput
from core.fileio import read_json, update_json

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
LAYOUT_SPLITS = {  # how each layout splits, in words (pickers, the Dataset page)
    "classes": "none of its own: split at training, stratified, seeded",
    "presplit": "its own: train/val/test folders",
    "manifest": "its own: recorded by the importer",
}
SPLIT_NAMES = {"random": "seeded", "dataset": "own"}  # a Split's source as every page names it (walk 54: two names)
META_FILE = "flora.json"  # written by importers: name, source, synthetic, optional "splits"
_IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}
UNLABELLED_NAMES = ("unlabelled", "unlabeled")  # top-level photos without a label (core.data.unlabelled): no class
LABELLED_IN_FLORA = "labelled_in_flora"  # flora.json: photos labelled in Flora, put in training (core.runs.split)


def split_of_folder(name: str) -> str | None:
    """The split a folder's name stands for ("train", "val", "test"; also valid, validation, testing...), or None."""
    return _SPLIT_ALIASES.get(name.lower())


class DatasetError(InvalidInput):
    """The dataset cannot be used as asked; the message says what to change."""


@dataclass(frozen=True)
class ImageEntry:
    """One image file of a dataset."""

    path: str  # relative to the dataset root, POSIX separators
    label: int  # the class; -1 in a multi-label dataset (its labels are the index's `targets`)
    split: str | None  # "train" | "val" | "test" when the dataset brings its split
    bytes: int


@dataclass
class DatasetIndex:
    """What a scan found: classes, images, and the fingerprint naming this exact content."""

    root: Path
    classes: list[str]
    entries: list[ImageEntry]
    fingerprint: str
    layout: str  # "classes" | "presplit" | "manifest"
    empty_classes: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)  # not images by their extension
    meta: dict[str, Any] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)  # class folders and photos that are symbolic links (relative)
    task: str = multilabel.SINGLE_LABEL  # or MULTI_LABEL: `classes` are the label names, `targets` each entry's
    targets: multilabel.LabelSets | None = None

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.root.name

    @property
    def multilabel(self) -> bool:  # every part that differs by task asks this
        return self.task == multilabel.MULTI_LABEL

    @property
    def has_split(self) -> bool:
        return self.layout in ("presplit", "manifest")

    @property
    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.entries], dtype=np.int32)

    def class_counts(self) -> dict[str, int]:  # multi-label: photos having each label
        if self.targets is not None:
            positives = self.targets.positives()
            return {name: int(positives[i]) for i, name in enumerate(self.classes)}
        counts = Counter(e.label for e in self.entries)
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def absolute(self, entry: ImageEntry | str) -> Path:
        rel = entry.path if isinstance(entry, ImageEntry) else entry
        return self.root / rel


class ScanLimit(DatasetError):
    """A folder scan stopped at its bound (file names or seconds); the message says where and why."""


@dataclasses.dataclass
class _Budget:
    """How far a scan may go: file names seen and seconds spent (None: no bound)."""

    max_files: int | None
    max_seconds: float | None
    root: Path
    seen: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    def count(self, names: int) -> None:
        self.seen += names
        if self.max_files is not None and self.seen > self.max_files:
            raise ScanLimit(
                f"stopped scanning {self.root} after {self.max_files:,} file names: is this the dataset's own folder "
                "(class folders inside), not a folder above it?"
            )
        if self.max_seconds is not None and time.monotonic() - self.started > self.max_seconds:
            raise ScanLimit(
                f"stopped scanning {self.root} after {self.max_seconds:.0f} s ({self.seen:,} file names so far): "
                "is this the dataset's own folder? (The CLI, python -m core train, scans without this bound.)"
            )


def scan_dataset(
    root: str | os.PathLike, max_files: int | None = None, max_seconds: float | None = None
) -> DatasetIndex:
    """Index a dataset folder without opening any image.

    `max_files` / `max_seconds` bound the scan (the app's: a folder picked by mistake, such as `/`, stops
    early and says so); None scans everything.

    Raises:
        DatasetError: the folder is missing or holds no class folder with images.
        ScanLimit: a bound was reached.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    budget = _Budget(max_files, max_seconds, root)
    meta = read_json(root / META_FILE, default={}) or {}
    if isinstance(meta, dict) and meta.get("task") == multilabel.MULTI_LABEL:  # labels from its label file
        try:
            return DatasetIndex(root, meta=meta, **multilabel.scan(root, meta, ImageEntry, _SPLIT_ALIASES))
        except multilabel.LabelFileError as e:
            raise DatasetError(str(e)) from None
    manifest = meta.pop("splits", None) if isinstance(meta, dict) else None

    split_dirs = _split_dirs(root)
    if split_dirs:
        layout = "presplit"
        found = _scan_presplit(root, split_dirs, budget)
    else:
        layout = "manifest" if manifest else "classes"
        found = _scan_class_folders(root, None, budget=budget)

    files, ignored, seen_classes, links = found
    classes = sorted({cls for _, cls, _, _, _ in files})
    empty = sorted(seen_classes - set(classes))
    if not classes:
        loose = sum(1 for p in root.iterdir() if p.is_file() and _visible(p) and is_image_name(p.name))
        if loose:
            raise DatasetError(
                f"found {loose} image(s) directly in {root} but no class folders: Flora learns the class of "
                f"each photo from the folder it is in. Make one folder per class inside it "
                f"(e.g. {root.name}/cat/, {root.name}/dog/) and move each photo into its class's folder."
            )
        raise DatasetError(
            f"no images found in {root}: expected class folders (DATA/<class>/<image>) "
            f"or split folders (DATA/train/<class>/<image>)"
        )
    label_of = {name: i for i, name in enumerate(classes)}
    entries = []
    mtimes = {}
    for rel, cls, split, size, mtime in sorted(files):
        if layout == "manifest":
            split = _SPLIT_ALIASES.get(str(manifest.get(rel, "")).lower())
        entries.append(ImageEntry(rel, label_of[cls], split, size))
        mtimes[rel] = mtime
    fingerprint = _fingerprint(root, entries, layout, mtimes)
    return DatasetIndex(root, classes, entries, fingerprint, layout, empty, sorted(ignored), meta, sorted(links))


ADDED_BY = "added_by"  # in a dataset's flora.json: who added it from the app (a shared Flora says whose it is)


def record_added_by(dataset_root: str | os.PathLike, person: str) -> None:
    """Note in the dataset's flora.json who added it (kept if already noted: the first to add it)."""
    meta_path = Path(dataset_root) / META_FILE
    update_json(
        meta_path, lambda meta: None if not isinstance(meta, dict) or meta.get(ADDED_BY) else {**meta, ADDED_BY: person}
    )


def _visible(path: Path) -> bool:
    return _visible_name(path.name)


def _split_dirs(root: Path) -> dict[str, Path]:
    """Split folders at the top (train/val/test and aliases), if `train` is among them."""
    found = {}
    for child in root.iterdir():
        if child.is_dir() and _visible(child) and child.name.lower() in _SPLIT_ALIASES:
            found[_SPLIT_ALIASES[child.name.lower()]] = child
    return found if "train" in found else {}


def _scan_presplit(root: Path, split_dirs: dict[str, Path], budget: _Budget | None = None):
    files, ignored, seen, links = [], [], set(), []
    for split, folder in split_dirs.items():
        sub_files, sub_ignored, sub_seen, sub_links = _scan_class_folders(folder, split, root, budget)
        files += sub_files
        ignored += sub_ignored
        seen |= sub_seen
        links += sub_links
        if folder.is_symlink():
            links.append(folder.name)
    return files, ignored, seen, links


def _scan_class_folders(folder: Path, split: str | None, root: Path | None = None, budget: _Budget | None = None):
    """(files as (relative path, class, split, bytes, mtime ns), ignored names, class folders seen, links:
    the class folders, subfolders and photos that are symbolic links, for the app's link rule (core.data.roots)).

    Plain strings and one stat per file: 100,000 photos in about a second, where pathlib objects and a second
    stat for the fingerprint took 6 s (the Dataset page's first draw waited for it)."""
    root = root or folder
    prefix = len(str(root)) + 1
    files, ignored, seen, links = [], [], set(), []
    for class_dir in sorted(folder.iterdir()):
        if not (class_dir.is_dir() and _visible(class_dir)):
            continue
        if split is None and class_dir.name.lower() in UNLABELLED_NAMES:
            continue  # photos waiting for a label (core.data.unlabelled), never a class
        seen.add(class_dir.name)
        if class_dir.is_symlink():
            links.append(str(class_dir)[prefix:].replace(os.sep, "/"))
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
            dirnames[:] = [d for d in dirnames if _visible_name(d)]
            relative_dir = dirpath[prefix:].replace(os.sep, "/")
            links += [f"{relative_dir}/{d}" for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            if budget is not None:
                budget.count(len(filenames) + len(dirnames))
            for name in filenames:
                if not _visible_name(name):
                    continue
                rel = f"{relative_dir}/{name}"
                if not is_image_name(name):
                    ignored.append(rel)
                    continue
                try:
                    stat = os.lstat(os.path.join(dirpath, name))  # a regular file: one call, as a stat
                    if S_ISLNK(stat.st_mode):
                        links.append(rel)
                        stat = os.stat(os.path.join(dirpath, name))
                except OSError:
                    continue
                files.append((rel, class_dir.name, split, stat.st_size, stat.st_mtime_ns))
    return files, ignored, seen, links


def _visible_name(name: str) -> bool:
    return not name.startswith(".") and name not in _IGNORED_NAMES


def _fingerprint(root: Path, entries: list[ImageEntry], layout: str, mtimes: dict[str, int] | None = None) -> str:
    digest = hashlib.sha256(f"layout={layout}\n".encode())
    for entry in entries:
        if mtimes is not None and entry.path in mtimes:
            mtime = mtimes[entry.path]
        else:
            try:
                mtime = (root / entry.path).stat().st_mtime_ns
            except OSError:
                mtime = 0
        digest.update(f"{entry.path}\t{entry.bytes}\t{mtime}\t{entry.split}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class Split:
    """Positions (into the labels given to `split_indices`) of each split, and why."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str  # "random" (seeded, stratified) or "dataset" (the dataset's own)
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def counts_by_class(self, labels: np.ndarray, classes: list[str]) -> dict[str, dict[str, int]]:
        """{class: {train: n, val: n, test: n}}."""
        table = {}
        for i, name in enumerate(classes):
            table[name] = {s: int(np.sum(labels[getattr(self, s)] == i)) for s in SPLITS}
        return table


def split_indices(
    labels: np.ndarray,
    classes: list[str],
    given: list[str | None] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
) -> Split:
    """Stratified train/val/test split with a seed, or the dataset's own where it has one.

    A class with one image goes to train only, one with two gets no validation image; the
    notes say so. Where the dataset brings train but no val (or test), that split is carved
    out of its train images per class.

    Raises:
        DatasetError: fewer than two classes, or too few images to make a val or test split.
    """
    labels = np.asarray(labels)
    present = sorted(set(labels.tolist()))
    if len(present) < 2:
        only = ", ".join(repr(classes[i]) for i in present) or "none"
        raise DatasetError(f"training needs at least 2 classes with readable images; found {len(present)} ({only})")
    notes: list[str] = []
    rng = np.random.default_rng(seed)
    if given is not None and any(s is not None for s in given):
        split = _split_from_dataset(labels, classes, given, val_fraction, test_fraction, rng, notes)
    else:
        parts = {s: [] for s in SPLITS}
        for label in present:
            members = np.flatnonzero(labels == label)
            for name, chosen in _carve(members, val_fraction, test_fraction, rng, classes[label], notes).items():
                parts[name].append(chosen)
        split = Split(*(np.sort(np.concatenate(parts[s])).astype(np.int64) for s in SPLITS), "random", notes)
    for name in ("val", "test"):
        if len(getattr(split, name)) == 0:
            raise DatasetError(
                f"too few images to make a {name} split: every class has fewer than 3 readable "
                f"images. Add images, or bring your own split (DATA/train, DATA/val, DATA/test)."
            )
    if len(split.test) < SMALL_TEST_SPLIT:
        split.notes.append(small_test_note(len(split.test)))
    return split


def _carve(
    members: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
    name: str,
    notes: list[str],
) -> dict[str, np.ndarray]:
    """Shuffle one class's positions and cut them into train/val/test."""
    members = rng.permutation(members)
    n = len(members)
    if n == 1:
        notes.append(f"class {name!r} has 1 image: it goes to train only (no validation or test image)")
        return {"train": members, "val": members[:0], "test": members[:0]}
    if n == 2:
        notes.append(f"class {name!r} has 2 images: 1 train, 1 test, no validation image")
        return {"train": members[:1], "val": members[:0], "test": members[1:]}
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    n_train = n - n_test - n_val
    return {
        "train": members[:n_train],
        "val": members[n_train : n_train + n_val],
        "test": members[n_train + n_val :],
    }


def _split_from_dataset(labels, classes, given, val_fraction, test_fraction, rng, notes) -> Split:
    given = np.array([s or "train" for s in given])
    parts = {s: [np.flatnonzero(given == s)] for s in SPLITS}
    missing = [s for s in ("val", "test") if len(parts[s][0]) == 0]
    if missing:
        train = parts["train"][0]
        parts["train"] = []
        fractions = {
            "val": val_fraction if "val" in missing else 0.0,
            "test": test_fraction if "test" in missing else 0.0,
        }
        for label in sorted(set(labels[train].tolist())):
            members = train[labels[train] == label]
            carved = _carve_missing(members, fractions, rng)
            for name, chosen in carved.items():
                parts[name].append(chosen)
        notes.append(
            f"the dataset has no {' or '.join(missing)} split: carved from its train images per class with seed"
        )
    return Split(*(np.sort(np.concatenate(parts[s])).astype(np.int64) for s in SPLITS), "dataset", notes)


def _carve_missing(members: np.ndarray, fractions: dict[str, float], rng) -> dict[str, np.ndarray]:
    members = rng.permutation(members)
    n = len(members)
    out = {"train": members, "val": members[:0], "test": members[:0]}
    start = 0
    for name in ("test", "val"):
        if fractions[name] > 0 and n - start >= 2:
            take = max(1, round(n * fractions[name]))
            take = min(take, n - start - 1)  # keep at least one for training
            out[name] = members[start : start + take]
            start += take
    out["train"] = members[start:]
    return out


def list_datasets(data_root: str | os.PathLike, keep: Callable[[Path], bool] | None = None) -> list[DatasetIndex]:
    """Datasets directly under `data_root` (each a folder a scan accepts), by name; `keep`: the folders to scan."""
    root, found = Path(data_root), []
    if not root.is_dir():
        return found
    for child in sorted(root.iterdir()):
        if child.is_dir() and _visible(child) and (keep is None or keep(child)):
            try:
                found.append(scan_dataset(child))
            except DatasetError:
                continue
    return found


def resolve_dataset_path(name_or_path: str | os.PathLike, data_root: str | os.PathLike) -> Path:
    """A path as given when it exists, else the folder of that name under `data_root`."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    candidate = Path(data_root) / str(name_or_path)
    if candidate.is_dir():
        return candidate.resolve()
    raise DatasetError(f"dataset not found: {name_or_path} (not a folder, nor a dataset under {data_root})")
