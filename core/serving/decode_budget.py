"""How much image decoding the server does at once: a byte budget over the whole process.

A 12 KB PNG can say it is 10000 x 10000 pixels. Decoding one held ~0.5 GB; a dozen at once took a
server to 6.7 GB, and glibc kept most of it afterwards. Every decode first reads the image's header
(core.data.imaging.read_header: size, mode, libjpeg's draft scale), then holds that many bytes of this
budget while it decodes. Requests beyond the budget wait their turn (bounded: then 503), so memory
stays within the budget plus the model, whatever arrives. When the last large decode ends the freed
memory is handed back to the operating system.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Iterator

from core.errors import Busy

log = logging.getLogger("flora")

DEFAULT_BUDGET_BYTES = 512 * 1024 * 1024  # decoded bytes in flight across the process
DEFAULT_REQUEST_PIXELS = 200_000_000  # all images of one request together
DEFAULT_WAIT_SECONDS = 30.0  # how long a decode waits for room before the request gets a 503
_TRIM_AFTER_BYTES = 32 * 1024 * 1024  # hand memory back after decodes at least this large


class DecodeBusy(Busy):
    """The decode budget stayed full for the whole wait (HTTP 503 with Retry-After)."""


class DecodeBudget:
    """A counting semaphore in bytes: `with budget.hold(n):` waits until n bytes fit, then holds them."""

    def __init__(self, limit_bytes: int = DEFAULT_BUDGET_BYTES, wait_seconds: float = DEFAULT_WAIT_SECONDS):
        if limit_bytes <= 0:
            raise ValueError(f"the decode budget must be positive. Received: {limit_bytes}")
        self.limit = int(limit_bytes)
        self.wait_seconds = wait_seconds
        self.in_use = 0
        self.peak = 0
        self.waited = 0  # decodes that had to wait for room
        self._large_since_trim = 0
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        """Hold `size` bytes (at most the whole budget: one image over it decodes alone) while decoding.

        Raises:
            DecodeBusy: no room within `wait_seconds`.
        """
        size = max(0, min(int(size), self.limit))
        deadline = time.monotonic() + self.wait_seconds
        with self._condition:
            if self.in_use + size > self.limit:
                self.waited += 1
            while self.in_use + size > self.limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DecodeBusy(
                        f"the server is decoding {self.in_use / 1e6:.0f} MB of other images (its budget is "
                        f"{self.limit / 1e6:.0f} MB); try again in a moment"
                    )
                self._condition.wait(left)
            self.in_use += size
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._condition:
                self.in_use -= size
                if size >= _TRIM_AFTER_BYTES:
                    self._large_since_trim += 1
                trim = self.in_use == 0 and self._large_since_trim > 0
                if trim:
                    self._large_since_trim = 0
                self._condition.notify_all()
            if trim:
                release_memory()

    def to_dict(self) -> dict[str, int]:
        return {"limit_bytes": self.limit, "in_use_bytes": self.in_use, "peak_bytes": self.peak, "waited": self.waited}


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    return _LIBC


def release_memory() -> None:
    """Ask glibc to hand freed heap memory back to the operating system (a no-op elsewhere)."""
    libc = _libc()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def return_large_blocks_to_the_system(threshold: int = 1024 * 1024) -> bool:
    """Make glibc allocate blocks of `threshold` bytes or more with mmap, so freeing one returns it at once.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after which image
    buffers come from the heap and stay in the process when freed: the server that decoded a dozen
    bombs stayed at 5.2 GB. A fixed threshold keeps large buffers out of the heap. Returns False where
    glibc is not the allocator.
    """
    libc = _libc()
    if not (libc and hasattr(libc, "mallopt")):
        return False
    m_mmap_threshold = -3
    return bool(libc.mallopt(m_mmap_threshold, int(threshold)))
