"""Unlabelled photos of a dataset: a folder of them beside the class folders, scanned apart, never trained on,
and labelled one by one (label-next).

  DATA/unlabelled/<any sub-folders>/<image>        (also "unlabeled"; any case) the photos waiting for a label
  <data>/.flora/shared.sqlite, table labelled: one row per photo labelled or set aside
      ("/abs/path", "unlabelled/a.jpg", "rose", "rose/a.jpg", at, by)      ("..b.jpg", None, None, ..: none of these)

Labelling copies the photo into its class folder (`DATA/<class>/` or, for a dataset with its own split,
`DATA/train/<class>/`): the next run trains on it like any other photo of the class, and the original stays in
unlabelled/ where its owner put it, never moved or deleted. The record says which ones were labelled (and where the
copy went) or set aside as "none of these", so they are not offered again. The unlabelled folder is not part of the
dataset's fingerprint: adding photos there does not change which run a training request finds.

The record is the data folder's shared store (`core.shared_store`: a row per photo, written in a transaction, so a
class labelling at once keeps every label, and a photo two people label at once is labelled once); records kept
before it, `<data>/.flora/labelled/<dataset name>-<hash>.json`, are imported the first time it is opened. The
dataset's own flora.json lists the copies for the split, with when each was labelled (a run made before finds its own
photos again without them: `before_labelling`). It stays a file in the dataset folder (it travels with the
folder, and the split of any Flora that opens it reads it), changed under the folder's lock (`core.fileio.update_json`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.data.datasets import (
    LABELLED_IN_FLORA,
    META_FILE,
    UNLABELLED_NAMES,
    DatasetError,
    DatasetIndex,
    ImageEntry,
    _fingerprint,
    _split_dirs,
    _visible_name,
)
from core.data.imaging import is_image_name
from core.fileio import read_json, update_json
from core.paths import flora_dir
from core.shared_store import SharedStore, Table

UNLABELLED_DIR = "unlabelled"  # the folder's name Flora makes; "unlabeled" is read too
LABELLED_DIR = "labelled"  # in <data>/.flora/: what was labelled, before the shared store
LABELLED_IN_FLORA_AT = "labelled_in_flora_at"  # flora.json: when each photo listed there was labelled, {path: time}
UNLABELLED_CLASS = "(unlabelled)"  # the single "class" of an unlabelled photos' index (never a real class)


def is_unlabelled_folder(name: str) -> bool:
    """True for a dataset's top-level folder of photos without a label (never a class)."""
    return name.lower() in UNLABELLED_NAMES


def unlabelled_folders(dataset_root: str | os.PathLike) -> list[Path]:
    """The dataset's unlabelled folders at its top level (usually none or one)."""
    root = Path(dataset_root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and is_unlabelled_folder(p.name))


def scan_unlabelled(dataset_root: str | os.PathLike) -> list[tuple[str, int, int]]:
    """Every image file under the unlabelled folders as (path relative to the dataset root, bytes, mtime ns)."""
    root = Path(dataset_root).resolve()
    prefix = len(str(root)) + 1
    found = []
    for folder in unlabelled_folders(root):
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if _visible_name(d))
            for name in sorted(filenames):
                if not (_visible_name(name) and is_image_name(name)):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    stat = os.stat(full)
                except OSError:
                    continue
                found.append((full[prefix:].replace(os.sep, "/"), stat.st_size, stat.st_mtime_ns))
    return found


def labelled_file(data_root: str | os.PathLike, dataset_root: str | os.PathLike) -> Path:
    """Where the record of a dataset's labelled photos was kept before the shared store (imported once)."""
    resolved = Path(dataset_root).expanduser().resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    return flora_dir(data_root) / LABELLED_DIR / f"{resolved.name}-{key}.json"


def _import_files(db: sqlite3.Connection, data_root: Path) -> None:
    for path in sorted((flora_dir(data_root) / LABELLED_DIR).glob("*.json")):
        data = read_json(path, default={}) or {}
        photos = data.get("photos") if isinstance(data, dict) else None
        if not data.get("dataset") or not isinstance(photos, dict):
            continue
        dataset = str(Path(str(data["dataset"])).expanduser().resolve())
        db.executemany(
            "INSERT OR IGNORE INTO labelled (dataset, path, label, copy, at, by) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (dataset, photo, entry.get("label"), entry.get("to"), float(entry.get("at", 0)), entry.get("by"))
                for photo, entry in photos.items()
                if isinstance(entry, dict)
            ],
        )


LABELLED = Table(
    "labelled",
    (
        "CREATE TABLE labelled (dataset TEXT NOT NULL, path TEXT NOT NULL, label TEXT, copy TEXT, at REAL NOT NULL, "
        "by TEXT, PRIMARY KEY (dataset, path))",
    ),
    _import_files,
)


@dataclass
class Unlabelled:
    """A dataset's unlabelled photos and what has been done with them."""

    dataset_root: Path
    photos: list[str]  # every unlabelled photo found (relative to the dataset root)
    record: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> {"label", "to", "at", "by"}
    data_root: Path | None = None  # the data folder whose shared store keeps the record (None: not kept)
    _sizes: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, data_root: str | os.PathLike, dataset_root: str | os.PathLike) -> Unlabelled:
        root = Path(dataset_root).expanduser().resolve()
        found = scan_unlabelled(root)
        with SharedStore.of_data(data_root).read(LABELLED) as db:
            rows = db.execute("SELECT path, label, copy, at, by FROM labelled WHERE dataset = ?", (str(root),))
            record = {path: _entry(label, copy, at, by) for path, label, copy, at, by in rows}
        return cls(
            root,
            [rel for rel, _, _ in found],
            record,
            Path(data_root),
            {rel: (size, mtime) for rel, size, mtime in found},
        )

    @property
    def pending(self) -> list[str]:
        """Photos still waiting for a label (neither labelled nor set aside)."""
        return [p for p in self.photos if p not in self.record]

    @property
    def labelled(self) -> dict[str, str]:
        """path -> the class it was given (photos set aside as "none of these" are not in it)."""
        return {p: r["label"] for p, r in self.record.items() if r.get("label")}

    @property
    def set_aside(self) -> list[str]:
        return [p for p, r in self.record.items() if not r.get("label")]

    def index(self, pending_only: bool = False) -> DatasetIndex:
        """The unlabelled photos (every one, or only the pending) as an index of one pseudo-class, for decoding into
        the cache (core.data.ingest) and the feature cache; its fingerprint names exactly these files, so labelling
        some of them does not make the features computed for all of them stale."""
        paths = self.pending if pending_only else self.photos
        entries = [ImageEntry(p, 0, None, self._sizes.get(p, (0, 0))[0]) for p in paths]
        mtimes = {p: self._sizes.get(p, (0, 0))[1] for p in paths}
        fingerprint = _fingerprint(self.dataset_root, entries, "unlabelled", mtimes)
        return DatasetIndex(self.dataset_root, [UNLABELLED_CLASS], entries, fingerprint, "unlabelled")

    def label(self, path: str, label: str | None, classes: list[str], by: str = "local") -> str | None:
        """Give `path` the class `label` (copying it into the class's folder; returns the copy's relative path), or set
        it aside as none of the classes (`label` None). The original stays where it is. Labelling a photo again with
        the same class (or setting it aside again) changes nothing and returns the copy made the first time.

        Raises:
            DatasetError: the photo is not one of the unlabelled ones, it already has another answer (undo it first),
                the class is unknown, or the copy cannot be made.
        """
        if path not in self.photos:
            raise DatasetError(f"{path} is not one of this dataset's unlabelled photos")
        done = self.record.get(path)
        if done is not None:  # labelling is idempotent: a second click makes no second copy
            if done.get("label") == label:
                return done.get("to")
            said = f"labelled {done['label']!r}" if done.get("label") else "set aside as none of the classes"
            raise DatasetError(f"{path} is already {said}: undo that first to give it another class")
        copied = None
        if label is not None:
            if label not in classes:
                raise DatasetError(f"{label!r} is not a class of this dataset (its classes: {', '.join(classes)})")
            presplit = _split_dirs(self.dataset_root)  # a dataset with its own split: the photo joins training
            folder = (presplit["train"] if presplit else self.dataset_root) / label
            copied = self._copy(self.dataset_root / path, folder)
        entry = {"label": label, "to": copied, "at": time.time(), "by": by}
        if self.data_root is not None:
            with SharedStore.of_data(self.data_root).write(LABELLED) as db:
                key = (str(self.dataset_root), path)
                earlier = db.execute(
                    "SELECT label, copy, at, by FROM labelled WHERE dataset = ? AND path = ?", key
                ).fetchone()
                if earlier is None:
                    db.execute(
                        "INSERT INTO labelled (dataset, path, label, copy, at, by) VALUES (?, ?, ?, ?, ?, ?)",
                        (*key, label, copied, entry["at"], by),
                    )
            if earlier is not None:  # someone labelled it since this list was read: theirs stands
                if copied:
                    (self.dataset_root / copied).unlink(missing_ok=True)
                self.record[path] = _entry(*earlier)
                if earlier[0] == label:  # the same answer from another click or person: one copy, theirs
                    return earlier[1]
                given = f"as {earlier[0]}" if earlier[0] else "as none of these"
                raise DatasetError(f"{path} was labelled {given} by {earlier[3] or 'someone'} meanwhile")
        self.record[path] = entry
        if copied:
            self._note_in_dataset(copied, add=True, at=entry["at"])
        return copied

    def undo(self, path: str) -> None:
        """Take back a label: the copy made in the class folder is removed, the photo waits again."""
        entry = self.record.pop(path, None)
        if self.data_root is not None:
            with SharedStore.of_data(self.data_root).write(LABELLED) as db:
                key = (str(self.dataset_root), path)
                row = db.execute("SELECT label, copy, at, by FROM labelled WHERE dataset = ? AND path = ?", key)
                stored = row.fetchone()
                db.execute("DELETE FROM labelled WHERE dataset = ? AND path = ?", key)
            entry = _entry(*stored) if stored else None  # the record as it stands, whoever wrote it
        if entry and entry.get("to"):
            copy = self.dataset_root / entry["to"]
            if copy.is_file() and self.dataset_root in copy.resolve().parents:
                copy.unlink()
            self._note_in_dataset(entry["to"], add=False)

    def _note_in_dataset(self, copied: str, add: bool, at: float | None = None) -> None:
        """Keep the dataset's own list (flora.json) of the photos labelled in Flora, and when each was (`at`): a run's
        split puts them in training and splits the other photos as before they came, and a run made before one was
        labelled leaves it out to find its own photos again (core.runs.split)."""

        def change(meta):
            if not isinstance(meta, dict):
                return None  # not Flora's own format: left alone
            listed = [p for p in meta.get(LABELLED_IN_FLORA) or [] if p != copied]
            dated = meta.get(LABELLED_IN_FLORA_AT)
            dated = {p: t for p, t in dated.items() if p != copied} if isinstance(dated, dict) else {}
            if add:
                listed.append(copied)
                dated[copied] = at if at is not None else time.time()
            meta[LABELLED_IN_FLORA], meta[LABELLED_IN_FLORA_AT] = sorted(listed), dict(sorted(dated.items()))
            for key in (LABELLED_IN_FLORA, LABELLED_IN_FLORA_AT):
                if not meta[key]:
                    meta.pop(key)
            return meta

        path = self.dataset_root / META_FILE
        try:
            update_json(path, change)  # under the dataset folder's lock: two people labelling at once both stay listed
        except OSError as e:
            raise DatasetError(f"could not note the labelled photo in {path} ({e.strerror or e})") from None

    def _copy(self, source: Path, folder: Path) -> str:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stem, suffix, n = source.stem, source.suffix, 1
            while True:  # the name is taken atomically: two photos of one name copied at once both stay
                target = folder / (source.name if n == 1 else f"{stem}-{n}{suffix}")
                try:
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                    break
                except FileExistsError:
                    n += 1
            try:
                shutil.copy2(source, target)
            except OSError:
                target.unlink(missing_ok=True)
                raise
        except OSError as e:
            raise DatasetError(
                f"could not copy {source.name} into {folder} ({e.strerror or e}): is the dataset's folder writable?"
            ) from None
        return str(target.relative_to(self.dataset_root)).replace(os.sep, "/")


def labelled_after(index: DatasetIndex, when: float) -> set[str]:
    """The photos of `index` labelled in Flora after `when` (epoch seconds): listed in its flora.json, dated there,
    or, labelled before the date was kept, by their copy's status change time (when the copy was made)."""
    listed = index.meta.get(LABELLED_IN_FLORA) or []
    dated = index.meta.get(LABELLED_IN_FLORA_AT)
    dated = dated if isinstance(dated, dict) else {}
    after = set()
    for path in listed:
        at = dated.get(path)
        if not isinstance(at, int | float):
            try:
                at = os.stat(index.root / path).st_ctime
            except OSError:
                continue  # the copy is gone: not in the index either
        if at > when:
            after.add(path)
    return after


def before_labelling(index: DatasetIndex, when: float) -> DatasetIndex | None:
    """`index` as it was at `when` if only labelling in Flora changed it since: without the photos labelled after
    `when`, fingerprinted again (None: none was, or a multi-label dataset, whose photos Flora does not label). Its
    fingerprint equals the one taken at `when` exactly when nothing else changed, which the caller checks."""
    if index.multilabel:
        return None
    later = labelled_after(index, when)
    if not later:
        return None
    entries = [entry for entry in index.entries if entry.path not in later]
    return replace(index, entries=entries, fingerprint=_fingerprint(index.root, entries, index.layout))


def _entry(label: str | None, copy: str | None, at: float, by: str | None) -> dict[str, Any]:
    return {"label": label, "to": copy, "at": at, "by": by}
