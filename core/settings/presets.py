"""Named augmentation presets: the built-in ones and those saved from the Augmentation page.

Saved presets live in `<data>/.flora/augment_presets.json`, so the Train page (and another tab,
or the app after a restart) finds what the Augmentation page saved.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.fileio import read_json, write_json_atomic
from core.paths import flora_dir
from core.settings.config import AUGMENT_PRESETS, AugmentConfig, ConfigError

PRESETS_FILE = "augment_presets.json"  # in <data>/.flora/
_NAME = re.compile(r"^[\w][\w .-]{0,39}$")


def _path(data_root: str | os.PathLike) -> Path:
    return flora_dir(data_root) / PRESETS_FILE


def saved_presets(data_root: str | os.PathLike) -> dict[str, AugmentConfig]:
    """Presets saved by users, by name (unreadable entries are skipped)."""
    stored = read_json(_path(data_root), default={}) or {}
    presets = {}
    for name, values in stored.items():
        try:
            presets[name] = AugmentConfig.from_dict(values)
        except (ConfigError, TypeError):
            continue
    return presets


def all_presets(data_root: str | os.PathLike) -> dict[str, AugmentConfig]:
    """Built-in presets first, then saved ones (a saved name never hides a built-in one)."""
    presets = dict(AUGMENT_PRESETS)
    for name, config in saved_presets(data_root).items():
        presets.setdefault(name, config)
    return presets


def save_preset(data_root: str | os.PathLike, name: str, config: AugmentConfig) -> str:
    """Save `config` under `name` and return the name.

    Raises:
        ConfigError: the name is empty, too long, has odd characters, or is a built-in preset's.
    """
    name = name.strip()
    if not _NAME.match(name):
        raise ConfigError(f"a preset name is 1-40 letters, digits, spaces, '.', '-' or '_'. Received: {name!r}")
    if name in AUGMENT_PRESETS:
        raise ConfigError(f"{name!r} is a built-in preset; choose another name")
    stored = read_json(_path(data_root), default={}) or {}
    stored[name] = config.to_dict()
    write_json_atomic(_path(data_root), stored)
    return name


def delete_preset(data_root: str | os.PathLike, name: str) -> None:
    stored = read_json(_path(data_root), default={}) or {}
    if stored.pop(name, None) is not None:
        write_json_atomic(_path(data_root), stored)


def preset_name_for(config: AugmentConfig, data_root: str | os.PathLike) -> str | None:
    """The name of a preset equal to `config`, if there is one."""
    for name, preset in all_presets(data_root).items():
        if preset == config:
            return name
    return None
