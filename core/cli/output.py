"""How the commands print: JSON on stdout for scripts, aligned tables for people, errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from core.errors import EXIT_BUG, EXIT_FAILED, FloraError

EXIT_OK, EXIT_USAGE = 0, 2  # beside core.errors' EXIT_FAILED (a user error) and EXIT_BUG
BUG_NOTE = "error: this is a bug in Flora (the traceback above says where)"


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, headers in capitals."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def cell(value: Any) -> str:
    """A table cell: '-' for nothing, 4 decimals for a float."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def stage_progress(stage: str, done: int, total: int) -> None:
    """A long command's progress on one line of stderr (a terminal only: scripts reading stderr get no noise)."""
    if sys.stderr.isatty():
        print(f"\r{stage}: {done}/{total}   ", end="", file=sys.stderr, flush=True)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAILED


def job_failed(what: str, error: Exception) -> int:
    """A job that failed (a run, a sweep: recorded as failed, its traceback logged): why, and the exit code."""
    print(f"error: {what} failed: {type(error).__name__}: {error}", file=sys.stderr)
    if isinstance(error, FloraError):
        return error.exit_code
    print(BUG_NOTE, file=sys.stderr)
    return EXIT_BUG
