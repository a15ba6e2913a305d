"""The datasets Flora can fetch by name: tf_flowers and Oxford 102 (downloaded), demo (drawn here).

Downloads land in `data/.downloads/<key>/` (resumable `.part` files), are verified against the
published size and SHA-256 (the values TensorFlow Datasets records for the same URLs), unpacked
into a staging folder and renamed into `data/<key>/`. The archives are deleted once the dataset
is in place; a verified archive is kept when unpacking fails, so a retry does not download again.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.data.datasets import DatasetError, scan_dataset
from core.data.imaging import is_image_name
from core.importers import oxford
from core.importers.archives import Budget, copy_limited, is_junk, safe_target, tar_files
from core.importers.common import (
    DownloadError,
    ImportRejected,
    ImportResult,
    describe,
    finish,
    report,
    staging_folder,
    validate_dataset_name,
    write_meta,
)
from core.importers.demo import make_demo_dataset
from core.importers.download import discard, download, sha256_file
from core.progress import StageCallback

DOWNLOADS_DIRNAME = ".downloads"
TF_FLOWERS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"


@dataclass(frozen=True)
class RemoteFile:
    """One published file: where it is and what it must be (size in bytes, SHA-256)."""

    name: str
    url: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetSource:
    """A dataset Flora can fetch by its key."""

    key: str
    title: str
    description: str
    url: str  # the main download (for Oxford 102: the folder holding its three files)
    size_mb: float  # download size in MB (10^6 bytes); 0 for datasets made locally
    license: str
    classes: int
    images: int
    homepage: str = ""
    files: tuple[RemoteFile, ...] = ()
    archive_root: str = ""  # the folder at the top of the archive holding the class folders
    class_names: tuple[str, ...] = ()
    synthetic: bool = False
    needs_network: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)


KNOWN_SOURCES: dict[str, DatasetSource] = {
    "tf_flowers": DatasetSource(
        key="tf_flowers",
        title="TensorFlow flowers (tf_flowers)",
        description="3,670 Flickr photos of 5 flowers: daisy, dandelion, roses, sunflowers, tulips.",
        url=TF_FLOWERS_URL,
        size_mb=228.8,
        license="Creative Commons Attribution (per photo; the credits are in LICENSE.txt)",
        classes=5,
        images=3670,
        homepage="https://www.tensorflow.org/datasets/catalog/tf_flowers",
        files=(
            RemoteFile(
                "flower_photos.tgz",
                TF_FLOWERS_URL,
                228_813_984,
                "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",
            ),
        ),
        archive_root="flower_photos",
        class_names=("daisy", "dandelion", "roses", "sunflowers", "tulips"),
    ),
    "oxford102": DatasetSource(
        key="oxford102",
        title="Oxford 102 Flowers",
        description="8,189 photos of 102 flower species with the official 1,020 / 1,020 / 6,149 split.",
        url=oxford.HOMEPAGE,
        size_mb=344.9,
        license="research dataset, no licence stated by its authors; cite Nilsback & Zisserman (2008)",
        classes=102,
        images=oxford.IMAGE_COUNT,
        homepage=oxford.HOMEPAGE,
        files=(
            RemoteFile(
                oxford.LABELS_FILE,
                oxford.HOMEPAGE + oxford.LABELS_FILE,
                502,
                "4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d",
            ),
            RemoteFile(
                oxford.SETID_FILE,
                oxford.HOMEPAGE + oxford.SETID_FILE,
                14_989,
                "46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd",
            ),
            RemoteFile(
                oxford.IMAGES_ARCHIVE,
                oxford.HOMEPAGE + oxford.IMAGES_ARCHIVE,
                344_862_509,
                "2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246",
            ),
        ),
    ),
    "demo": DatasetSource(
        key="demo",
        title="Demo flowers (synthetic)",
        description="300 drawings of 5 made-up flowers told apart by petal count and colour, drawn on "
        "this machine with no network. Not photos: for trying the app, not for judging a model.",
        url="",
        size_mb=0.0,
        license="made by Flora; free to use",
        classes=5,
        images=300,
        synthetic=True,
        needs_network=False,
    ),
}


def get_dataset(
    key: str,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    url: str | None = None,
    force: bool = False,
) -> ImportResult:
    """Fetch a known dataset into `data_root/<key>` (or find it there already).

    Args:
        key: "tf_flowers", "oxford102" or "demo".
        data_root: the datasets folder, usually `data/`.
        progress: called as progress(stage, done, total), stage "downloading", "verifying",
            "unpacking" (bytes) or "drawing" (images).
        should_stop: polled while downloading and unpacking; True stops (ImportCancelled) and keeps
            a partial download for the next call to resume.
        url: another place to download from: the archive for tf_flowers, the folder holding the
            three files for oxford102. Its files are checked against the official checksums
            when they are the official files, else by their layout.
        force: fetch again and replace the dataset even if it is already there.

    Raises:
        ImportRejected: unknown key, or `data_root/<key>` exists but is not a dataset.
        DownloadError: the download failed or did not verify (the message says what was kept).
        ImportCancelled: stopped on request.
    """
    if key not in KNOWN_SOURCES:
        raise ImportRejected(f"unknown dataset {key!r}; known: {', '.join(KNOWN_SOURCES)}")
    source = KNOWN_SOURCES[key]
    data_root = Path(data_root)
    target = data_root / key
    if target.exists() and not force:
        try:
            index = scan_dataset(target)
        except DatasetError:
            raise ImportRejected(
                f"{target} exists but is not a dataset; remove it, or fetch with force to replace it"
            ) from None
        result = describe(index, target, key, key)
        result.already_present = True
        result.notes.insert(0, f"already in {data_root}; nothing fetched (force fetches it again)")
        return result
    validate_dataset_name(key)
    if key == "demo":
        if url:
            raise ImportRejected("the demo set is drawn on this machine; it has no URL")
        return make_demo_dataset(data_root, key, progress=progress, overwrite=force)
    try:
        with _one_at_a_time(data_root, key):
            if key == "tf_flowers":
                return _get_class_tree(source, data_root, progress, should_stop, url, force)
            return _get_oxford(source, data_root, progress, should_stop, url, force)
    finally:
        _prune_empty(downloads_dir(data_root, key))


@contextlib.contextmanager
def _one_at_a_time(data_root: Path, key: str):
    """One fetch of a dataset at a time per data folder (two browser tabs may both press Get)."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform; verification still catches a garbled file
        yield
        return
    folder = Path(data_root) / DOWNLOADS_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / f"{key}.lock"
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = f"{key} is already being fetched by another process; try again when it is done"
            raise ImportRejected(message) from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def downloads_dir(data_root: str | os.PathLike, key: str) -> Path:
    return Path(data_root) / DOWNLOADS_DIRNAME / key


def _fetch(remote: RemoteFile, url: str, folder: Path, progress, should_stop) -> tuple[Path, list[str]]:
    """Download one file; verify strictly when it comes from the official URL, else compare and say."""
    official = url == remote.url
    dest = folder / remote.name
    if dest.exists():  # verified by an earlier call whose unpacking failed
        if official and sha256_file(dest, progress) == remote.sha256:
            return dest, [f"{remote.name}: reused the verified download in {folder}"]
        discard(dest)
    path, digest = download(
        url,
        dest,
        expected_size=remote.size if official else None,
        expected_sha256=remote.sha256 if official else None,
        progress=progress,
        should_stop=should_stop,
    )
    if official:
        return path, [f"{remote.name}: size and SHA-256 match the published checksum"]
    if digest == remote.sha256:
        return path, [f"{remote.name} from {url}: SHA-256 matches the official file"]
    return path, [f"{remote.name} from {url}: not the official file (SHA-256 differs); checked its layout instead"]


def _get_class_tree(source: DatasetSource, data_root: Path, progress, should_stop, url, force) -> ImportResult:
    remote = source.files[0]
    folder = downloads_dir(data_root, source.key)
    archive, notes = _fetch(remote, url or remote.url, folder, progress, should_stop)
    official = (url or remote.url) == remote.url
    try:
        with staging_folder(data_root, source.key, overwrite=force) as staging:
            skipped = _unpack_class_tree(archive, staging, source.archive_root, progress, should_stop)
            _check_layout(staging, source, official, notes)
            write_meta(
                staging,
                {
                    "name": source.key,
                    "title": source.title,
                    "source": source.key,
                    "homepage": source.homepage,
                    "license": source.license,
                    "description": source.description,
                    "url": url or remote.url,
                },
            )
            result = finish(staging, source.key, data_root, source.key, skipped, notes)
    except Exception:
        if not official:
            discard(archive)
        raise
    _remove_downloads(folder)
    return result


def _unpack_class_tree(archive: Path, staging: Path, root: str, progress, should_stop) -> list[dict[str, str]]:
    """Stream `ROOT/<class>/<image>` members into `staging/<class>/`; top-level text files (the licence) too."""
    skipped: list[dict[str, str]] = []
    budget = Budget(max_total_bytes=4 * 1024**3, max_files=200_000)
    total = archive.stat().st_size
    try:
        stopped = "unpacking stopped on request; the download is kept"
        for tar, member, parts, read in tar_files(archive, should_stop, stopped):
            if is_junk(parts):
                continue
            if parts[0] != root or len(parts) < 2:
                skipped.append({"path": member.name, "reason": f"outside {root}/"})
                continue
            inner = parts[1:]
            if len(inner) == 1 and not is_image_name(inner[0]):
                keep = inner  # LICENSE.txt and the like stay at the dataset's top
            elif len(inner) == 2 and is_image_name(inner[1]) and not inner[0].startswith("."):
                keep = inner
            else:
                skipped.append({"path": member.name, "reason": "not an image in a class folder"})
                continue
            target = safe_target(staging, keep)
            target.parent.mkdir(parents=True, exist_ok=True)
            budget.add_file()
            copy_limited(tar.extractfile(member), target, budget, limit=member.size)
            report(progress, "unpacking", read, total)
    except FileExistsError as e:
        raise ImportRejected(f"{archive.name} holds the same file twice ({Path(e.filename).name})") from None
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DownloadError(f"{archive.name} is not a readable tar archive ({e})") from None
    return skipped


def _check_layout(staging: Path, source: DatasetSource, official: bool, notes: list[str]) -> None:
    try:
        index = scan_dataset(staging)
    except DatasetError:
        raise DownloadError(
            f"the archive has no {source.archive_root}/<class>/<image> folders: it is not {source.title}"
        ) from None
    if source.class_names and tuple(index.classes) != tuple(sorted(source.class_names)):
        raise DownloadError(
            f"the archive is not {source.title}: expected the classes {', '.join(source.class_names)}; "
            f"found {', '.join(index.classes)}"
        )
    if len(index.entries) != source.images:
        message = f"{len(index.entries):,} images, the official archive has {source.images:,}"
        if official:
            raise DownloadError(f"unpacked {message}")
        notes.append(message)


def _get_oxford(source: DatasetSource, data_root: Path, progress, should_stop, url, force) -> ImportResult:
    folder = downloads_dir(data_root, source.key)
    base = (url.rstrip("/") + "/") if url else None
    paths, notes = {}, []
    for remote in source.files:
        fetched, said = _fetch(remote, base + remote.name if base else remote.url, folder, progress, should_stop)
        paths[remote.name] = fetched
        notes += said
    official = base is None or base == source.url
    try:
        labels, split = oxford.read_labels_and_split(paths[oxford.LABELS_FILE], paths[oxford.SETID_FILE])
        with staging_folder(data_root, source.key, overwrite=force) as staging:
            found, skipped = oxford.unpack_images(paths[oxford.IMAGES_ARCHIVE], staging, labels, progress, should_stop)
            if official and len(found) != source.images:
                raise DownloadError(f"unpacked {len(found):,} images, the official archive has {source.images:,}")
            for name in (oxford.LABELS_FILE, oxford.SETID_FILE):
                shutil.copyfile(paths[name], staging / name)
            result = oxford.build(staging, source.key, data_root, labels, split, found, skipped)
            result.notes = notes + result.notes
    except Exception:
        if not official:
            for path in paths.values():
                discard(path)
        raise
    _remove_downloads(folder)
    return result


def _remove_downloads(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    _prune_empty(folder)


def _prune_empty(folder: Path) -> None:
    """Remove the download folder and data/.downloads when they hold nothing (kept while a .part waits)."""
    for path in (folder, folder.parent):
        try:
            path.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return
