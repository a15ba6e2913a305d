"""What every endpoint shares: decode off the event loop, batch, answer, count and log.

Endpoints turn their protocol's input into encoded files or pixel arrays and call `Service`;
it decodes them in worker threads (a bad file raises `InputError` naming it), queues the pixels
on the model's batcher, shapes the answers, and hands one log record per image to the log writer.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np

from core.imaging import ImageError
from core.serving.batching import BatcherClosed
from core.serving.engine import Answer, Decoded
from core.serving.log import LogRecord, LogWriter
from core.serving.registry import ModelRegistry, Route

MAX_IMAGES_PER_REQUEST = 256


class InputError(ValueError):
    """A request input the server cannot use (HTTP 400); the message says which and why."""


@dataclass
class Counters:
    """Request counters for the server's status (and the Serve page's request rate)."""

    requests: int = 0
    images: int = 0
    client_errors: int = 0
    server_errors: int = 0
    rejected: int = 0
    by_protocol: dict[str, int] = field(default_factory=dict)
    _recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20000), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, protocol: str, status: int, images: int = 0) -> None:
        with self._lock:
            self.requests += 1
            self.images += images
            self.by_protocol[protocol] = self.by_protocol.get(protocol, 0) + 1
            if status == 503:
                self.rejected += 1
            elif 400 <= status < 500:
                self.client_errors += 1
            elif status >= 500:
                self.server_errors += 1
            self._recent.append(time.time())

    def rate(self, window: float = 10.0) -> float:
        """Requests per second over the last `window` seconds."""
        cutoff = time.time() - window
        with self._lock:
            return sum(1 for t in self._recent if t >= cutoff) / window

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "images": self.images,
            "client_errors": self.client_errors,
            "server_errors": self.server_errors,
            "rejected": self.rejected,
            "by_protocol": dict(self.by_protocol),
            "rate": round(self.rate(), 2),
        }


class Service:
    """The registry, the log writer and the counters, behind the calls the endpoints make."""

    def __init__(self, registry: ModelRegistry, writer: LogWriter | None = None, data_root=None):
        self.registry = registry
        self.writer = writer
        self.data_root = data_root
        self.counters = Counters()

    async def decode_files(self, route: Route, files: list[tuple[str, bytes]]) -> list[Decoded | ImageError]:
        """Decode encoded files in a worker thread; a bad one becomes its ImageError (the rest still decode)."""
        model = route.loaded.model

        def work() -> list[Decoded | ImageError]:
            out: list[Decoded | ImageError] = []
            for name, data in files:
                try:
                    out.append(model.decode(data, name))
                except ImageError as e:
                    out.append(e)
            return out

        self._check_count(len(files))
        return await anyio.to_thread.run_sync(work)

    async def decode_strict(self, route: Route, files: list[tuple[str, bytes]]) -> list[Decoded]:
        """Decode all or fail: the first unreadable file raises InputError naming it."""
        decoded = await self.decode_files(route, files)
        for (name, _), item in zip(files, decoded, strict=True):
            if isinstance(item, ImageError):
                raise InputError(f"{name}: {item}")
        return decoded  # type: ignore[return-value]

    async def decode_pixels(self, route: Route, arrays: list[tuple[str, np.ndarray]]) -> list[Decoded]:
        """Raw (H, W, 3) pixel arrays -> model pixels (resized as photos are). Raises InputError."""
        model = route.loaded.model
        self._check_count(len(arrays))

        def work() -> list[Decoded]:
            out = []
            for name, array in arrays:
                try:
                    out.append(model.from_pixels(array, name))
                except ImageError as e:
                    raise InputError(f"{name}: {e}") from None
            return out

        return await anyio.to_thread.run_sync(work)

    @staticmethod
    def _check_count(count: int) -> None:
        if count == 0:
            raise InputError("no image in the request")
        if count > MAX_IMAGES_PER_REQUEST:
            raise InputError(f"at most {MAX_IMAGES_PER_REQUEST} images per request. Received: {count}")

    async def answer(
        self, route: Route, decoded: list[Decoded], started: float, top_k: int = 3, source: str = "api"
    ) -> tuple[Route, list[Answer]]:
        """Run the decoded images through the model's batcher; log each; return the route that answered."""
        pixels = np.stack([d.pixels for d in decoded])
        for _ in range(3):
            try:
                outputs = await route.loaded.batcher.run(pixels)
                break
            except BatcherClosed:  # the alias moved while this request decoded: ask again
                route = self.registry.get(route.name)
        else:
            raise RuntimeError("the model kept being swapped; try again")
        answers = route.loaded.model.answers(outputs, top_k)
        latency_ms = (time.perf_counter() - started) * 1000.0
        if self.writer is not None:
            for item, ans in zip(decoded, answers, strict=True):
                self.writer.add(
                    LogRecord(
                        model=route.name,
                        run_id=route.loaded.run_id,
                        source=source,
                        label=ans.label,
                        top_k=ans.top,
                        max_probability=ans.max_probability,
                        entropy=ans.entropy,
                        ood_score=ans.ood_score,
                        ood_flag=ans.ood_flag,
                        latency_ms=latency_ms,
                        image_sha256=item.sha256,
                        name=item.name,
                        width=item.width,
                        height=item.height,
                        features=ans.projection,
                    )
                )
        return route, answers
