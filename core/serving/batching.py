"""Dynamic batching: concurrent requests gathered into one forward pass.

Requests arrive already decoded (a bad photo fails its own request, never a batch). A worker
thread takes the first waiting request, waits up to `max_wait_ms` for more until `max_batch` rows (while no other
worker's batch runs: then it starts at once with what is queued),
pads the rows to the next of a few fixed batch sizes where the model needs fixed shapes (Keras: it is warmed for
them before the server says ready, so no request pays for compiling a new shape; ONNX Runtime and OpenVINO take
any batch, so their rows go unpadded), runs the model once and hands each request its rows.
A runtime that takes several batches at once (OpenVINO: two a stream, one running and one waiting on it) gets as
many workers, each gathering and running batches of its own: while one batch runs, the next is gathered and handed
to the runtime, which starts it the moment a stream is free, instead of every stream waiting for the slowest half
of one batch or for Python to gather its next.
The queue is bounded: when it is full, `submit` raises `QueueFull` at once (the server answers 503
with Retry-After) instead of letting latency grow without end. A request whose client went away is
cancelled and skipped when its turn comes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.errors import Busy, Unavailable

Forward = Callable[[np.ndarray], dict[str, np.ndarray]]
MAX_WORKERS = 8  # batches gathered and run at once, whatever a runtime's streams


class QueueFull(Busy):
    """The batching queue is full: the server is overloaded; try again shortly."""


class BatcherClosed(Unavailable):
    """This batcher no longer takes requests (its model was swapped out); resolve the model again."""


def batch_sizes(max_batch: int) -> list[int]:
    """The padded batch sizes: 1, 2, 4, 8, then steps of an eighth of `max_batch` (at least 4) up to it.

    Powers of two alone padded a batch of 17 to 32: under 32 clients on a 2-core CPU the mean batch was
    about 16 and a quarter of every forward pass was padding. Finer steps waste at most a step's rows,
    for a few more shapes to warm (10 for a max batch of 32).
    """
    sizes, size = [], 1
    while size < min(8, max_batch):
        sizes.append(size)
        size *= 2
    step = max(4, max_batch // 8)
    while size < max_batch:
        sizes.append(size)
        size += step
    return [*sizes, max_batch]


@dataclass
class _Job:
    pixels: np.ndarray
    future: concurrent.futures.Future
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def rows(self) -> int:
        return len(self.pixels)


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    padded_rows: int = 0
    rejected: int = 0
    cancelled: int = 0

    def to_dict(self) -> dict[str, float]:
        return {
            "batches": self.batches,
            "rows": self.rows,
            "mean_batch": round(self.rows / self.batches, 2) if self.batches else 0.0,
            "padding": round(1 - self.rows / self.padded_rows, 3) if self.padded_rows else 0.0,
            "rejected": self.rejected,
            "cancelled": self.cancelled,
        }


class DynamicBatcher:
    """A worker thread batching the rows of concurrent requests through `forward`."""

    def __init__(
        self,
        forward: Forward,
        image_shape: tuple[int, int, int],
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 512,
        name: str = "batcher",
        pads: Callable[[], bool] = lambda: True,
        workers: Callable[[], int] = lambda: 1,
    ):
        """`pads()`: whether the model needs its batches padded to `sizes` now (it may change once, when a
        faster runtime takes over); `workers()`: how many batches the model runs at once now (the workers grow
        to it, never shrink; at most MAX_WORKERS)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1. Received: max_batch={max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0. Received: max_wait_ms={max_wait_ms}")
        self.forward = forward
        self.pads = pads
        self.image_shape = tuple(image_shape)
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.sizes = batch_sizes(self.max_batch)
        self.stats = BatchStats()
        self.workers = workers
        self.name = name
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max(1, int(max_queue)))
        self._threads = [threading.Thread(target=self._loop, name=name, daemon=True)]
        self._counting = threading.Lock()  # the workers' batch counts
        self._running = 0  # batches running now
        self._started = False
        self._closed = False
        self._gate = threading.Lock()  # a submit either lands before the stop marker or sees closed

    def start(self) -> DynamicBatcher:
        if not self._started:
            self._started = True
            self._threads[0].start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued requests, then stop the worker."""
        with self._gate:
            if self._closed:
                return
            self._closed = True
            if self._started:
                for _ in self._threads:  # one stop marker a worker
                    self._queue.put(None)
        if self._started:
            deadline = time.perf_counter() + timeout
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.perf_counter()))

    def _grow(self) -> None:
        """Start workers up to what the model runs at once now."""
        want = min(MAX_WORKERS, max(1, int(self.workers())))
        if want <= len(self._threads):
            return
        with self._gate:
            while not self._closed and len(self._threads) < want:
                thread = threading.Thread(target=self._loop, name=f"{self.name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    @property
    def worker_count(self) -> int:
        return len(self._threads)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, pixels: np.ndarray) -> concurrent.futures.Future:
        """Queue (N, size, size, 3) pixels; the future gives forward()'s outputs for those N rows.

        Raises:
            QueueFull: the queue is full.
            BatcherClosed: the batcher was closed.
        """
        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != self.image_shape:
            raise ValueError(f"pixels must be (N, {', '.join(map(str, self.image_shape))}). Received {pixels.shape}")
        job = _Job(pixels, concurrent.futures.Future())
        with self._gate:
            if self._closed:
                raise BatcherClosed("this model was swapped out")
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self.stats.rejected += 1
                raise QueueFull(f"the server is busy ({self._queue.maxsize} requests waiting); retry shortly") from None
        return job.future

    async def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """submit() for asyncio: a cancelled caller (client gone) cancels its job."""
        return await asyncio.wrap_future(self.submit(pixels))

    # ------------------------------------------------------------------ the worker

    def _take(self, job: _Job | None) -> bool:
        if job is None:
            return False
        if job.future.set_running_or_notify_cancel():
            return True
        self.stats.cancelled += 1
        return False

    def _loop(self) -> None:
        carried: _Job | None = None
        while True:
            if carried is not None:
                first, carried = carried, None
            else:
                first = self._queue.get()
                if first is None:
                    return
                if not self._take(first):
                    continue
            self._grow()
            jobs, rows = [first], first.rows
            # Waiting for more rows pays where the cores would otherwise idle; while another worker's batch runs,
            # this one starts at once with what is queued (a stream left waiting is a core doing nothing).
            deadline = time.perf_counter() + (self.max_wait if self._running == 0 else 0.0)
            stop = False
            while rows < self.max_batch:
                remaining = deadline - time.perf_counter()
                try:
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if not self._take(nxt):
                    continue
                if rows + nxt.rows > self.max_batch:
                    carried = nxt  # starts the next batch
                    break
                jobs.append(nxt)
                rows += nxt.rows
            self._run(jobs)
            if stop:
                if carried is not None:
                    self._run([carried])
                return

    def _run(self, jobs: list[_Job]) -> None:
        with self._counting:
            self._running += 1
        try:
            pixels = np.concatenate([job.pixels for job in jobs]) if len(jobs) > 1 else jobs[0].pixels
            outputs = self._forward_padded(pixels)
        except BaseException as e:  # the model failed: every request of the batch hears why
            for job in jobs:
                job.future.set_exception(e)
            return
        finally:
            with self._counting:
                self._running -= 1
        start = 0
        for job in jobs:
            job.future.set_result({name: value[start : start + job.rows] for name, value in outputs.items()})
            start += job.rows

    def _forward_padded(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(pixels), self.max_batch):
            chunk = pixels[start : start + self.max_batch]
            n = len(chunk)
            size = next(s for s in self.sizes if s >= n) if self.pads() else n
            if size > n:
                chunk = np.concatenate([chunk, np.zeros((size - n, *self.image_shape), dtype=chunk.dtype)])
            with self._counting:
                self.stats.batches += 1
                self.stats.rows += n
                self.stats.padded_rows += size
            for name, value in self.forward(chunk).items():
                parts.setdefault(name, []).append(value[:n])
        return {name: np.concatenate(values) for name, values in parts.items()}
