"""The decoded cache on disk: its files, its two formats (raw squares, or each square a JPEG) and the room each needs.

  data/.cache/<fingerprint>-<size>/images.npy   (rows, size, size, 3) uint8, one row per scanned file (raw)
  data/.cache/<fingerprint>-<size>-jpeg/images.jpegs, offsets.npy   each square a q95 JPEG (compact)
  data/.cache/<fingerprint>-<size>[-jpeg]/index.json   readable rows, their paths/labels/splits, failures

The cache's size is known from the photo count and size before anything is decoded, so a disk without room
is said first (NotEnoughDisk, nothing written), and FLORA_CACHE_FORMAT=auto picks the compact format only
when the raw one would not fit.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput, Unavailable

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


class NotEnoughDisk(Unavailable, OSError):
    """The disk lacks the room the decoded cache needs: nothing was written."""


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
        raise InvalidInput(f"{CACHE_FORMAT_ENV} must be raw, jpeg or auto. Received: {asked!r}")
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
