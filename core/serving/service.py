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

from core.data.imaging import ImageError, ImageHeader, ImageTooLarge
from core.errors import InvalidInput
from core.feedback import SERVER_CLIENT, NotYourFeedback, add_feedback, list_feedback
from core.paths import relative_to_data
from core.serving.batching import BatcherClosed
from core.serving.body_parsing import BodyParser
from core.serving.decode_budget import DEFAULT_REQUEST_PIXELS, DecodeBudget
from core.serving.engine import Answer, Decoded
from core.serving.log import LogRecord, LogWriter
from core.serving.quota import FeedbackQuota
from core.serving.registry import ModelRegistry, Route

MAX_IMAGES_PER_REQUEST = 256
FEEDBACK_WORKERS = 2  # feedback calls decoding or writing at once (each holds a worker thread)


class InputError(InvalidInput):
    """A request input the server cannot use (HTTP 400); the message says which and why."""


class TooManyPixels(InputError):
    """An image over the pixel limit, or a request whose images together are (HTTP 413)."""


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

    def __init__(
        self,
        registry: ModelRegistry,
        writer: LogWriter | None = None,
        data_root=None,
        budget: DecodeBudget | None = None,
        max_request_pixels: int = DEFAULT_REQUEST_PIXELS,
        quota: FeedbackQuota | None = None,
    ):
        self.registry = registry
        self.writer = writer
        self.data_root = data_root
        self.counters = Counters()
        self.budget = budget or DecodeBudget()
        self.max_request_pixels = max_request_pixels
        self.quota = quota or FeedbackQuota()
        # Feedback stores photos for retraining: closed when the server is reachable from the network
        # without an API key (create_app decides); the reason is what a refused client reads.
        self.feedback_closed_reason: str | None = None
        self.feedback_limiter = anyio.CapacityLimiter(FEEDBACK_WORKERS)
        self.body_parser = BodyParser()

    def close(self) -> None:
        """Stop the helper processes that parse large bodies (the registry and the log writer close themselves)."""
        self.body_parser.close()

    @property
    def feedback_open(self) -> bool:
        return self.feedback_closed_reason is None

    def keep_feedback(
        self, route: Route, label: str, data: bytes | None, name: str | None, sha: str, client: str
    ) -> dict[str, Any]:
        """Keep a corrected photo (and/or label its predictions in the log); in a worker thread.

        Raises:
            InputError (TooManyPixels): the photo cannot be read, or is over the pixel limit.
            QuotaExceeded: the client's or the dataset's feedback quota is used up.
        """

        run = route.loaded.model.run
        kept = None
        if data is not None:
            try:
                header = route.loaded.model.read_header(data)
            except ImageTooLarge as e:
                raise TooManyPixels(f"{name}: {e}") from None
            except ImageError as e:
                raise InputError(f"{name}: {e}") from None
            photos = list_feedback(self.data_root, run.dataset_path)
            held = sum(photo.path.stat().st_size for photo in photos if photo.path.exists())
            self.quota.admit(client, len(data), len(photos), held)
            try:
                with self.budget.hold(header.decoded_bytes):
                    photo = add_feedback(
                        self.data_root,
                        run.dataset_path,
                        run.classes,
                        label,
                        data,
                        name,
                        run.train_config.val_fraction,
                        by=SERVER_CLIENT,
                    )
            except (ImageError, NotYourFeedback) as e:
                raise InputError(f"{name}: {e}") from None
            # the reply goes to whoever sent it: where it is kept from the data folder on, not the server's layout
            sha, kept = photo.sha256, {"path": relative_to_data(photo.path, self.data_root), "split": photo.split}
        else:
            self.quota.admit(client, 0, 0, 0)
        updated = 0
        if self.writer is not None:
            self.writer.flush()
            updated = self.writer.log.add_feedback(label, image_sha256=sha)
        return {"label": label, "image_sha256": sha, "log_rows_updated": updated, "photo_kept": kept}

    async def decode_files(self, route: Route, files: list[tuple[str, bytes]]) -> list[Decoded | ImageError]:
        """Decode encoded files in a worker thread; a bad one becomes its ImageError (the rest still decode).

        Each file's header is read first: a request whose images together are over `max_request_pixels`
        is refused whole (TooManyPixels) before any is decoded, and each decode holds its share of the
        process's decode budget (waiting for room; DecodeBusy when there is none for too long).
        """
        model = route.loaded.model

        def work() -> list[Decoded | ImageError]:
            headers: list[ImageHeader | ImageError] = []
            for _, data in files:
                try:
                    headers.append(model.read_header(data))
                except ImageError as e:
                    headers.append(e)
            total = sum(h.pixels for h in headers if isinstance(h, ImageHeader))
            if total > self.max_request_pixels:
                raise TooManyPixels(
                    f"the request's images hold {total / 1e6:.0f} megapixels together, over this server's "
                    f"{self.max_request_pixels / 1e6:.0f} MP per request; send fewer or smaller images"
                )
            out: list[Decoded | ImageError] = []
            for (name, data), header in zip(files, headers, strict=True):
                if isinstance(header, ImageError):
                    out.append(header)
                    continue
                try:
                    with self.budget.hold(header.decoded_bytes):
                        out.append(model.decode(data, name, header))
                except ImageError as e:
                    out.append(e)
            return out

        self._check_count(len(files))
        return await anyio.to_thread.run_sync(work)

    async def decode_strict(self, route: Route, files: list[tuple[str, bytes]]) -> list[Decoded]:
        """Decode all or fail: the first unreadable file raises InputError naming it (TooManyPixels: too large)."""
        decoded = await self.decode_files(route, files)
        for (name, _), item in zip(files, decoded, strict=True):
            if isinstance(item, ImageTooLarge):
                raise TooManyPixels(f"{name}: {item}")
            if isinstance(item, ImageError):
                raise InputError(f"{name}: {item}")
        return decoded  # type: ignore[return-value]

    async def decode_pixels(self, route: Route, arrays: list[tuple[str, np.ndarray]]) -> list[Decoded]:
        """Raw (H, W, 3) pixel arrays -> model pixels (resized as photos are). Raises InputError."""
        model = route.loaded.model
        self._check_count(len(arrays))
        total = sum(int(np.prod(np.shape(array)[:2])) for _, array in arrays)
        if total > self.max_request_pixels:
            raise TooManyPixels(
                f"the request's pixel arrays hold {total / 1e6:.0f} megapixels, over this server's "
                f"{self.max_request_pixels / 1e6:.0f} MP per request"
            )

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
    def set_level_of(route: Route, value: Any) -> float | None:
        """A request's prediction-set level (0.9, or its alpha 0.1; None: no sets), checked against the route's
        run before anything is decoded. Raises InputError."""
        if value is None or value == "" or value is False:
            return None
        if value is True or (isinstance(value, str) and value.lower() in ("true", "yes")):
            value = 0.9  # asked for sets without a level: the usual 9 times in 10
        try:
            return route.loaded.model.check_set_level(float(value))
        except (TypeError, ValueError) as e:
            raise InputError(f"prediction_set: {e}") from None

    @staticmethod
    def max_error_of(route: Route, value: Any) -> float | None:
        """A request's maximum error among answered photos (0.05, or 5 for 5%; None: answer every photo), checked
        against the route's run before anything is decoded. Raises InputError."""
        if value is None or value == "" or value is False:
            return None
        try:
            return route.loaded.model.check_max_error(float(value))
        except (TypeError, ValueError) as e:
            raise InputError(f"max_error: {e}") from None

    @staticmethod
    def _check_count(count: int) -> None:
        if count == 0:
            raise InputError("no image in the request")
        if count > MAX_IMAGES_PER_REQUEST:
            raise InputError(f"at most {MAX_IMAGES_PER_REQUEST} images per request. Received: {count}")

    async def answer(
        self,
        route: Route,
        decoded: list[Decoded],
        started: float,
        top_k: int = 3,
        source: str = "api",
        set_level: float | None = None,
        max_error: float | None = None,
    ) -> tuple[Route, list[Answer]]:
        """Run the decoded images through the model's batcher; log each; return the route that answered.

        `set_level` (checked by `set_level_of` first): each answer also carries its conformal prediction set;
        `max_error` (checked by `max_error_of`): each answer says whether it is held back, and why."""
        pixels = np.stack([d.pixels for d in decoded])
        route.loaded.model.follow_run()  # test-time augmentation or sets changed since it loaded
        for _ in range(3):
            try:
                outputs = await route.loaded.batcher.run(pixels)
                break
            except BatcherClosed:  # the alias moved while this request decoded: ask again
                route = self.registry.get(route.name)
        else:
            raise RuntimeError("the model kept being swapped; try again")
        if max_error is not None and route.loaded.model.selective is None:  # the alias moved to another run
            max_error = self.max_error_of(route, max_error)
        answers = route.loaded.model.answers(outputs, top_k, set_level, max_error)
        latency_ms = (time.perf_counter() - started) * 1000.0
        if self.writer is not None and not route.loaded.model.multilabel:  # the log keeps one class a photo
            for item, ans in zip(decoded, answers, strict=True):
                self.writer.add(LogRecord.of_answer(route.name, route.loaded.run_id, source, ans, item, latency_ms))
        return route, answers
