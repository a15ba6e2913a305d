"""Feedback: photos a person says the model got wrong, with the right label, kept for retraining.

  <data>/.flora/feedback/<dataset>-<hash>/<split>/<class>/<sha256[:16]><ext>

Feedback is kept beside the data folder, not inside the dataset (which may be read-only, and
whose fingerprint would change), one folder per dataset. Each photo goes to the training or the
validation split (chosen from its hash, about the run's validation share to val); never to the test
split, so a retrained model is compared with the old one on the very same test photos. The label is
also stored on the photo's rows in the prediction log. Who gave each photo is a row in the data folder's shared
store (`core.shared_store`), so feedback given at once by many keeps every giver; the `feedback.json` of each
folder, where it was kept before, is imported the first time the store is opened.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from core.data.datasets import META_FILE
from core.data.imaging import ImageError, is_image_name, load_square
from core.errors import InvalidInput, NotAllowed
from core.fileio import read_json, write_bytes_atomic
from core.paths import flora_dir
from core.shared_store import SharedStore, Table
from core.sharing.people import LOCAL_USER, same_person

FEEDBACK_DIRNAME = "feedback"  # in <data>/.flora/
FEEDBACK_SPLITS = ("train", "val")
GIVERS_FILE = "feedback.json"  # in each feedback folder: who gave each photo, before the shared store
BASE_KEY = "feedback_base"  # in a derived dataset's flora.json: the dataset it extends
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


SERVER_CLIENT = "the model server"  # who gave feedback through the server's API (its clients are keys, not people)


class NotYourFeedback(NotAllowed, ValueError):
    """A photo someone else labelled: only they (or an admin) may change its label."""


@dataclass(frozen=True)
class FeedbackPhoto:
    path: Path
    label: str
    split: str
    sha256: str
    by: str = LOCAL_USER  # who gave it (a signed-in person, "local", or the model server's clients)


def base_dataset(dataset_path: str | os.PathLike) -> Path:
    """The dataset a feedback-derived dataset extends, or the dataset itself."""
    path = Path(dataset_path)
    meta = read_json(path / META_FILE, default={}) or {}
    base = meta.get(BASE_KEY) if isinstance(meta, dict) else None
    return Path(base) if base else path


def feedback_dir(data_root: str | os.PathLike, dataset_path: str | os.PathLike) -> Path:
    """The feedback folder of a dataset (of its base, for a derived one)."""
    base = base_dataset(dataset_path).expanduser().resolve()
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:8]
    return flora_dir(data_root) / FEEDBACK_DIRNAME / f"{_SAFE.sub('_', base.name)}-{digest}"


def _import_files(db: sqlite3.Connection, data_root: Path) -> None:
    for path in sorted((flora_dir(data_root) / FEEDBACK_DIRNAME).glob(f"*/{GIVERS_FILE}")):
        record = read_json(path, default={}) or {}
        givers = record.get("by") if isinstance(record, dict) else None
        if isinstance(givers, dict):
            db.executemany(
                "INSERT OR IGNORE INTO feedback_givers (folder, photo, by) VALUES (?, ?, ?)",
                [(path.parent.name, str(photo), str(by)) for photo, by in givers.items()],
            )


GIVERS = Table(
    "feedback_givers",
    (
        "CREATE TABLE feedback_givers (folder TEXT NOT NULL, photo TEXT NOT NULL, by TEXT NOT NULL, "
        "PRIMARY KEY (folder, photo))",
    ),
    _import_files,
)


def split_for(sha256: str, val_fraction: float) -> str:
    """'val' for about `val_fraction` of photos (by their hash, so a photo always lands the same), else 'train'."""
    return "val" if int(sha256[:8], 16) % 1000 < round(val_fraction * 1000) else "train"


def add_feedback(
    data_root: str | os.PathLike,
    dataset_path: str | os.PathLike,
    classes: list[str],
    label: str,
    data: bytes,
    name: str | None = None,
    val_fraction: float = 0.15,
    by: str = LOCAL_USER,
    may_replace_any: bool = False,
) -> FeedbackPhoto:
    """Keep a corrected photo under its right label (replacing an earlier label for the same photo), as `by`'s.

    Raises:
        InvalidInput: a label the model does not know.
        NotYourFeedback: someone else labelled this photo (unless `may_replace_any`: an admin).
        ImageError: the data are not a readable image.
    """
    if label not in classes:
        raise InvalidInput(f"unknown class {label!r}; the model knows: {', '.join(classes)}")
    load_square(data, 32)  # refuse what training could not read
    sha = hashlib.sha256(data).hexdigest()
    folder = feedback_dir(data_root, dataset_path)
    suffix = Path(name or "").suffix.lower()
    suffix = suffix if is_image_name(f"x{suffix}") else ".jpg"
    split = split_for(sha, val_fraction)
    target = folder / split / label / f"{sha[:16]}{suffix}"
    # who may label it, the photo's file and its giver change together: one person's label of a photo at a time
    with SharedStore.of_data(data_root).write(GIVERS) as db:
        givers = dict(db.execute("SELECT photo, by FROM feedback_givers WHERE folder = ?", (folder.name,)))
        earlier = [old for old in _photos(folder, givers) if old.sha256.startswith(sha[:16])]
        for old in earlier:
            if not same_person(old.by, by) and not may_replace_any and old.label != label:
                raise NotYourFeedback(
                    f"{old.by} already said this photo is {old.label}: only they or an admin can change its label"
                )
        for old in earlier:
            old.path.unlink(missing_ok=True)
        write_bytes_atomic(target, data)
        db.execute(
            "INSERT INTO feedback_givers (folder, photo, by) VALUES (?, ?, ?) "
            "ON CONFLICT(folder, photo) DO UPDATE SET by = excluded.by",
            (folder.name, sha[:16], by),
        )
    return FeedbackPhoto(target, label, split, sha, by)


def list_feedback(data_root: str | os.PathLike, dataset_path: str | os.PathLike) -> list[FeedbackPhoto]:
    """Every feedback photo of a dataset, by split and class."""
    folder = feedback_dir(data_root, dataset_path)
    with SharedStore.of_data(data_root).read(GIVERS) as db:
        givers = dict(db.execute("SELECT photo, by FROM feedback_givers WHERE folder = ?", (folder.name,)))
    return _photos(folder, givers)


def _photos(folder: Path, givers: dict[str, str]) -> list[FeedbackPhoto]:
    photos = []
    for split in FEEDBACK_SPLITS:
        root = folder / split
        if not root.is_dir():
            continue
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for path in sorted(class_dir.iterdir()):
                if path.is_file() and is_image_name(path.name):
                    by = str(givers.get(path.stem[:16], LOCAL_USER))
                    photos.append(FeedbackPhoto(path, class_dir.name, split, path.stem, by))
    return photos


__all__ = [
    "FeedbackPhoto",
    "ImageError",
    "NotYourFeedback",
    "add_feedback",
    "base_dataset",
    "feedback_dir",
    "list_feedback",
]
