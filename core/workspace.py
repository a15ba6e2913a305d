"""What the app remembers between sessions: the dataset picked last, folders used from outside data/,
the training settings last launched on each dataset, and small preferences (the teaching notes).

A person who adds `../shared/data/flowers5-128` by its path expects to find it again after a reload,
in a second tab, or on the Augmentation and Train pages tomorrow; one who launched a 64 px run from
random weights expects the form to say so again next time. The state is one small JSON file per
person, written atomically and only when it changes: `<data>/.flora/workspace.json` for the person at
this machine ("local", and the command line's user), `<data>/.flora/workspaces/<hash of the name>.json`
for each person signed in to a shared Flora, so one student's settings never fill another's form.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from core.fileio import read_json, write_json_atomic
from core.paths import flora_dir
from core.sharing.people import LOCAL_USER, layer_of

STATE_FILE = "workspace.json"  # in <data>/.flora/: the person at this machine's
PEOPLE_DIR = "workspaces"  # in <data>/.flora/: everyone else's, one file each
MAX_FOLDERS = 12
MAX_SETTINGS = 50  # datasets whose last training settings are kept


def state_file(data_root: str | os.PathLike, person: str | None = None) -> Path:
    """Where `person`'s workspace is kept (None or "local": the person at this machine)."""
    person = layer_of(person)
    if person == LOCAL_USER:
        return flora_dir(data_root) / STATE_FILE
    return flora_dir(data_root) / PEOPLE_DIR / f"{hashlib.sha256(person.encode()).hexdigest()[:16]}.json"


def remember_dataset(data_root: str | os.PathLike, path: str | os.PathLike, person: str | None = None) -> None:
    """Record `path` as the dataset picked last; a folder outside `data_root` joins the remembered folders."""
    path = str(Path(path).expanduser().resolve())
    state = _load(data_root, person)
    folders = [f for f in state["folders"] if f != path]
    if not _inside(path, data_root):
        folders = [path, *folders][:MAX_FOLDERS]
    if state["current"] == path and state["folders"] == folders:
        return
    _save(data_root, person, {**state, "current": path, "folders": folders})


def last_dataset(data_root: str | os.PathLike, person: str | None = None) -> str | None:
    """The dataset picked last, if its folder still exists."""
    current = _load(data_root, person)["current"]
    return current if current and Path(current).is_dir() else None


def remembered_folders(data_root: str | os.PathLike, person: str | None = None) -> list[str]:
    """Dataset folders outside `data_root` used before, most recent first (those still on disk)."""
    return [f for f in _load(data_root, person)["folders"] if Path(f).is_dir()]


def forget_folder(data_root: str | os.PathLike, path: str | os.PathLike, person: str | None = None) -> None:
    """Drop a folder from the remembered ones (the folder itself is untouched)."""
    path = str(Path(path).expanduser().resolve())
    state = _load(data_root, person)
    if path not in state["folders"] and state["current"] != path:
        return
    _save(
        data_root,
        person,
        {
            **state,
            "current": None if state["current"] == path else state["current"],
            "folders": [f for f in state["folders"] if f != path],
        },
    )


def remember_train_settings(
    data_root: str | os.PathLike, dataset: str | os.PathLike, config: dict, person: str | None = None
) -> None:
    """Keep the training settings (a TrainConfig dict) last launched on `dataset`."""
    key = str(Path(dataset).expanduser().resolve())
    state = _load(data_root, person)
    if state["train_settings"].get(key) == config:
        return
    settings = {k: v for k, v in state["train_settings"].items() if k != key}
    settings[key] = config
    _save(data_root, person, {**state, "train_settings": dict(list(settings.items())[-MAX_SETTINGS:])})


def train_settings(data_root: str | os.PathLike, dataset: str | os.PathLike, person: str | None = None) -> dict | None:
    """The TrainConfig dict last launched on `dataset`, if any."""
    return _load(data_root, person)["train_settings"].get(str(Path(dataset).expanduser().resolve()))


def preference(data_root: str | os.PathLike, name: str, default=None, person: str | None = None):
    """A small remembered preference (e.g. whether the teaching notes are shown)."""
    return _load(data_root, person)["preferences"].get(name, default)


def set_preference(data_root: str | os.PathLike, name: str, value, person: str | None = None) -> None:
    state = _load(data_root, person)
    if state["preferences"].get(name) == value:
        return
    _save(data_root, person, {**state, "preferences": {**state["preferences"], name: value}})


def _save(data_root: str | os.PathLike, person: str | None, state: dict) -> None:
    write_json_atomic(state_file(data_root, person), state)


def _load(data_root: str | os.PathLike, person: str | None = None) -> dict:
    raw = read_json(state_file(data_root, person), default={})
    if not isinstance(raw, dict):  # a hand-edited or foreign file: start afresh rather than fail
        raw = {}
    current = raw.get("current")
    folders = raw.get("folders")
    settings = raw.get("train_settings")
    preferences = raw.get("preferences")
    return {
        "current": current if isinstance(current, str) else None,
        "folders": [f for f in folders if isinstance(f, str)] if isinstance(folders, list) else [],
        "train_settings": {k: v for k, v in settings.items() if isinstance(v, dict)}
        if isinstance(settings, dict)
        else {},
        "preferences": preferences if isinstance(preferences, dict) else {},
    }


def _inside(path: str, data_root: str | os.PathLike) -> bool:
    return Path(path).is_relative_to(Path(data_root).expanduser().resolve())
