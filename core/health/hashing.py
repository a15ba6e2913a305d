"""Decode and hash every image once: SHA-256 of the bytes, a 32 px thumbnail, its perceptual hash and colour.

Decoding goes through `core.data.imaging.load_square`, the function training uses, so a file that
fails here is exactly a file training skips, for the same reason.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.datasets import DatasetIndex
from core.data.imaging import GRAYSCALE_MODES, ImageError, load_square
from core.errors import Cancelled
from core.fileio import atomic_path
from core.health import imagehash
from core.health.table import CACHE_VERSION, CHUNK, cache_file, report

NEAR_BITS = 10  # of 64 perceptual-hash bits: candidates for "the same picture"
NEAR_CORRELATION = 0.92  # ...confirmed when their thumbnails also correlate this well
NEAR_COLOUR_LEVELS = 24.0  # ...and their mean R, G and B are within this many levels of 255
GRAY_MEAN_CHROMA = 3.0  # mean max(R,G,B)-min(R,G,B) over the thumbnail, in gray levels
GRAY_PEAK_CHROMA = 16.0  # and its 99th percentile: a gray photo saved as RGB has only JPEG noise


class CheckCancelled(Cancelled):
    """The health check was stopped on request (`should_stop`)."""


@dataclass
class Analysis:
    sha256: np.ndarray  # '<U64', "" when unreadable
    phash: np.ndarray  # uint64
    thumbs: np.ndarray  # (n, 32, 32) uint8 grayscale
    chroma_mean: np.ndarray  # float32
    colour: np.ndarray  # (n, 3) float32: the mean R, G, B of the thumbnail
    chroma_peak: np.ndarray  # float32
    readable: np.ndarray  # bool
    reason: np.ndarray  # '<U...'


def analyse(index: DatasetIndex, progress, cache_root, workers, should_stop) -> tuple[Analysis, bool]:
    cache = cache_file(cache_root, index, "health", "npz")
    if cache is not None and cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as data:
                if int(data["version"]) == CACHE_VERSION and len(data["readable"]) == len(index.entries):
                    report(progress, "hashing", len(index.entries), len(index.entries))
                    return Analysis(**{k: data[k] for k in Analysis.__dataclass_fields__}), True
        except (OSError, ValueError, KeyError):
            pass
    n = len(index.entries)
    sha = [""] * n
    reason = [""] * n
    readable = np.zeros(n, bool)
    thumbs = np.zeros((n, imagehash.THUMB, imagehash.THUMB), np.uint8)
    chroma_mean = np.zeros(n, np.float32)
    mean_rgb = np.zeros((n, 3), np.float32)
    chroma_peak = np.zeros(n, np.float32)
    paths = [index.root / e.path for e in index.entries]
    chunks = [range(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]
    workers = workers or min(4, os.cpu_count() or 1)
    done = 0
    report(progress, "hashing", 0, n)
    # Threads, not processes: Pillow and hashlib release the GIL, and nothing needs spawning. (load_square's
    # warnings.catch_warnings is not thread-safe; the worst case leaves its "ignore bomb warning" filter set.)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_analyse_chunk, [paths[i] for i in chunk]) for chunk in chunks]
        try:
            for chunk, future in zip(chunks, futures, strict=True):
                for i, (digest, gray, colour, problem) in zip(chunk, future.result(), strict=True):
                    if problem is not None:
                        reason[i] = problem
                        continue
                    sha[i] = digest
                    readable[i] = True
                    thumbs[i] = gray
                    chroma_mean[i], chroma_peak[i], mean_rgb[i] = colour
                done += len(chunk)
                report(progress, "hashing", done, n)
                if should_stop and should_stop():
                    raise CheckCancelled("health check stopped on request")
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    hashes = np.zeros(n, np.uint64)
    if readable.any():
        hashes[readable] = imagehash.phash(thumbs[readable])
    analysis = Analysis(
        sha256=np.array(sha, dtype="<U64"),
        phash=hashes,
        thumbs=thumbs,
        chroma_mean=chroma_mean,
        colour=mean_rgb,
        chroma_peak=chroma_peak,
        readable=readable,
        reason=np.array(reason, dtype=str),
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp, open(tmp, "wb") as f:
            np.savez(f, version=CACHE_VERSION, **{k: getattr(analysis, k) for k in Analysis.__dataclass_fields__})
    return analysis, False


def _analyse_chunk(
    paths: list[Path],
) -> list[tuple[str, np.ndarray | None, tuple[float, float, np.ndarray] | None, str | None]]:
    """Per file: (sha256, grayscale thumbnail, (mean and 99th percentile chroma, mean RGB), None), or
    ("", None, None, reason).

    The per-image arithmetic runs here, in the worker threads, not in the thread collecting results.
    """
    out = []
    for path in paths:
        try:
            data = path.read_bytes()
            thumb = load_square(data, imagehash.THUMB)
        except ImageError as e:
            out.append(("", None, None, str(e)))
            continue
        except OSError as e:
            out.append(("", None, None, f"cannot read the file ({e.strerror or e})"))
            continue
        except Exception as e:  # a decoder bug must cost one image, not the check
            out.append(("", None, None, f"could not decode ({type(e).__name__}: {e})"))
            continue
        gray = np.clip(imagehash.grayscale(thumb), 0, 255).round().astype(np.uint8)
        chroma = thumb.max(axis=2).astype(np.float32) - thumb.min(axis=2)
        colour = (float(chroma.mean()), float(np.percentile(chroma, 99)), thumb.reshape(-1, 3).mean(axis=0))
        out.append((hashlib.sha256(data).hexdigest(), gray, colour, None))
    return out


def grayscale_flags(table: pd.DataFrame, analysis: Analysis) -> np.ndarray:
    stored_gray = table["mode"].isin(GRAYSCALE_MODES).to_numpy()
    looks_gray = (analysis.chroma_mean <= GRAY_MEAN_CHROMA) & (analysis.chroma_peak <= GRAY_PEAK_CHROMA)
    return analysis.readable & (stored_gray | looks_gray)


def duplicate_groups(analysis: Analysis) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """(exact groups, near groups, all groups): positions into the dataset's entries."""
    positions = np.flatnonzero(analysis.readable)
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i in positions:
        by_digest[str(analysis.sha256[i])].append(int(i))
    exact = sorted(g for g in by_digest.values() if len(g) > 1)
    exact_pairs = [(g[0], other) for g in exact for other in g[1:]]

    candidates = imagehash.near_pairs(analysis.phash[positions], NEAR_BITS)
    candidates = positions[candidates] if len(candidates) else np.empty((0, 2), np.int64)
    if len(candidates):
        alike = imagehash.correlation(analysis.thumbs, candidates) >= NEAR_CORRELATION
        # the hash and the correlation see grayscale only: two pictures of one pattern in other colours are not
        # "the same picture" (a re-encoded or slightly re-coloured copy stays within a few levels)
        shift = np.abs(analysis.colour[candidates[:, 0]] - analysis.colour[candidates[:, 1]]).max(axis=1)
        alike &= shift <= NEAR_COLOUR_LEVELS
        different_bytes = analysis.sha256[candidates[:, 0]] != analysis.sha256[candidates[:, 1]]
        candidates = candidates[alike & different_bytes]
    n = len(analysis.readable)
    all_pairs = np.concatenate([np.asarray(exact_pairs, np.int64).reshape(-1, 2), candidates.reshape(-1, 2)])
    combined = imagehash.groups(n, all_pairs)
    near = [g for g in combined if len({str(analysis.sha256[i]) for i in g}) > 1]
    return exact, near, combined
