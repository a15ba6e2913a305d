"""Atomic writes and torn-line-tolerant reads: readers never see half a file."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core.errors import Unavailable


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`.

    Whatever is written to the yielded path appears at `path` all at once, or not at all.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def umask() -> int:
    """This process's file-creation mask (os.umask can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


def update_json(path: str | os.PathLike, change: Callable[[Any], Any]) -> None:
    """Read, change and write back a JSON file that several processes may change at once, none of their changes
    lost: under an exclusive lock (flock) on the folder holding it, so no lock file lies beside it. `change` gets
    what the file holds ({} when missing or unreadable) and returns what to write (None: write nothing).

    For a file that must stay a file (a dataset's flora.json); Flora's own shared stores are rows in
    `core.shared_store` instead.
    """
    path = Path(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        changed = change(read_json(path, default={}))
        if changed is not None:
            write_json_atomic(path, changed)
    finally:
        os.close(folder)  # closing releases the lock


class UnreadableFile(Unavailable, ValueError):
    """A file that exists but cannot be read as what it should be; the message says why."""


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file that must be whole.

    Raises:
        FileNotFoundError: it is not there.
        UnreadableFile: it is cut short, not JSON, not UTF-8, or cannot be opened.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path.name} is not UTF-8 text") from None
    except OSError as e:
        raise UnreadableFile(f"{path.name} cannot be read ({e.strerror or e})") from None
    if not text.strip():
        raise UnreadableFile(f"{path.name} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        cut = not text.rstrip().endswith(("}", "]"))  # a whole document ends with its closing bracket
        raise UnreadableFile(
            f"{path.name} is {'cut short' if cut else 'not valid JSON'} (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from None


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read a JSON file; `default` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return default


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON object as a line and flush it to disk."""
    line = json.dumps(record, separators=(",", ":"), default=_json_default) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines file, skipping a torn last line and any line that is not an object."""
    records: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a writer is mid-line, or the process died there
                if isinstance(record, dict):
                    records.append(record)
    except FileNotFoundError:
        pass
    return records


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays reach us from Keras logs
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
