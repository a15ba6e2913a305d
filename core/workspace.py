"""What the app remembers between sessions: the dataset picked last, folders used from outside data/,
the training settings last launched on each dataset, and small preferences (the teaching notes).

A person who adds `../shared/data/flowers5-128` by its path expects to find it again after a reload,
in a second tab, or on the Augmentation and Train pages tomorrow; one who launched a 64 px run from
random weights expects the form to say so again next time. Each person's workspace is theirs (the person
at this machine, "local", is also the command line's user; each person signed in to a shared Flora has
their own, so one student's settings never fill another's form), kept in the data folder's shared store
(`core.shared_store`) as one row per thing remembered (the current dataset, each folder, each dataset's
settings, each preference), written only when it changes: two tabs of one person changing different things
at once keep both.

Workspaces kept before the store (`<data>/.flora/workspace.json` for "local", `<data>/.flora/workspaces/<hash
of the name>.json` for everyone else) are imported the first time it is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

from core.fileio import read_json
from core.paths import flora_dir
from core.shared_store import SharedStore, Table
from core.sharing.people import LOCAL_USER, layer_of

STATE_FILE = "workspace.json"  # in <data>/.flora/: the person at this machine's, before the shared store
PEOPLE_DIR = "workspaces"  # in <data>/.flora/: everyone else's, one file each, before the shared store
MAX_FOLDERS = 12
MAX_SETTINGS = 50  # datasets whose last training settings are kept
CURRENT, FOLDER, TRAIN, PREFERENCE = "current", "folder:", "train:", "pref:"  # what a row holds (its `field`)


def _person_key(person: str | None) -> str:
    """How a person's rows are keyed: "local", or a hash of their name (the name of their file before the store)."""
    person = layer_of(person)
    return LOCAL_USER if person == LOCAL_USER else hashlib.sha256(person.encode()).hexdigest()[:16]


def _import_files(db: sqlite3.Connection, data_root: Path) -> None:
    files = [(LOCAL_USER, flora_dir(data_root) / STATE_FILE)]
    files += [(path.stem, path) for path in sorted((flora_dir(data_root) / PEOPLE_DIR).glob("*.json"))]
    for person, path in files:
        state = _valid(read_json(path, default={}))
        rows = [(CURRENT, state["current"])] if state["current"] else []
        rows += [(FOLDER + folder, None) for folder in reversed(state["folders"])]  # the most recent last
        rows += [(TRAIN + dataset, config) for dataset, config in state["train_settings"].items()]
        rows += [(PREFERENCE + name, value) for name, value in state["preferences"].items()]
        db.executemany(
            "INSERT OR IGNORE INTO workspace (person, field, value, seq) VALUES (?, ?, ?, ?)",
            [(person, field, json.dumps(value), seq) for seq, (field, value) in enumerate(rows, 1)],
        )


WORKSPACE = Table(
    "workspace",
    (
        "CREATE TABLE workspace (person TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, "
        "seq INTEGER NOT NULL, PRIMARY KEY (person, field))",
    ),
    _import_files,
)


def remember_dataset(data_root: str | os.PathLike, path: str | os.PathLike, person: str | None = None) -> None:
    """Record `path` as the dataset picked last; a folder outside `data_root` joins the remembered folders."""
    path = str(Path(path).expanduser().resolve())
    inside = _inside(path, data_root)
    state = _load(data_root, person)
    if state["current"] == path and (state["folders"][:1] == [path] if not inside else path not in state["folders"]):
        return  # nothing changes: nothing written
    key = _person_key(person)
    with SharedStore.of_data(data_root).write(WORKSPACE) as db:
        _put(db, key, CURRENT, path)
        if inside:
            db.execute("DELETE FROM workspace WHERE person = ? AND field = ?", (key, FOLDER + path))
        else:
            _put(db, key, FOLDER + path, None)
            _keep_newest(db, key, FOLDER, MAX_FOLDERS)


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
    key = _person_key(person)
    with SharedStore.of_data(data_root).write(WORKSPACE) as db:
        db.execute("DELETE FROM workspace WHERE person = ? AND field = ?", (key, FOLDER + path))
        db.execute(
            "DELETE FROM workspace WHERE person = ? AND field = ? AND value = ?", (key, CURRENT, json.dumps(path))
        )


def remember_train_settings(
    data_root: str | os.PathLike, dataset: str | os.PathLike, config: dict, person: str | None = None
) -> None:
    """Keep the training settings (a TrainConfig dict) last launched on `dataset`."""
    dataset = str(Path(dataset).expanduser().resolve())
    if train_settings(data_root, dataset, person) == config:
        return
    key = _person_key(person)
    with SharedStore.of_data(data_root).write(WORKSPACE) as db:
        _put(db, key, TRAIN + dataset, config)
        _keep_newest(db, key, TRAIN, MAX_SETTINGS)


def train_settings(data_root: str | os.PathLike, dataset: str | os.PathLike, person: str | None = None) -> dict | None:
    """The TrainConfig dict last launched on `dataset`, if any."""
    found = _get(data_root, person, TRAIN + str(Path(dataset).expanduser().resolve()))
    return found if isinstance(found, dict) else None


def preference(data_root: str | os.PathLike, name: str, default=None, person: str | None = None):
    """A small remembered preference (e.g. whether the teaching notes are shown)."""
    found = _get(data_root, person, PREFERENCE + name, _MISSING)
    return default if found is _MISSING else found


def set_preference(data_root: str | os.PathLike, name: str, value, person: str | None = None) -> None:
    if preference(data_root, name, None, person) == value:
        return
    with SharedStore.of_data(data_root).write(WORKSPACE) as db:
        _put(db, _person_key(person), PREFERENCE + name, value)


def forget_person(data_root: str | os.PathLike, person: str | None = None) -> None:
    """Forget everything remembered for `person` (a first visit again)."""
    with SharedStore.of_data(data_root).write(WORKSPACE) as db:
        db.execute("DELETE FROM workspace WHERE person = ?", (_person_key(person),))


_MISSING = object()


def _put(db: sqlite3.Connection, key: str, field: str, value) -> None:
    """Set one row, as the person's newest (inside the caller's transaction)."""
    (newest,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM workspace WHERE person = ?", (key,)).fetchone()
    db.execute(
        "INSERT INTO workspace (person, field, value, seq) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(person, field) DO UPDATE SET value = excluded.value, seq = excluded.seq",
        (key, field, json.dumps(value), newest + 1),
    )


def _keep_newest(db: sqlite3.Connection, key: str, prefix: str, count: int) -> None:
    db.execute(
        "DELETE FROM workspace WHERE person = ? AND field GLOB ? AND seq NOT IN "
        "(SELECT seq FROM workspace WHERE person = ? AND field GLOB ? ORDER BY seq DESC LIMIT ?)",
        (key, prefix + "*", key, prefix + "*", count),
    )


def _get(data_root: str | os.PathLike, person: str | None, field: str, default=None):
    with SharedStore.of_data(data_root).read(WORKSPACE) as db:
        row = db.execute(
            "SELECT value FROM workspace WHERE person = ? AND field = ?", (_person_key(person), field)
        ).fetchone()
    return json.loads(row[0]) if row else default


def _load(data_root: str | os.PathLike, person: str | None = None) -> dict:
    """The person's current dataset and remembered folders, the most recent first."""
    with SharedStore.of_data(data_root).read(WORKSPACE) as db:
        rows = db.execute(
            "SELECT field, value FROM workspace WHERE person = ? AND (field = ? OR field GLOB ?) ORDER BY seq DESC",
            (_person_key(person), CURRENT, FOLDER + "*"),
        ).fetchall()
    current = next((json.loads(value) for field, value in rows if field == CURRENT), None)
    folders = [field[len(FOLDER) :] for field, _ in rows if field.startswith(FOLDER)]
    return {"current": current if isinstance(current, str) else None, "folders": folders}


def _valid(raw) -> dict:
    """A workspace file from before the store, whatever it holds (a hand-edited or foreign file reads as empty)."""
    raw = raw if isinstance(raw, dict) else {}
    current, folders = raw.get("current"), raw.get("folders")
    settings, preferences = raw.get("train_settings"), raw.get("preferences")
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
