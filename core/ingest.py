"""Decode every image of a dataset once into a uint8 cache on disk, then read it in batches.

Cache layout, one folder per (dataset fingerprint, square size):
  data/.cache/<fingerprint>-<size>/images.npy   (rows, size, size, 3) uint8, one row per scanned file
  data/.cache/<fingerprint>-<size>/index.json   readable rows, their paths/labels/splits, failures

Batches are read with positioned reads into fresh buffers, never through a whole-file memory map,
so a process's resident memory holds a batch, not the dataset.
"""

from __future__ import annotations

import collections
import concurrent.futures
import concurrent.futures.process
import contextlib
import logging
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.datasets import DatasetIndex
from core.fileio import read_json, write_json_atomic
from core.imaging import ImageError, load_square
from core.processes import process_alive
from core.progress import CountCallback

log = logging.getLogger("flora")
CACHE_VERSION = (
    3  # bump when decoding changes, so old caches are rebuilt (2: bilinear when enlarging; 3: OpenCV enlarges)
)
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.json"
_CHUNK = 64  # most images per task: big enough to amortise IPC, small enough for smooth progress
_PARALLEL_MIN = 96  # below this many images, worker start-up costs more than it saves


class IngestCancelled(RuntimeError):
    """Decoding was stopped on request."""


class NotEnoughDisk(OSError):
    """The disk lacks the room the decoded cache needs: nothing was written."""


DISK_MARGIN_BYTES = 256 * 1024**2  # left free beyond the cache itself: the index, logs, the rest of the system


def cache_bytes(images: int, size: int) -> int:
    """Bytes the decoded cache of `images` photos at `size` px takes on disk (uint8 RGB squares)."""
    return images * size * size * 3


@dataclass(frozen=True)
class DiskPlan:
    """What decoding a dataset at a size will take: nothing when its cache is built, else `need` of `free`."""

    decoded: bool
    need: int
    free: int

    @property
    def fits(self) -> bool:
        return self.decoded or self.need + DISK_MARGIN_BYTES <= self.free

    def sentence(self, images: int, size: int) -> str:
        if self.decoded:
            return f"Its {images:,} photos are already decoded at {size} px: training starts at once."
        return (
            f"Decoding {images:,} photos at {size} px takes {human_bytes(self.need)} of disk in the cache "
            f"({human_bytes(self.free)} free there)."
        )


def disk_plan(cache_root: str | os.PathLike, fingerprint: str, images: int, size: int) -> DiskPlan:
    """Whether the cache of (`fingerprint`, `size`) is built, and if not, the disk it needs and the disk free."""
    decoded = load_cache(cache_folder(cache_root, fingerprint, size)) is not None
    return DiskPlan(decoded, 0 if decoded else cache_bytes(images, size), free_bytes(cache_root))


def free_bytes(folder: str | os.PathLike) -> int:
    """Free bytes on the file system `folder` is (or will be) on."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk(folder: str | os.PathLike, images: int, size: int) -> None:
    """Raise NotEnoughDisk when the file system of `folder` has no room for the cache (plus a margin)."""
    need = cache_bytes(images, size)
    free = free_bytes(folder)
    if need + DISK_MARGIN_BYTES > free:
        raise NotEnoughDisk(
            f"decoding {images:,} photos at {size} px needs {human_bytes(need)} in {folder}, and its disk has "
            f"{human_bytes(free)} free. Free some space (the Dataset page lists old caches to remove), choose a "
            "smaller image size, or point FLORA_DATA_DIR at a larger disk. Nothing was written."
        )


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


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
    hit: bool = False  # True when this call found the cache already built
    _fd: int | None = field(default=None, repr=False, compare=False)
    _fd_pid: int | None = field(default=None, repr=False, compare=False)
    _offset: int = field(default=0, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def row_bytes(self) -> int:
        return self.size * self.size * 3

    def read(self, positions) -> np.ndarray:
        """Images at `positions` (indices into `paths`) as a (k, size, size, 3) uint8 array."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        out = np.empty((len(positions), self.size, self.size, 3), dtype=np.uint8)
        fd = self._file()
        for i, row in enumerate(self.rows[positions]):
            view = memoryview(out[i]).cast("B")
            got = os.preadv(fd, [view], self._offset + int(row) * self.row_bytes)
            if got != self.row_bytes:
                raise OSError(f"cache file {self.directory / IMAGES_FILE} is truncated")
        return out

    def _file(self) -> int:
        # One descriptor per process: positioned reads are thread-safe, descriptors are not fork-safe.
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self.directory / IMAGES_FILE, os.O_RDONLY)
            self._fd_pid = os.getpid()
            self._offset = _data_offset(self.directory / IMAGES_FILE)
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


def cache_folder(cache_root: str | os.PathLike, fingerprint: str, size: int) -> Path:
    return Path(cache_root) / f"{fingerprint}-{size}"


def ingest(
    index: DatasetIndex,
    size: int,
    cache_root: str | os.PathLike,
    progress: CountCallback | None = None,
    workers: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImageCache:
    """Decode `index`'s images into squares of `size` px, or return the cache already built.

    Unreadable files are skipped and listed in `failures` with their reason, never fatal.

    Args:
        index: the scanned dataset.
        size: side of the cached squares.
        cache_root: usually `data/.cache`.
        progress: called as progress(done, total) while decoding.
        workers: decoding processes; default one per CPU core.
        should_stop: polled between chunks; when it returns True decoding stops.

    Raises:
        IngestCancelled: `should_stop` asked to stop.
        NotEnoughDisk: the disk has no room for the cache (said before decoding anything).
    """
    folder = cache_folder(cache_root, index.fingerprint, size)
    cached = load_cache(folder)
    if cached is not None:
        if progress:
            progress(len(index.entries), len(index.entries))
        cached.hit = True
        return cached

    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(folder.parent)
    check_disk(folder.parent, len(index.entries), size)
    log.info(
        "decoding %d photos at %d px into %s (%s)",
        len(index.entries),
        size,
        folder,
        human_bytes(cache_bytes(len(index.entries), size)),
    )
    staging = folder.parent / f".{folder.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    staging.mkdir()
    try:
        failures = _decode_all(index, size, staging / IMAGES_FILE, progress, workers, should_stop)
        _write_index(staging, index, size, failures)
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


def remove_stale_staging(cache_root: str | os.PathLike) -> list[Path]:
    """Delete the half-built folders of decoders that died (kill -9, a power cut); return what went.

    A staging folder is named `.<cache>.<pid>.<ns>.tmp` (or `.stale` while a replaced cache is deleted); one
    whose process is no longer alive is never finished by anyone.
    """
    removed = []
    try:
        entries = list(os.scandir(cache_root))
    except OSError:
        return removed
    for entry in entries:
        parts = entry.name.split(".")
        if not (entry.name.startswith(".") and len(parts) >= 5 and parts[-1] in ("tmp", "stale")):
            continue
        try:
            pid = int(parts[-3])
        except ValueError:
            continue
        if pid == os.getpid() or process_alive(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _discard(folder: Path) -> None:
    """Move a stale cache folder aside, then delete it (the rename makes room at once)."""
    trash = folder.parent / f".{folder.name}.{os.getpid()}.{time.monotonic_ns()}.stale"
    try:
        os.rename(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def load_cache(folder: str | os.PathLike) -> ImageCache | None:
    """The cache in `folder`, or None when it is missing, partial, or from another version."""
    folder = Path(folder)
    meta = read_json(folder / INDEX_FILE)
    if not meta or meta.get("version") != CACHE_VERSION or not (folder / IMAGES_FILE).exists():
        return None
    return ImageCache(
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


def _write_index(folder: Path, index: DatasetIndex, size: int, failures: dict[int, str]) -> None:
    ok = [i for i in range(len(index.entries)) if i not in failures]
    write_json_atomic(
        folder / INDEX_FILE,
        {
            "version": CACHE_VERSION,
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


def _decode_all(index, size, images_path, progress, workers, should_stop) -> dict[int, str]:
    total = len(index.entries)
    array = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(total, size, size, 3))
    del array  # header and size are on disk; rows are written with positioned writes
    offset = _data_offset(images_path)
    items = [(row, str(index.root / entry.path)) for row, entry in enumerate(index.entries)]
    workers = workers or os.cpu_count() or 1
    chunk_size = _chunk_size(total, workers)
    chunks = collections.deque(items[i : i + chunk_size] for i in range(0, total, chunk_size))
    failures: dict[int, str] = {}
    done = 0
    if progress:
        progress(0, total)

    def account(result: dict[int, str], count: int) -> None:
        nonlocal done
        failures.update(result)
        done += count
        if progress:
            progress(done, total)
        if should_stop and should_stop():
            raise IngestCancelled("decoding stopped on request")

    def decode_here() -> None:
        chunk = chunks.pop()  # from the back: the worker processes take from the front
        account(decode_chunk(str(images_path), offset, size, chunk), len(chunk))

    if workers <= 1 or total < _PARALLEL_MIN:
        while chunks:
            decode_here()
        return failures

    # This process decodes too, next to workers - 1 others. It starts at once, and work goes to
    # the others only after one of them has answered, so no image ever waits for a process to
    # spawn (a few tenths of a second of imports): a small dataset is done before they are up.
    # spawn, not fork: the parent may hold TensorFlow or Streamlit threads that fork would copy.
    others = workers - 1
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=others,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    )
    ready = [pool.submit(os.getpid) for _ in range(others)]
    in_flight: dict[concurrent.futures.Future, list] = {}
    usable, finished = True, False
    try:
        while chunks or in_flight:
            if usable and any(f.done() for f in ready):
                usable = not any(f.done() and f.exception() is not None for f in ready)
                while usable and chunks and len(in_flight) < 2 * others:  # two queued per process: never idle
                    chunk = chunks.popleft()
                    in_flight[pool.submit(decode_chunk, str(images_path), offset, size, chunk)] = chunk
            for future in [f for f in in_flight if f.done()]:
                chunk = in_flight.pop(future)
                if isinstance(future.exception(), concurrent.futures.process.BrokenProcessPool):
                    usable = False  # a process died (or could not start): this one does the rest
                    chunks.append(chunk)
                    continue
                account(future.result(), len(chunk))
            if chunks:
                decode_here()
            elif in_flight:
                concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
        finished = True
    finally:
        # Reap processes that are up (their CPU time is then accounted to us); never wait for one
        # still starting, nor on an error (what is left running writes only into the staging file).
        pool.shutdown(wait=finished and all(f.done() for f in ready), cancel_futures=True)
    return failures


def exit_with_parent(parent_pid: int, poll_seconds: float = 0.5) -> None:
    """A decoding worker's initializer: end this process soon after its parent is gone.

    A parent killed with SIGKILL never shuts its pool down; without this its workers (and so the resource
    tracker that waits on their pipe) lived on. A daemon thread notices the parent's end (this process is
    re-parented) and exits at once, whatever the worker is doing.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _chunk_size(total: int, workers: int) -> int:
    """Images per task: about 8 tasks per decoder so the last ones finish together, 16-64 each."""
    return max(16, min(_CHUNK, -(-total // (8 * max(1, workers)))))


def decode_chunk(images_path: str, offset: int, size: int, items: list[tuple[int, str]]) -> dict[int, str]:
    """Decode `items` (row, path) into their rows of the cache file; return {row: reason} failures."""
    failures: dict[int, str] = {}
    row_bytes = size * size * 3
    fd = os.open(images_path, os.O_WRONLY)
    try:
        for row, path in items:
            try:
                square = load_square(path, size)  # contiguous RGB rows, written without a copy
            except ImageError as e:
                failures[row] = str(e)
                continue
            except Exception as e:  # a decoder bug must cost one image, not the dataset
                failures[row] = f"could not decode ({type(e).__name__}: {e})"
                continue
            if square.nbytes != row_bytes:
                failures[row] = f"could not decode (got {square.nbytes} bytes for a {size}x{size} RGB square)"
                continue
            os.pwrite(fd, square, offset + row * row_bytes)
    finally:
        os.close(fd)
    return failures


def _data_offset(path: str | os.PathLike) -> int:
    """Byte offset of the array data in a .npy file (after its header)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        return f.tell()
