"""Exports made from the app, kept with their run: models/<run_id>/exports/<kind>/ (+ export.json)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

from core.export import EXPORT_JSON
from core.fileio import read_json
from core.runs.files import run_files
from core.runs.record import Run


def export_kind(fmt: str, quantize: str | None = None, layout: str | None = None) -> str:
    """A folder name for one export: onnx, tflite-int8, savedmodel-tfserving..."""
    return "-".join(part for part in (fmt, quantize, layout) if part)


def export_dir(run: Run, fmt: str, quantize: str | None = None, layout: str | None = None) -> Path:
    return run_files(run).exports / export_kind(fmt, quantize, layout)


def run_exports(run: Run) -> list[dict[str, Any]]:
    """The run's exports with their export.json, newest first."""
    root = run_files(run).exports
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if not folder.is_dir():  # the web export's zip lies beside its folder
            continue
        record = read_json(folder / EXPORT_JSON)
        if isinstance(record, dict):
            found.append({**record, "kind": folder.name, "folder": str(folder)})
    return sorted(found, key=lambda r: r.get("created", 0), reverse=True)


def zip_folder(folder: str | os.PathLike) -> bytes:
    """The folder as a zip archive in memory (for a download button)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()
