"""Decode every image of a dataset once into a uint8 cache on disk, then read it in batches.

Cache layout, one folder per (dataset fingerprint, square size):
  data/.cache/<fingerprint>-<size>/images.npy   (rows, size, size, 3) uint8, one row per scanned file
  data/.cache/<fingerprint>-<size>/index.json   readable rows, their paths/labels/splits, failures

Batches are read with positioned reads into fresh buffers, never through a whole-file memory map,
so a process's resident memory holds a batch, not the dataset.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.cache_disk import (
    CACHE_VERSION,
    COMPACT,
    FORMATS,
    IMAGES_FILE,
    INDEX_FILE,
    JPEGS_FILE,
    OFFSETS_FILE,
    RAW,
    DiskPlan,
    cache_bytes,
    check_disk,
    chosen_format,
    free_bytes,
    human_bytes,
)
from core.data.datasets import DatasetIndex
from core.data.decode_pool import _data_offset, _decode_all, _encode_all
from core.fileio import read_json, write_json_atomic
from core.paths import decoded_cache_name
from core.processes import host_tag, process_alive
from core.progress import CountCallback

log = logging.getLogger("flora")


# A half-built folder another machine left in a cache on shared storage (its process is not ours to check)
# is removed only once nothing in it has changed for this long.
FOREIGN_STAGING_SECONDS = 24 * 3600


def disk_plan(cache_root: str | os.PathLike, fingerprint: str, images: int, size: int) -> DiskPlan:
    """Whether the cache of (`fingerprint`, `size`) is built, and if not, the disk it needs and the disk free."""
    decoded = find_cache(cache_root, fingerprint, size) is not None
    if decoded:
        return DiskPlan(True, 0, free_bytes(cache_root))
    format = chosen_format(images, size, cache_root)
    return DiskPlan(False, cache_bytes(images, size, format), free_bytes(cache_root), format)


@dataclass
class ImageCache:
    """Decoded squares of one dataset at one size, with the files that could not be read."""

    directory: Path
    size: int
    fingerprint: str
    classes: list[str]
    paths: list[str]  # readable images, relative to the dataset root
    labels: np.ndarray
    splits: list[str | None]
    rows: np.ndarray  # row of each readable image in images.npy
    failures: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    dataset_root: str = ""
    format: str = RAW  # raw: uint8 squares in images.npy; jpeg: each square a q95 JPEG in images.jpegs
    offsets: np.ndarray | None = field(default=None, repr=False)  # jpeg: (rows, 2) start, length
    hit: bool = False  # True when this call found the cache already built
    _fd: int | None = field(default=None, repr=False, compare=False)
    _fd_pid: int | None = field(default=None, repr=False, compare=False)
    _offset: int = field(default=0, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def row_bytes(self) -> int:
        return self.size * self.size * 3

    @property
    def content_key(self) -> str:
        """What the squares are: the dataset's fingerprint, and the format when it changes the pixels (JPEG)."""
        return self.fingerprint if self.format == RAW else f"{self.fingerprint}-{self.format}"

    def read(self, positions) -> np.ndarray:
        """Images at `positions` (indices into `paths`) as a (k, size, size, 3) uint8 array."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        out = np.empty((len(positions), self.size, self.size, 3), dtype=np.uint8)
        fd = self._file()
        if self.format == COMPACT:
            import simplejpeg

            for i, row in enumerate(self.rows[positions]):
                start, length = (int(v) for v in self.offsets[row])
                data = os.pread(fd, length, start)
                if len(data) != length:
                    raise OSError(f"cache file {self.directory / JPEGS_FILE} is truncated")
                out[i] = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False)
            return out
        for i, row in enumerate(self.rows[positions]):
            view = memoryview(out[i]).cast("B")
            got = os.preadv(fd, [view], self._offset + int(row) * self.row_bytes)
            if got != self.row_bytes:
                raise OSError(f"cache file {self.directory / IMAGES_FILE} is truncated")
        return out

    def _file(self) -> int:
        # One descriptor per process: positioned reads are thread-safe, descriptors are not fork-safe.
        if self._fd is None or self._fd_pid != os.getpid():
            name = JPEGS_FILE if self.format == COMPACT else IMAGES_FILE
            self._fd = os.open(self.directory / name, os.O_RDONLY)
            self._fd_pid = os.getpid()
            self._offset = 0 if self.format == COMPACT else _data_offset(self.directory / IMAGES_FILE)
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_fd_pid"] = None
        return state

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


def cache_folder(cache_root: str | os.PathLike, fingerprint: str, size: int, format: str = RAW) -> Path:
    return Path(cache_root) / decoded_cache_name(fingerprint, size, "" if format == RAW else f"-{format}")


def find_cache(cache_root: str | os.PathLike, fingerprint: str, size: int) -> ImageCache | None:
    """The built cache of (`fingerprint`, `size`) in either format (raw first), or None."""
    for format in FORMATS:
        cached = load_cache(cache_folder(cache_root, fingerprint, size, format))
        if cached is not None:
            return cached
    return None


def ingest(
    index: DatasetIndex,
    size: int,
    cache_root: str | os.PathLike,
    progress: CountCallback | None = None,
    workers: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    format: str | None = None,
) -> ImageCache:
    """Decode `index`'s images into squares of `size` px, or return the cache already built (either format).

    Unreadable files are skipped and listed in `failures` with their reason, never fatal.

    Args:
        index: the scanned dataset.
        size: side of the cached squares.
        cache_root: usually `data/.cache`.
        progress: called as progress(done, total) while decoding.
        workers: decoding processes; default one per CPU core.
        should_stop: polled between chunks; when it returns True decoding stops.
        format: raw or jpeg (the compact cache); default `chosen_format` (FLORA_CACHE_FORMAT, else raw, and jpeg
            when the raw squares would not fit the disk).

    Raises:
        IngestCancelled: `should_stop` asked to stop.
        NotEnoughDisk: the disk has no room for the cache (said before decoding anything).
    """
    cached = find_cache(cache_root, index.fingerprint, size)
    if cached is not None:
        if progress:
            progress(len(index.entries), len(index.entries))
        cached.hit = True
        return cached

    Path(cache_root).mkdir(parents=True, exist_ok=True)
    format = format or chosen_format(len(index.entries), size, cache_root)
    folder = cache_folder(cache_root, index.fingerprint, size, format)
    remove_stale_staging(folder.parent)
    check_disk(folder.parent, len(index.entries), size, format)
    log.info(
        "decoding %d photos at %d px into %s (%s%s)",
        len(index.entries),
        size,
        folder,
        human_bytes(cache_bytes(len(index.entries), size, format)),
        ", as JPEGs: an estimate" if format == COMPACT else "",
    )
    staging = folder.parent / _staging_name(folder, "tmp")
    staging.mkdir()
    try:
        if format == COMPACT:
            failures = _encode_all(index, size, staging, progress, workers, should_stop)
        else:
            failures = _decode_all(index, size, staging / IMAGES_FILE, progress, workers, should_stop)
        _write_index(staging, index, size, failures, format)
        if folder.exists() and load_cache(folder) is None:
            _discard(folder)  # a partial or older-version cache: replace it
        try:
            os.rename(staging, folder)
        except OSError:
            if load_cache(folder) is None:  # not a concurrent builder that won the race
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    result = load_cache(folder)
    assert result is not None
    return result


def _staging_name(folder: Path, suffix: str) -> str:
    """`.<cache>.<pid>@<host>.<ns>.<suffix>`: whose it is, on which machine (caches may live on storage that
    several machines mount, a Ray cluster's nodes among them)."""
    return f".{folder.name}.{os.getpid()}@{host_tag()}.{time.monotonic_ns()}.{suffix}"


def remove_stale_staging(cache_root: str | os.PathLike) -> list[Path]:
    """Delete the half-built folders of decoders that died (kill -9, a power cut); return what went.

    A staging folder is named `.<cache>.<pid>@<host>.<ns>.tmp` (or `.stale` while a replaced cache is deleted;
    older ones lack `@<host>`); one of this machine whose process is no longer alive is never finished by
    anyone. One of another machine sharing the storage may be under way there (its pid means nothing here):
    it goes only once nothing in it changed for FOREIGN_STAGING_SECONDS.
    """
    removed = []
    try:
        entries = list(os.scandir(cache_root))
    except OSError:
        return removed
    here = host_tag()
    for entry in entries:
        parts = entry.name.split(".")
        if not (entry.name.startswith(".") and len(parts) >= 5 and parts[-1] in ("tmp", "stale")):
            continue
        owner, _, host = parts[-3].partition("@")
        try:
            pid = int(owner)
        except ValueError:
            continue
        if host and host != here:
            if time.time() - _last_change(entry.path) < FOREIGN_STAGING_SECONDS:
                continue
        elif pid == os.getpid() or process_alive(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _last_change(path: str) -> float:
    """The newest modification time of a folder and what it holds (one level: a staging folder is flat)."""
    newest = 0.0
    with contextlib.suppress(OSError):
        newest = os.stat(path).st_mtime
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def _discard(folder: Path) -> None:
    """Move a stale cache folder aside, then delete it (the rename makes room at once)."""
    trash = folder.parent / _staging_name(folder, "stale")
    try:
        os.rename(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def load_cache(folder: str | os.PathLike) -> ImageCache | None:
    """The cache in `folder`, or None when it is missing, partial, or from another version."""
    folder = Path(folder)
    meta = read_json(folder / INDEX_FILE)
    if not meta or meta.get("version") != CACHE_VERSION:
        return None
    format = meta.get("format", RAW)
    offsets = None
    if format == COMPACT:
        if not (folder / JPEGS_FILE).exists() or not (folder / OFFSETS_FILE).exists():
            return None
        offsets = np.load(folder / OFFSETS_FILE)
    elif not (folder / IMAGES_FILE).exists():
        return None
    return ImageCache(
        format=format,
        offsets=offsets,
        directory=folder,
        size=int(meta["size"]),
        fingerprint=meta["fingerprint"],
        classes=list(meta["classes"]),
        paths=list(meta["paths"]),
        labels=np.asarray(meta["labels"], dtype=np.int32),
        splits=list(meta["splits"]),
        rows=np.asarray(meta["rows"], dtype=np.int64),
        failures=list(meta.get("failures", [])),
        dataset_root=meta.get("dataset_root", ""),
    )


def _write_index(folder: Path, index: DatasetIndex, size: int, failures: dict[int, str], format: str = RAW) -> None:
    ok = [i for i in range(len(index.entries)) if i not in failures]
    write_json_atomic(
        folder / INDEX_FILE,
        {
            "version": CACHE_VERSION,
            "format": format,
            "fingerprint": index.fingerprint,
            "size": size,
            "classes": index.classes,
            "dataset_root": str(index.root),
            "paths": [index.entries[i].path for i in ok],
            "labels": [index.entries[i].label for i in ok],
            "splits": [index.entries[i].split for i in ok],
            "rows": ok,
            "failures": [{"path": index.entries[i].path, "reason": reason} for i, reason in sorted(failures.items())],
            "created": time.time(),
        },
    )
