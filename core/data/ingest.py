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
import functools
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

from core.data.datasets import DatasetIndex
from core.fileio import read_json, write_json_atomic
from core.data.imaging import ImageError, load_square
from core.processes import host_tag, process_alive
from core.progress import CountCallback

log = logging.getLogger("flora")
CACHE_VERSION = (
    3  # bump when decoding changes, so old caches are rebuilt (2: bilinear when enlarging; 3: OpenCV enlarges)
)
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.json"
JPEGS_FILE = "images.jpegs"  # the compact cache: each square as a JPEG, one after another
OFFSETS_FILE = "offsets.npy"  # the compact cache: (rows, 2) int64 start and length of each square's JPEG
RAW, COMPACT = "raw", "jpeg"
FORMATS = (RAW, COMPACT)
CACHE_FORMAT_ENV = "FLORA_CACHE_FORMAT"  # raw | jpeg | auto (default: raw, jpeg when raw does not fit the disk)
JPEG_QUALITY = 95
COMPACT_RATIO = 5  # raw bytes / q95 JPEG bytes, for the estimate said before decoding (flowers at 256 px: 12x)
_CHUNK = 64  # most images per task: big enough to amortise IPC, small enough for smooth progress
_PARALLEL_MIN = 96  # below this many images, worker start-up costs more than it saves


class IngestCancelled(RuntimeError):
    """Decoding was stopped on request."""


class NotEnoughDisk(OSError):
    """The disk lacks the room the decoded cache needs: nothing was written."""


# A half-built folder another machine left in a cache on shared storage (its process is not ours to check)
# is removed only once nothing in it has changed for this long.
FOREIGN_STAGING_SECONDS = 24 * 3600
DISK_MARGIN_BYTES = 256 * 1024**2  # left free beyond the cache itself: the index, logs, the rest of the system


def cache_bytes(images: int, size: int, format: str = RAW) -> int:
    """Bytes the decoded cache of `images` photos at `size` px takes on disk: uint8 RGB squares (raw), or
    about a fifth of that at most as JPEGs (compact; an estimate: the real size depends on the photos)."""
    raw = images * size * size * 3
    return raw if format == RAW else raw // COMPACT_RATIO


def chosen_format(images: int, size: int, cache_root: str | os.PathLike) -> str:
    """The cache format to decode into: FLORA_CACHE_FORMAT (raw or jpeg), or by default raw, and jpeg when
    the raw squares would not fit the disk but the JPEGs would."""
    asked = os.environ.get(CACHE_FORMAT_ENV, "auto").strip().lower() or "auto"
    if asked in FORMATS:
        return asked
    if asked != "auto":
        raise ValueError(f"{CACHE_FORMAT_ENV} must be raw, jpeg or auto. Received: {asked!r}")
    free = free_bytes(cache_root)
    if cache_bytes(images, size) + DISK_MARGIN_BYTES <= free:
        return RAW
    if cache_bytes(images, size, COMPACT) + DISK_MARGIN_BYTES <= free:
        log.warning(
            "the raw cache (%s) does not fit the %s free: decoding into the compact JPEG cache (about %s) instead",
            human_bytes(cache_bytes(images, size)),
            human_bytes(free),
            human_bytes(cache_bytes(images, size, COMPACT)),
        )
        return COMPACT
    return RAW  # check_disk then says it does not fit, with the figures


@dataclass(frozen=True)
class DiskPlan:
    """What decoding a dataset at a size will take: nothing when its cache is built, else `need` of `free`."""

    decoded: bool
    need: int
    free: int
    format: str = RAW

    @property
    def fits(self) -> bool:
        return self.decoded or self.need + DISK_MARGIN_BYTES <= self.free

    def sentence(self, images: int, size: int) -> str:
        if self.decoded:
            return f"Its {images:,} photos are already decoded at {size} px: training starts at once."
        compact = " as JPEGs (the compact cache: the raw squares would not fit)" if self.format == COMPACT else ""
        return (
            f"Decoding {images:,} photos at {size} px takes {'about ' if compact else ''}{human_bytes(self.need)} "
            f"of disk in the cache{compact} ({human_bytes(self.free)} free there)."
        )


def disk_plan(cache_root: str | os.PathLike, fingerprint: str, images: int, size: int) -> DiskPlan:
    """Whether the cache of (`fingerprint`, `size`) is built, and if not, the disk it needs and the disk free."""
    decoded = find_cache(cache_root, fingerprint, size) is not None
    if decoded:
        return DiskPlan(True, 0, free_bytes(cache_root))
    format = chosen_format(images, size, cache_root)
    return DiskPlan(False, cache_bytes(images, size, format), free_bytes(cache_root), format)


def free_bytes(folder: str | os.PathLike) -> int:
    """Free bytes on the file system `folder` is (or will be) on."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk(folder: str | os.PathLike, images: int, size: int, format: str = RAW) -> None:
    """Raise NotEnoughDisk when the file system of `folder` has no room for the cache (plus a margin)."""
    need = cache_bytes(images, size, format)
    free = free_bytes(folder)
    if need + DISK_MARGIN_BYTES > free:
        what = " as JPEGs" if format == COMPACT else ""
        raise NotEnoughDisk(
            f"decoding {images:,} photos at {size} px{what} needs {human_bytes(need)} in {folder}, and its disk has "
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
    suffix = "" if format == RAW else f"-{format}"
    return Path(cache_root) / f"{fingerprint}-{size}{suffix}"


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


def _decode_all(index, size, images_path, progress, workers, should_stop) -> dict[int, str]:
    total = len(index.entries)
    array = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(total, size, size, 3))
    del array  # header and size are on disk; rows are written with positioned writes
    task = functools.partial(decode_chunk, str(images_path), _data_offset(images_path), size)
    return _run_chunks(index, task, lambda failures: failures, progress, workers, should_stop)


def _encode_all(index, size, folder: Path, progress, workers, should_stop) -> dict[int, str]:
    """The compact cache: each square encoded as a JPEG by the workers, appended here in arrival order."""
    offsets = np.zeros((len(index.entries), 2), dtype=np.int64)
    with open(folder / JPEGS_FILE, "wb") as out:

        def absorb(result: tuple[dict[int, str], dict[int, bytes]]) -> dict[int, str]:
            failures, encoded = result
            for row, data in encoded.items():
                offsets[row] = (out.tell(), len(data))
                out.write(data)
            return failures

        failures = _run_chunks(index, functools.partial(encode_chunk, size), absorb, progress, workers, should_stop)
    np.save(folder / OFFSETS_FILE, offsets)
    return failures


def _run_chunks(index, task, absorb, progress, workers, should_stop) -> dict[int, str]:
    """Run `task` over chunks of (row, path) here and in worker processes; `absorb` each result (here, in
    order of arrival) into its {row: reason} failures."""
    total = len(index.entries)
    items = [(row, str(index.root / entry.path)) for row, entry in enumerate(index.entries)]
    workers = workers or os.cpu_count() or 1
    chunk_size = _chunk_size(total, workers)
    chunks = collections.deque(items[i : i + chunk_size] for i in range(0, total, chunk_size))
    failures: dict[int, str] = {}
    done = 0
    if progress:
        progress(0, total)

    def account(result, count: int) -> None:
        nonlocal done
        failures.update(absorb(result))
        done += count
        if progress:
            progress(done, total)
        if should_stop and should_stop():
            raise IngestCancelled("decoding stopped on request")

    def decode_here() -> None:
        chunk = chunks.pop()  # from the back: the worker processes take from the front
        account(task(chunk), len(chunk))

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
                    in_flight[pool.submit(task, chunk)] = chunk
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


def _square_or_reason(path: str, size: int) -> np.ndarray | str:
    """The photo at `path` as a `size` RGB square, or why it could not be decoded."""
    try:
        return load_square(path, size)
    except ImageError as e:
        return str(e)
    except Exception as e:  # a decoder bug must cost one image, not the dataset
        return f"could not decode ({type(e).__name__}: {e})"


def decode_chunk(images_path: str, offset: int, size: int, items: list[tuple[int, str]]) -> dict[int, str]:
    """Decode `items` (row, path) into their rows of the cache file; return {row: reason} failures."""
    failures: dict[int, str] = {}
    row_bytes = size * size * 3
    fd = os.open(images_path, os.O_WRONLY)
    try:
        for row, path in items:
            square = _square_or_reason(path, size)  # contiguous RGB rows, written without a copy
            if isinstance(square, str):
                failures[row] = square
                continue
            if square.nbytes != row_bytes:
                failures[row] = f"could not decode (got {square.nbytes} bytes for a {size}x{size} RGB square)"
                continue
            os.pwrite(fd, square, offset + row * row_bytes)
    finally:
        os.close(fd)
    return failures


def encode_chunk(size: int, items: list[tuple[int, str]]) -> tuple[dict[int, str], dict[int, bytes]]:
    """Decode `items` (row, path) into squares and encode each as a JPEG: ({row: reason} failures, {row: bytes})."""
    import simplejpeg

    failures: dict[int, str] = {}
    encoded: dict[int, bytes] = {}
    for row, path in items:
        square = _square_or_reason(path, size)
        if isinstance(square, str):
            failures[row] = square
            continue
        encoded[row] = simplejpeg.encode_jpeg(square, quality=JPEG_QUALITY, colorspace="RGB", colorsubsampling="444")
    return failures, encoded


def _data_offset(path: str | os.PathLike) -> int:
    """Byte offset of the array data in a .npy file (after its header)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        return f.tell()
