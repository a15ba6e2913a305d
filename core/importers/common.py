"""What every importer shares: errors, the result, dataset names, and the stage-then-rename rule.

An import writes into a hidden staging folder beside its target (`data/.<name>.<pid>@<host>.<random>.importing`)
and renames it into place only once everything is written and checked, so a failed or interrupted
import leaves no half-written dataset behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data import roots as data_roots
from core.data.datasets import META_FILE, DatasetError, scan_dataset, split_indices
from core.data.imaging import IMAGE_EXTENSIONS
from core.data.multilabel_split import split_multilabel
from core.errors import Cancelled, InvalidInput, Unavailable
from core.fileio import umask, write_json_atomic
from core.processes import host_tag, process_alive
from core.progress import StageCallback

BYTE_STAGES = frozenset({"downloading", "verifying", "unpacking"})  # their done/total count bytes, others files
STAGING_SUFFIX = ".importing"
MAX_NAME_LENGTH = 100
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
_FORBIDDEN_CHARS = set('<>:"|?*')
SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SHOWN = 10  # rows named in a message before "... and N more"


class ImportRejected(InvalidInput):
    """The input cannot be imported as it is (hostile, malformed, or clashing); the message names the problem."""


class DownloadError(Unavailable, ValueError):
    """A download failed or did not verify; the message says which, and what was kept for a retry."""


class ImportCancelled(Cancelled):
    """The import was stopped on request; a partial download is kept so the next attempt resumes it."""


@dataclass
class ImportResult:
    """What an import produced."""

    name: str
    path: Path
    source: str  # "tf_flowers" | "oxford102" | "demo" | "zip"
    classes: int
    images: int
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}: entries not imported
    notes: list[str] = field(default_factory=list)
    split: dict[str, int] | None = None  # {"train", "val", "test"} when the dataset brings its own split
    already_present: bool = False  # True when get_dataset found the dataset in place and did nothing
    task: str = "single"  # or "multilabel" (core.data.multilabel): `classes` then counts its labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "classes": self.classes,
            "images": self.images,
            "skipped": list(self.skipped),
            "notes": list(self.notes),
            "split": dict(self.split) if self.split else None,
            "already_present": self.already_present,
            "task": self.task,
        }


def report(progress: StageCallback | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def validate_dataset_name(name: str, data_root: str | os.PathLike | None = None, overwrite: bool = False) -> str:
    """Check a dataset name a user typed; return it cleaned (stripped, NFC).

    A name becomes a folder under `data/`, so it must be one plain, visible folder name that
    every common filesystem accepts.

    Args:
        name: the name to check.
        data_root: when given, a dataset of that name must not exist there yet (unless `overwrite`).
        overwrite: allow an existing dataset of that name (it will be replaced).

    Raises:
        ImportRejected: the name is empty, hidden, has slashes or forbidden characters, is too
            long, is reserved, or is taken.
    """
    if not isinstance(name, str):
        raise ImportRejected(f"dataset name must be text. Received: {name!r}")
    clean = unicodedata.normalize("NFC", name.strip())
    if not clean:
        raise ImportRejected("dataset name is empty")
    if clean in (".", ".."):
        raise ImportRejected(f"dataset name {clean!r} is not allowed")
    if "/" in clean or "\\" in clean:
        raise ImportRejected(f"dataset name must not contain slashes. Received: {clean!r}")
    if clean.startswith("."):
        raise ImportRejected(
            f"dataset name must not start with a dot (hidden folders are not listed). Received: {clean!r}"
        )
    bad = sorted({c for c in clean if c in _FORBIDDEN_CHARS or unicodedata.category(c).startswith("C")})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ImportRejected(f"dataset name has characters folders cannot have ({shown}). Received: {clean!r}")
    if len(clean) > MAX_NAME_LENGTH:
        raise ImportRejected(f"dataset name is longer than {MAX_NAME_LENGTH} characters ({len(clean)})")
    if clean.endswith("."):
        raise ImportRejected(f"dataset name must not end with a dot. Received: {clean!r}")
    if clean.split(".")[0].lower() in _WINDOWS_RESERVED:
        raise ImportRejected(f"dataset name {clean!r} is reserved on Windows; choose another")
    if data_root is not None and not overwrite and (Path(data_root) / clean).exists():
        raise ImportRejected(
            f"a dataset named {clean!r} already exists in the data folder: choose another name{_REPLACE}"
        )
    return clean


# the message's word on replacing: only the command line replaces a dataset (the app never does, a class shares them)
_REPLACE = " (the command line's --force replaces it)"


@contextlib.contextmanager
def staging_folder(data_root: str | os.PathLike, name: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty hidden folder in `data_root`; on success it becomes `data_root/name`.

    On any exception the staging folder is deleted and nothing else changes. With `overwrite`
    an existing dataset is swapped out only after the new one is complete.
    """
    data_root = Path(data_root)
    data_root.mkdir(parents=True, exist_ok=True)
    _remove_orphans(data_root, name)
    prefix = f".{name}.{os.getpid()}@{host_tag()}."
    staging = Path(tempfile.mkdtemp(prefix=prefix, suffix=STAGING_SUFFIX, dir=data_root))
    os.chmod(staging, 0o777 & ~umask())  # mkdtemp makes 0700; the dataset gets the usual folder mode
    try:
        yield staging
        publish(staging, data_root / name, overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Rename a finished staging folder to `target`, replacing an existing one only if `overwrite`."""
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise ImportRejected(f"a dataset named {target.name!r} already exists in the data folder{_REPLACE}")
        old = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.replaced")
        os.rename(target, old)
        try:
            os.rename(staging, target)
        except OSError:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(staging, target)
    except OSError as e:
        if target.exists():  # another import of the same name finished first
            raise ImportRejected(
                f"a dataset named {target.name!r} was just added to the data folder by another import: choose "
                "another name"
            ) from None
        raise OSError(f"could not move the imported dataset into place at {target}: {e}") from e


def _remove_orphans(data_root: Path, name: str) -> None:
    """Delete staging folders of this name left by import processes of this machine that no longer run (another
    machine's, on a data folder both mount, are its own to judge)."""
    for leftover in data_root.glob(f".{glob_escape(name)}.*{STAGING_SUFFIX}"):
        pattern = rf"\.{re.escape(name)}\.(\d+)(?:@([^.]+))?\..*{re.escape(STAGING_SUFFIX)}"
        match = re.fullmatch(pattern, leftover.name)
        if not match or (match.group(2) and match.group(2) != host_tag()):
            continue
        if int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            shutil.rmtree(leftover, ignore_errors=True)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    write_json_atomic(folder / META_FILE, meta)


def finish(staging: Path, name: str, data_root: str | os.PathLike, source: str, skipped, notes) -> ImportResult:
    """Scan the staged dataset (it must be one `scan_dataset` accepts) and describe it.

    The path in the result is where the dataset will be once the staging folder is published.
    """
    try:
        index = scan_dataset(staging)
    except DatasetError as e:
        raise ImportRejected(str(e).replace(str(staging.resolve()), "the import")) from None
    return describe(index, Path(data_root) / name, name, source, skipped, notes)


def describe(index, path: Path, name: str, source: str, skipped=(), notes=()) -> ImportResult:
    notes = list(notes)
    split = None
    if index.has_split:
        given = [e.split for e in index.entries]
        split = {s: sum(1 for g in given if (g or "train") == s) for s in ("train", "val", "test")}
    if index.multilabel:
        try:  # the labels too rare to be in every split, named now
            notes += split_multilabel(index.targets, index.classes, [e.split for e in index.entries]).notes
        except DatasetError as e:
            notes.append(f"training will fail as it is: {e}")
    elif len(index.classes) < 2:
        notes.append(f"only one class ({index.classes[0]!r}): training needs at least 2 classes")
    elif not index.has_split:
        try:
            split_indices(index.labels, index.classes)
        except DatasetError as e:
            notes.append(f"training will fail as it is: {e}")
    return ImportResult(
        name=name,
        path=Path(path),
        source=source,
        classes=len(index.classes),
        images=len(index.entries),
        skipped=list(skipped),
        notes=notes,
        split=split,
        task=index.task,
    )


def find_image(images: Path, value: str) -> Path | None:
    """The image a row names: the path as given (in sub-folders too), or an id with one of the image extensions."""
    if not value or value.startswith(("/", "\\")) or ".." in Path(value).parts:
        return None  # only files under the images folder
    candidate = images / value
    if candidate.is_file():
        return candidate
    if not Path(value).suffix:
        for extension in sorted(IMAGE_EXTENSIONS):
            for spelled in (extension, extension.upper()):
                if (images / f"{value}{spelled}").is_file():
                    return images / f"{value}{spelled}"
    return None


def some(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" ... and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


@dataclass
class TableRows:
    """The rows of a label table matched to the images they name: what both table importers check the same way.

    `place` returns a row's image, or None where the row names no image there or repeats one (a repeat with the same
    label is counted, one with another label is a conflict); `problems` says what stops the import.
    """

    images: Path
    seen: dict[Path, tuple[int, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    repeats: int = 0

    def place(self, number: int, value: str, label: Any) -> Path | None:
        target = find_image(self.images, value)
        if target is None:
            self.missing.append(value or f"line {number}")
            return None
        if target in self.seen:
            first, earlier = self.seen[target]
            if earlier != label:
                self.conflicts.append(f"{value}: {earlier!r} (line {first}) and {label!r} (line {number})")
            else:
                self.repeats += 1
            return None
        self.seen[target] = (number, label)
        return target

    def problems(self, skip_missing: bool) -> list[str]:
        found = []
        if self.conflicts:
            found.append(f"{len(self.conflicts)} image(s) listed twice with different labels: {some(self.conflicts)}")
        if self.missing and not skip_missing:
            found.append(
                f"{len(self.missing)} row(s) name images that are not in {self.images}: {some(self.missing)} "
                "(--skip-missing imports the rest and lists these)"
            )
        return found

    def skipped(self) -> list[dict[str, str]]:
        return [{"path": value, "reason": "no such image in the folder"} for value in self.missing]


def linked_notes(count: int, images: Path, data_root: str | os.PathLike) -> list[str]:
    """What an import that links its photos says of them: keep them where they are, and, when they lie outside the
    folders a one-person app opens datasets from (core.data.roots: FLORA_DATA_ROOTS, else the data folder, the home
    folder and the folder Flora sits in), that the app will not open this dataset until that folder is one of them
    (a newcomer's walk: imported from the command line, then refused at the Train page's launch)."""
    notes = [
        f"{count} images linked, not copied, from {images}: keep them there (the dataset reads them through the links)"
    ]
    roots = data_roots.data_roots(data_root, shared=False)
    if not data_roots.inside(images, roots):
        notes.append(
            f"the app opens a dataset only when its photos lie inside its data roots ({', '.join(map(str, roots))}) "
            f"and {images} is not among them: the command line trains this dataset, but the app will not list or "
            f"train it until {data_roots.ROOTS_ENV} names that folder (set before the app starts) or the photos are "
            "moved under one of them"
        )
    return notes
