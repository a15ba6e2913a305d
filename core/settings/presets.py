"""Named augmentation presets: the built-in ones and those saved from the Augmentation page.

Saved presets live in the data folder's shared store (`core.shared_store`), one row each, so the Train page
(and another tab, or the app after a restart) finds what the Augmentation page saved, and a class saving at
once keeps every preset. Each records who saved it: on a shared Flora only that person (or an admin) may save
over it; everyone may use it. Presets saved before the store, in `<data>/.flora/augment_presets.json`
({"gentle flips": {"owner": "alice", "config": {...}}}; a bare config: from before owners, "local"'s), are
imported the first time it is opened.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

from core.fileio import read_json
from core.paths import flora_dir
from core.settings.config import AUGMENT_PRESETS, AugmentConfig, ConfigError
from core.shared_store import SharedStore, Table
from core.sharing.people import LOCAL_USER, same_person

PRESETS_FILE = "augment_presets.json"  # in <data>/.flora/: where presets were kept before the shared store
_NAME = re.compile(r"^[\w][\w .-]{0,39}$")


def _import_file(db: sqlite3.Connection, data_root: Path) -> None:
    raw = read_json(flora_dir(data_root) / PRESETS_FILE, default={}) or {}
    for name, values in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(values, dict):
            continue
        if isinstance(values.get("config"), dict):
            owner, config = str(values.get("owner") or LOCAL_USER), values["config"]
        else:
            owner, config = LOCAL_USER, values
        db.execute(
            "INSERT OR IGNORE INTO presets (name, owner, config) VALUES (?, ?, ?)", (name, owner, json.dumps(config))
        )


PRESETS = Table(
    "presets",
    ("CREATE TABLE presets (name TEXT PRIMARY KEY, owner TEXT NOT NULL, config TEXT NOT NULL)",),
    _import_file,
)


def saved_presets(data_root: str | os.PathLike) -> dict[str, AugmentConfig]:
    """Presets saved by users, by name (unreadable entries are skipped)."""
    presets = {}
    for name, values in _stored(data_root).items():
        try:
            presets[name] = AugmentConfig.from_dict(values["config"])
        except (ConfigError, TypeError):
            continue
    return presets


def preset_owner(data_root: str | os.PathLike, name: str) -> str | None:
    """Who saved the preset `name` (None: a built-in one, or none by that name)."""
    if name in AUGMENT_PRESETS:
        return None
    entry = _stored(data_root).get(name)
    return entry["owner"] if entry else None


def _stored(data_root: str | os.PathLike) -> dict[str, dict]:
    with SharedStore.of_data(data_root).read(PRESETS) as db:
        rows = db.execute("SELECT name, owner, config FROM presets ORDER BY name").fetchall()
    return {name: {"owner": owner, "config": _config(config)} for name, owner, config in rows}


def _config(text: str) -> dict:
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return config if isinstance(config, dict) else {}


def all_presets(data_root: str | os.PathLike) -> dict[str, AugmentConfig]:
    """Built-in presets first, then saved ones (a saved name never hides a built-in one)."""
    presets = dict(AUGMENT_PRESETS)
    for name, config in saved_presets(data_root).items():
        presets.setdefault(name, config)
    return presets


def save_preset(
    data_root: str | os.PathLike,
    name: str,
    config: AugmentConfig,
    owner: str = LOCAL_USER,
    may_replace_any: bool = False,
) -> str:
    """Save `config` under `name` as `owner`'s and return the name.

    Raises:
        ConfigError: the name is empty, too long, has odd characters, is a built-in preset's, or is someone
            else's preset (unless `may_replace_any`: an admin).
    """
    name = name.strip()
    if not _NAME.match(name):
        raise ConfigError(f"a preset name is 1-40 letters, digits, spaces, '.', '-' or '_'. Received: {name!r}")
    if name in AUGMENT_PRESETS:
        raise ConfigError(f"{name!r} is a built-in preset; choose another name")
    with SharedStore.of_data(data_root).write(PRESETS) as db:
        earlier = db.execute("SELECT owner, config FROM presets WHERE name = ?", (name,)).fetchone()
        if earlier and not same_person(earlier[0], owner) and not may_replace_any:
            if _config(earlier[1]) == config.to_dict():
                return name  # the very same settings: nothing to replace
            raise ConfigError(
                f"{name!r} is {earlier[0]}'s preset: only they or an admin can change it; choose another name"
            )
        keep_owner = earlier[0] if earlier else owner  # an admin's change keeps it its maker's
        db.execute(
            "INSERT INTO presets (name, owner, config) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, config = excluded.config",
            (name, keep_owner, json.dumps(config.to_dict())),
        )
    return name


def preset_name_for(config: AugmentConfig, data_root: str | os.PathLike) -> str | None:
    """The name of a preset equal to `config`, if there is one."""
    for name, preset in all_presets(data_root).items():
        if preset == config:
            return name
    return None
