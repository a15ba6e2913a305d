"""Named augmentation presets: the built-in ones and those saved from the Augmentation page.

Saved presets live in `<data>/.flora/augment_presets.json`, so the Train page (and another tab,
or the app after a restart) finds what the Augmentation page saved. Each records who saved it: on a
shared Flora only that person (or an admin) may save over it; everyone may use it.

  {"gentle flips": {"owner": "alice", "config": {...}}}   (a bare config: from before owners, "local"'s)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.fileio import read_json, write_json_atomic
from core.paths import flora_dir
from core.settings.config import AUGMENT_PRESETS, AugmentConfig, ConfigError
from core.sharing.people import LOCAL_USER, same_person

PRESETS_FILE = "augment_presets.json"  # in <data>/.flora/
_NAME = re.compile(r"^[\w][\w .-]{0,39}$")


def _path(data_root: str | os.PathLike) -> Path:
    return flora_dir(data_root) / PRESETS_FILE


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
    raw = read_json(_path(data_root), default={}) or {}
    stored = {}
    for name, values in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(values, dict):
            continue
        if isinstance(values.get("config"), dict):
            stored[name] = {"owner": str(values.get("owner") or LOCAL_USER), "config": values["config"]}
        else:
            stored[name] = {"owner": LOCAL_USER, "config": values}
    return stored


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
    stored = _stored(data_root)
    earlier = stored.get(name)
    if earlier and not same_person(earlier["owner"], owner) and not may_replace_any:
        if earlier["config"] == config.to_dict():
            return name  # the very same settings: nothing to replace
        raise ConfigError(
            f"{name!r} is {earlier['owner']}'s preset: only they or an admin can change it; choose another name"
        )
    keep_owner = earlier["owner"] if earlier else owner  # an admin's change keeps it its maker's
    stored[name] = {"owner": keep_owner, "config": config.to_dict()}
    write_json_atomic(_path(data_root), stored)
    return name


def delete_preset(
    data_root: str | os.PathLike, name: str, owner: str = LOCAL_USER, may_delete_any: bool = False
) -> None:
    """Delete `owner`'s preset `name`.

    Raises:
        ConfigError: it is someone else's (unless `may_delete_any`: an admin).
    """
    stored = _stored(data_root)
    earlier = stored.get(name)
    if earlier is None:
        return
    if not same_person(earlier["owner"], owner) and not may_delete_any:
        raise ConfigError(f"{name!r} is {earlier['owner']}'s preset: only they or an admin can delete it")
    del stored[name]
    write_json_atomic(_path(data_root), stored)


def preset_name_for(config: AugmentConfig, data_root: str | os.PathLike) -> str | None:
    """The name of a preset equal to `config`, if there is one."""
    for name, preset in all_presets(data_root).items():
        if preset == config:
            return name
    return None
