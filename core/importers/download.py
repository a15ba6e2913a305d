"""Download one file over HTTP(S): stream to `<file>.part`, resume with a Range request, verify.

A `.part` file survives an interrupted or stopped download, with a small `.part.json` beside it
(the URL and the server's ETag / Last-Modified), so the next attempt asks only for the rest, and
only if the file on the server is still the same one (If-Range). A file is renamed to its final
name only after its size and SHA-256 match what was expected.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from core import __version__
from core.fileio import read_json, write_json_atomic
from core.importers.common import DownloadError, ImportCancelled, report
from core.progress import StageCallback

_CHUNK = 1 << 20
_ATTEMPTS = 4  # one download call retries (resuming) this many times before giving up
_TIMEOUT = 60.0  # seconds without data before a connection counts as dropped
_USER_AGENT = f"flora/{__version__} (+python urllib)"


class _Dropped(Exception):
    """The connection ended before the whole file arrived (worth resuming)."""


def sha256_file(path: str | os.PathLike, progress: StageCallback | None = None, stage: str = "verifying") -> str:
    """SHA-256 of a file, read in chunks, reporting bytes done."""
    digest = hashlib.sha256()
    total = os.path.getsize(path)
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            report(progress, stage, done, total)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    attempts: int = _ATTEMPTS,
    timeout: float = _TIMEOUT,
) -> tuple[Path, str]:
    """Fetch `url` into `dest`, resuming a `.part` left by an earlier attempt.

    Args:
        url: http(s) or file URL.
        dest: final path; written only once the file verifies.
        expected_size: bytes the file must have, when known.
        expected_sha256: hex digest the file must have, when known.
        progress: called as ("downloading", bytes_done, bytes_total) then ("verifying", ...).
        should_stop: polled between chunks; True keeps the `.part` and raises ImportCancelled.
        attempts: connections tried (each resuming where the last stopped) before giving up.
        timeout: seconds of silence before a connection counts as dropped.

    Returns:
        (dest, its sha256).

    Raises:
        DownloadError: the server refused, the connection kept dropping (the `.part` is kept
            for the next call), or the file did not verify (it is deleted).
        ImportCancelled: `should_stop` returned True (the `.part` is kept).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(attempts):
        try:
            _fetch(url, part, expected_size, progress, should_stop, timeout)
            last_error = None
            break
        except (_Dropped, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code < 500 and e.code != 408:
                raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
            last_error = e
            if attempt + 1 < attempts:
                time.sleep(min(0.2 * 2**attempt, 5.0))
    if last_error is not None:
        have = part.stat().st_size if part.exists() else 0
        kept = f"; {have:,} bytes are kept in {part.name} and the next attempt resumes from there" if have else ""
        raise DownloadError(f"download of {url} failed after {attempts} attempts ({_describe(last_error)}){kept}")
    digest = verify(part, url, expected_size, expected_sha256, progress)
    os.replace(part, dest)
    _meta_path(part).unlink(missing_ok=True)
    return dest, digest


def verify(
    path: Path,
    url: str,
    expected_size: int | None,
    expected_sha256: str | None,
    progress: StageCallback | None = None,
) -> str:
    """Check size and SHA-256; on a mismatch delete the file (and its resume record) and raise."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        discard(path)
        raise DownloadError(
            f"download of {url} has {size:,} bytes, expected {expected_size:,}: "
            "deleted it, run again to download afresh"
        )
    digest = sha256_file(path, progress)
    if expected_sha256 and digest != expected_sha256.lower():
        discard(path)
        raise DownloadError(
            f"download of {url} failed verification: SHA-256 {digest}, expected {expected_sha256}; "
            "deleted it, run again to download afresh"
        )
    return digest


def discard(path: Path) -> None:
    """Delete a (partial) download and its resume record."""
    path.unlink(missing_ok=True)
    _meta_path(path).unlink(missing_ok=True)


def _fetch(url, part: Path, expected_size, progress, should_stop, timeout) -> None:
    meta_path = _meta_path(part)
    meta = read_json(meta_path, default={}) or {}
    have = part.stat().st_size if part.exists() else 0
    if have and meta.get("url") != url:
        discard(part)  # a leftover from another URL: start over
        have, meta = 0, {}
    if have and expected_size is not None and have >= expected_size:
        return  # complete already (verification decides whether it is right)
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        validator = meta.get("etag") or meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part is complete, or wrong (verify says)
            return
        raise
    with response:
        status = getattr(response, "status", 200)
        start = _range_start(response.headers.get("Content-Range")) if status == 206 else 0
        if status == 206 and start != have:
            raise _Dropped(f"server resumed at byte {start}, not {have}")
        if status != 206:
            have = 0  # the server sends the whole file (no range support, or the file changed)
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else (expected_size or 0)
        write_json_atomic(
            meta_path,
            {
                "url": url,
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
                "total": total or None,
            },
        )
        report(progress, "downloading", have, total)
        with open(part, "ab" if have else "wb") as out:
            while True:
                if should_stop and should_stop():
                    raise ImportCancelled(
                        f"download stopped at {have:,} bytes; run it again to resume from {part.name}"
                    )
                try:
                    chunk = response.read(_CHUNK)
                except http.client.IncompleteRead as e:
                    out.write(e.partial)
                    raise _Dropped(f"connection closed after {have + len(e.partial):,} bytes") from None
                if not chunk:
                    break
                out.write(chunk)
                have += len(chunk)
                report(progress, "downloading", have, total)
    if total and have < total:
        raise _Dropped(f"connection closed after {have:,} of {total:,} bytes")


def _range_start(content_range: str | None) -> int:
    # "bytes 100-199/200"
    try:
        return int(content_range.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return -1


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _describe(error: Exception) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return f"cannot reach the server: {error.reason}"
    return str(error) or type(error).__name__
