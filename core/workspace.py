"""What the app remembers between sessions: the dataset picked last, and folders used from outside data/.

A person who adds `../shared/data/flowers5-128` by its path expects to find it again after a reload,
in a second tab, or on the Augmentation and Train pages tomorrow. The state is one small JSON file,
`<data>/.flora/workspace.json`, written atomically and only when it changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.fileio import read_json, write_json_atomic

STATE_FILE = Path(".flora") / "workspace.json"
MAX_FOLDERS = 12


def state_file(data_root: str | os.PathLike) -> Path:
    return Path(data_root) / STATE_FILE


def remember_dataset(data_root: str | os.PathLike, path: str | os.PathLike) -> None:
    """Record `path` as the dataset picked last; a folder outside `data_root` joins the remembered folders."""
    path = str(Path(path).expanduser().resolve())
    state = _load(data_root)
    folders = [f for f in state["folders"] if f != path]
    if not _inside(path, data_root):
        folders = [path, *folders][:MAX_FOLDERS]
    if state["current"] == path and state["folders"] == folders:
        return
    write_json_atomic(state_file(data_root), {"current": path, "folders": folders})


def last_dataset(data_root: str | os.PathLike) -> str | None:
    """The dataset picked last, if its folder still exists."""
    current = _load(data_root)["current"]
    return current if current and Path(current).is_dir() else None


def remembered_folders(data_root: str | os.PathLike) -> list[str]:
    """Dataset folders outside `data_root` used before, most recent first (those still on disk)."""
    return [f for f in _load(data_root)["folders"] if Path(f).is_dir()]


def forget_folder(data_root: str | os.PathLike, path: str | os.PathLike) -> None:
    """Drop a folder from the remembered ones (the folder itself is untouched)."""
    path = str(Path(path).expanduser().resolve())
    state = _load(data_root)
    if path not in state["folders"] and state["current"] != path:
        return
    write_json_atomic(
        state_file(data_root),
        {
            "current": None if state["current"] == path else state["current"],
            "folders": [f for f in state["folders"] if f != path],
        },
    )


def _load(data_root: str | os.PathLike) -> dict:
    raw = read_json(state_file(data_root), default={})
    if not isinstance(raw, dict):  # a hand-edited or foreign file: start afresh rather than fail
        raw = {}
    current = raw.get("current")
    folders = raw.get("folders")
    return {
        "current": current if isinstance(current, str) else None,
        "folders": [f for f in folders if isinstance(f, str)] if isinstance(folders, list) else [],
    }


def _inside(path: str, data_root: str | os.PathLike) -> bool:
    return Path(path).is_relative_to(Path(data_root).expanduser().resolve())
