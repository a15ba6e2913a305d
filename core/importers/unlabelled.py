"""Adding photos without a label to a dataset: uploaded files or a zip, into its unlabelled/ folder.

The same checks as a dataset's zip (core.importers.archives): member names that could escape are refused, caps
on files and bytes, and each file is checked to be an image; a file that is not one is left out and named, the
rest are kept. Names are kept (flattened to one level for a zip's sub-folders) and never overwrite a photo already
there: a clash gets a numbered name.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from core.data.imaging import is_image_name
from core.data.unlabelled import UNLABELLED_DIR, unlabelled_folders
from core.importers.archives import Budget, copy_limited, image_problem, is_junk, member_parts
from core.importers.common import ImportRejected


@dataclass
class Added:
    """What an upload added to the unlabelled folder, and what it left out (with the reason)."""

    added: list[str] = field(default_factory=list)  # relative to the dataset root
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}


def unlabelled_target(dataset_root: str | os.PathLike) -> Path:
    """The dataset's unlabelled folder (the existing one, whatever its spelling; else unlabelled/, made)."""
    existing = unlabelled_folders(dataset_root)
    folder = existing[0] if existing else Path(dataset_root) / UNLABELLED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def add_files(
    dataset_root: str | os.PathLike, files: list[tuple[str, BinaryIO]], budget: Budget | None = None
) -> Added:
    """Copy (name, stream) pairs into the unlabelled folder; what is not an image is left out and named."""
    root = Path(dataset_root).resolve()
    folder = unlabelled_target(root)
    budget = budget or Budget()
    result = Added()
    for name, stream in files:
        parts = member_parts(name)
        if not parts or is_junk(parts):
            continue
        flat = "-".join(parts)
        if not is_image_name(flat):
            result.skipped.append({"path": name, "reason": "not an image file name (.jpg, .png, ...)"})
            continue
        budget.add_file()
        target = _free_name(folder, flat)
        copy_limited(stream, target, budget)
        problem = image_problem(target)
        if problem:
            target.unlink(missing_ok=True)
            result.skipped.append({"path": name, "reason": problem})
            continue
        result.added.append(str(target.relative_to(root)).replace(os.sep, "/"))
    return result


def add_zip(dataset_root: str | os.PathLike, source: str | os.PathLike | BinaryIO) -> Added:
    """Every image of a zip into the unlabelled folder (sub-folders flattened into the names).

    Raises:
        ImportRejected: the file is not a zip, or a member's name could escape, or it is over the caps.
    """
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as e:
        raise ImportRejected(f"not a zip file ({e})") from None
    budget = Budget()
    result = Added()
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        for info in members:
            parts = member_parts(info.filename)  # refuses names that escape, before anything is written
            if not parts or is_junk(parts):
                continue
            if not is_image_name(parts[-1]):
                result.skipped.append({"path": info.filename, "reason": "not an image file name"})
                continue
            with archive.open(info) as stream:
                added = add_files(dataset_root, [("/".join(parts), stream)], budget)
            result.added += added.added
            result.skipped += added.skipped
    return result


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, suffix, n = target.stem, target.suffix, 1
    while target.exists():
        n += 1
        target = folder / f"{stem}-{n}{suffix}"
    return target
