"""Unpacking archives we did not make: zip uploads, and the tar archives of the downloads.

Every member name is checked before anything is written: no absolute paths, drive letters or
`..`; no links or device files; no two names that would land on the same file (on any common
filesystem, so case and Unicode normalisation count); caps on the file count, the total size and
the compression ratio, and the bytes actually written are counted again while extracting.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from core.data.datasets import split_of_folder
from core.data.imaging import MAX_PIXELS, is_image_name
from core.importers.common import (
    ImportCancelled,
    ImportRejected,
    ImportResult,
    finish,
    report,
    staging_folder,
    validate_dataset_name,
    write_meta,
)
from core.progress import StageCallback

MAX_TOTAL_BYTES = 4 * 1024**3  # uncompressed; images barely compress, so a real upload is near its zip size
MAX_FILES = 100_000
MAX_RATIO = 100  # uncompressed / compressed, per member; JPEG and PNG are already compressed
_RATIO_MIN_BYTES = 1 << 20  # small members may compress well (a text file, a flat PNG); only large ones count
_CHUNK = 1 << 20
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx", ".spotlight-v100", ".trashes", ".fseventsd"}
_DRIVE = re.compile(r"^[A-Za-z]:")


def member_parts(name: str) -> tuple[str, ...]:
    """The path components of an archive member, or ImportRejected when the name could escape.

    Backslashes count as separators (archives made on Windows use them); empty and "." parts
    are dropped.
    """
    raw = name.replace("\\", "/")
    if "\x00" in raw:
        raise ImportRejected(f"archive entry {name!r} has a NUL character in its name")
    if raw.startswith("/") or _DRIVE.match(raw):
        raise ImportRejected(f"archive entry {name!r} has an absolute path; entries must stay inside the archive")
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ImportRejected(f"archive entry {name!r} climbs out of the archive with '..'")
    return parts


def tar_files(
    archive: Path, should_stop: Callable[[], bool] | None, stopped: str
) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, tuple[str, ...], int]]:
    """Stream a tar archive's regular files as (tar, member, name parts, bytes of the archive read so far).

    Member names are checked as `member_parts` does; a link is refused (ImportRejected); directories
    and other entries are passed over; `should_stop` is polled before each member (ImportCancelled
    with the message `stopped`). Errors reading the archive itself reach the caller.
    """
    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        for member in tar:
            if should_stop and should_stop():
                raise ImportCancelled(stopped)
            parts = member_parts(member.name)
            if member.issym() or member.islnk():
                raise ImportRejected(f"{archive.name}: entry {member.name!r} is a link; links are not allowed")
            if member.isfile() and parts:
                yield tar, member, parts, raw.tell()


def clash_key(parts: Iterable[str]) -> str:
    """Names that one filesystem or another would treat as the same file share this key."""
    return "/".join(unicodedata.normalize("NFC", p).casefold() for p in parts)


def is_junk(parts: tuple[str, ...]) -> bool:
    """macOS and Windows metadata: __MACOSX/, .DS_Store, AppleDouble ._files, Thumbs.db."""
    return any(p.lower() in _JUNK_NAMES for p in parts) or parts[-1].startswith("._")


@dataclass
class Budget:
    """Counts files and bytes written against the caps, and raises as soon as one is passed."""

    max_total_bytes: int = MAX_TOTAL_BYTES
    max_files: int = MAX_FILES
    written: int = 0
    files: int = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise ImportRejected(f"archive has more than {self.max_files:,} files, over the limit")

    def add_bytes(self, count: int) -> None:
        self.written += count
        if self.written > self.max_total_bytes:
            raise ImportRejected(
                f"archive unpacks to more than {_size(self.max_total_bytes)}, over the limit "
                "(a zip bomb, or a dataset too large to upload: copy the folder instead)"
            )


def copy_limited(source: BinaryIO, dest: Path, budget: Budget, limit: int | None = None) -> int:
    """Copy a member's stream to a new file, counting real bytes against the budget (and `limit`)."""
    written = 0
    with open(dest, "xb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if limit is not None and written > limit:
                raise ImportRejected(f"archive entry {dest.name!r} holds more data than its header says")
            budget.add_bytes(len(chunk))
            out.write(chunk)
    return written


def image_problem(path: Path) -> str | None:
    """Why a file named like an image is not one (header check only), or None when it looks fine."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        return "image too large to decode safely (decompression-bomb guard)"
    except Exception:
        size = path.stat().st_size if path.exists() else 0
        return "not an image (empty file)" if size == 0 else "not an image (the contents are not an image format)"
    if width * height > MAX_PIXELS:
        return f"image too large: {width}x{height}, over the {MAX_PIXELS / 1e6:.0f} MP decompression-bomb limit"
    return None


def safe_target(root: Path, parts: tuple[str, ...]) -> Path:
    """`root/parts`, checked to stay inside `root` after resolving."""
    target = root.joinpath(*parts)
    resolved_root = root.resolve()
    if resolved_root not in target.resolve().parents:
        raise ImportRejected(f"archive entry {'/'.join(parts)!r} would be written outside the dataset")
    return target


def place_images(members: list, strip_top: bool = True) -> tuple[list, list[dict[str, str]], list[str]]:
    """Map image members (objects with `.parts`) to dataset-relative parts.

    Accepts CLASS/IMAGE, TOP/CLASS/IMAGE, and the same under train/val/test folders. Returns
    (placed [(member, parts)], skipped, notes).
    """
    notes: list[str] = []
    skipped: list[dict[str, str]] = []
    if not members:
        return [], skipped, notes
    tops = {m.parts[0] for m in members}
    # One folder around everything, with class folders inside it: unwrap it (stray images next to the
    # class folders then count as "not inside a class folder").
    if strip_top and len(tops) == 1 and any(len(m.parts) >= 3 for m in members):
        top = next(iter(tops))
        if split_of_folder(top) is None:
            notes.append(f"unwrapped the top folder {top + '/'!r}")
            members = [_Moved(m, m.parts[1:]) for m in members]
    firsts = {m.parts[0].lower() for m in members if len(m.parts) >= 2}
    presplit = any(split_of_folder(f) == "train" for f in firsts)
    placed = []
    for member in members:
        parts = member.parts
        if presplit:
            if split_of_folder(parts[0]) is None:
                skipped.append({"path": member.name, "reason": "outside the train/val/test folders"})
                continue
            if len(parts) < 3:
                skipped.append({"path": member.name, "reason": f"not inside a class folder of {parts[0]}/"})
                continue
        elif len(parts) < 2:
            skipped.append({"path": member.name, "reason": "not inside a class folder"})
            continue
        placed.append((getattr(member, "member", member), parts))
    if presplit:
        notes.append("already split into train/val/test folders: training will use that split")
    return placed, skipped, notes


@dataclass
class _Moved:
    member: object
    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.member.name


# ----------------------------------------------------------------------------- zip


@dataclass
class _ZipMember:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.info.filename


@dataclass
class _ZipPlan:
    images: list[_ZipMember] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    junk: int = 0


def import_zip(
    archive: str | os.PathLike | BinaryIO,
    name: str,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_files: int = MAX_FILES,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> ImportResult:
    """Import a zip of class folders (with or without one top folder, split or not) as `data_root/name`.

    The whole archive is checked before anything is written; files that are not images are
    skipped and listed, macOS/Windows metadata is ignored. Nothing is left behind on failure.

    Args:
        archive: a path, or a seekable binary file object (e.g. a Streamlit UploadedFile).
        name: the new dataset's folder name (see `validate_dataset_name`).
        data_root: the datasets folder, usually `data/`.
        progress: called as progress("unpacking", files_done, files_total).
        max_total_bytes: cap on the uncompressed size.
        max_files: cap on the number of entries.
        overwrite: replace an existing dataset of that name.
        should_stop: polled between files; True stops the import (ImportCancelled).

    Raises:
        ImportRejected: a hostile or malformed archive, one without class folders of images, or
            a name that is invalid or taken. The message names the problem.
    """
    name = validate_dataset_name(name, data_root, overwrite)
    label = archive if isinstance(archive, str | os.PathLike) else getattr(archive, "name", None) or "upload"
    if isinstance(archive, str | os.PathLike) and not Path(archive).is_file():
        raise ImportRejected(f"zip file not found: {archive}")
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise ImportRejected(f"{Path(str(label)).name} is not a zip archive ({e})") from None
    with zf:
        plan = _plan_zip(zf, max_total_bytes, max_files)
        placed, skipped, notes = place_images(plan.images)
        skipped = plan.skipped + skipped
        if not placed:
            raise ImportRejected(
                "no images in class folders: a dataset zip holds CLASS/IMAGE (or TOP/CLASS/IMAGE) entries"
                + (f"; skipped {len(skipped)} other entries" if skipped else "")
            )
        if plan.junk:
            notes.append(f"ignored {plan.junk} macOS/Windows metadata entries (__MACOSX, .DS_Store, ...)")
        budget = Budget(max_total_bytes, max_files)
        with staging_folder(data_root, name, overwrite) as staging:
            for done, (member, parts) in enumerate(placed, 1):
                if should_stop and should_stop():
                    raise ImportCancelled("import stopped on request")
                target = safe_target(staging, parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                budget.add_file()
                try:
                    with zf.open(member.info) as source:
                        copy_limited(source, target, budget, limit=member.info.file_size)
                except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as e:
                    raise ImportRejected(f"archive entry {member.name!r} cannot be read: {e}") from None
                except RuntimeError as e:  # zipfile raises it for encrypted members
                    raise ImportRejected(f"archive entry {member.name!r} cannot be read: {e}") from None
                except OSError as e:  # e.g. a name too long for this filesystem
                    reason = e.strerror or e
                    raise ImportRejected(f"archive entry {member.name!r} cannot be written: {reason}") from None
                problem = image_problem(target)
                if problem:
                    target.unlink()
                    skipped.append({"path": member.name, "reason": problem})
                report(progress, "unpacking", done, len(placed))
            _prune_empty_dirs(staging)
            write_meta(staging, {"name": name, "source": "zip", "archive": Path(str(label)).name})
            result = finish(staging, name, data_root, "zip", skipped, notes)
    return result


def _plan_zip(zf: zipfile.ZipFile, max_total_bytes: int, max_files: int) -> _ZipPlan:
    infos = zf.infolist()
    files = [i for i in infos if not _is_dir(i)]
    if len(files) > max_files:
        raise ImportRejected(f"archive has {len(files):,} files, over the limit of {max_files:,}")
    declared = sum(i.file_size for i in files)
    if declared > max_total_bytes:
        raise ImportRejected(
            f"archive unpacks to {_size(declared)}, over the limit of {_size(max_total_bytes)} "
            "(a zip bomb, or a dataset too large to upload: copy the folder instead)"
        )
    plan = _ZipPlan()
    seen: dict[str, str] = {}
    dirs: dict[str, str] = {}
    for info in infos:
        parts = member_parts(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ImportRejected(f"archive entry {info.filename!r} is a symbolic link; links are not allowed")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded (most zip tools)
            raise ImportRejected(f"archive entry {info.filename!r} is a special file (device, pipe or socket)")
        if info.flag_bits & 0x1:
            raise ImportRejected(f"archive entry {info.filename!r} is encrypted; upload an unencrypted zip")
        if not parts:
            continue
        for depth in range(1, len(parts)):
            dirs.setdefault(clash_key(parts[:depth]), "/".join(parts[:depth]))
        if _is_dir(info):
            dirs.setdefault(clash_key(parts), "/".join(parts))
            continue
        key = clash_key(parts)
        if key in seen:
            raise ImportRejected(
                f"archive has two entries for the same file: {seen[key]!r} and {info.filename!r} "
                "(names that differ only in letter case or accents are the same file on Windows and macOS)"
            )
        seen[key] = info.filename
        if info.file_size >= _RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ImportRejected(
                f"archive entry {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}-fold "
                f"(over {MAX_RATIO}x): refused as a likely zip bomb"
            )
        if is_junk(parts):
            plan.junk += 1
        elif any(p.startswith(".") for p in parts):
            plan.skipped.append({"path": info.filename, "reason": "hidden file"})
        elif not is_image_name(parts[-1]):
            plan.skipped.append({"path": info.filename, "reason": "not an image file (by its extension)"})
        else:
            plan.images.append(_ZipMember(info, parts))
    for key, original in seen.items():
        if key in dirs:
            raise ImportRejected(f"archive entry {original!r} is both a file and a folder ({dirs[key]!r}/)")
    return plan


def _is_dir(info: zipfile.ZipInfo) -> bool:
    return info.is_dir() or stat.S_ISDIR(info.external_attr >> 16)


def _prune_empty_dirs(root: Path) -> None:
    for dirpath, _dirnames, _filenames in sorted(os.walk(root), key=lambda item: -len(item[0])):
        path = Path(dirpath)
        if path != root and not any(path.iterdir()):
            path.rmdir()


def _size(count: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
