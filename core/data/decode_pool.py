"""Decoding a dataset's photos in worker processes, in chunks, into the cache being built.

Each chunk's squares go straight into the cache file at their rows (raw) or come back as JPEG bytes (compact);
a photo that cannot be read comes back as its reason. The workers exit when the process that started them
dies, and a stop request ends the pool between chunks.
"""

from __future__ import annotations

import collections
import concurrent.futures
import concurrent.futures.process
import functools
import os
import threading
import time
from pathlib import Path

import numpy as np

from core.data.cache_disk import (
    JPEG_QUALITY,
    JPEGS_FILE,
    OFFSETS_FILE,
)
from core.data.imaging import ImageError, load_square
from core.errors import Cancelled
from core.processes.workers import worker_context

_CHUNK = 64  # most images per task: big enough to amortise IPC, small enough for smooth progress


class IngestCancelled(Cancelled):
    """Decoding was stopped on request."""


_PARALLEL_MIN = 96  # below this many images, worker start-up costs more than it saves


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
    # spawn, not fork (the parent may hold TensorFlow or Streamlit threads), without the parent's __main__ script
    others = workers - 1
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=others,
        mp_context=worker_context(),
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
