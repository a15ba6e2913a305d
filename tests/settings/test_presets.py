"""Augmentation presets saved from the Augmentation page and read by the Train page."""

from __future__ import annotations

import pytest

from core.settings.config import AUGMENT_PRESETS, AugmentConfig, ConfigError
from core.settings.presets import all_presets, preset_name_for, save_preset, saved_presets


def test_save_list_find(tmp_path):
    mine = AugmentConfig(rotation=12, horizontal_flip=True)
    assert save_preset(tmp_path, "  my flips ", mine) == "my flips"
    assert saved_presets(tmp_path) == {"my flips": mine}
    presets = all_presets(tmp_path)
    assert list(presets)[: len(AUGMENT_PRESETS)] == list(AUGMENT_PRESETS) and presets["my flips"] == mine
    assert preset_name_for(mine, tmp_path) == "my flips"
    assert preset_name_for(AUGMENT_PRESETS["light"], tmp_path) == "light"


@pytest.mark.parametrize("name", ["", "standard", "../escape", "x" * 41, "semi;colon"])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigError):
        save_preset(tmp_path, name, AugmentConfig(zoom=0.1))


def test_presets_saved_before_the_store_are_imported_once_and_a_corrupt_one_is_skipped(tmp_path):
    from core.fileio import write_json_atomic
    from core.settings.presets import PRESETS_FILE, preset_owner

    old = tmp_path / ".flora" / PRESETS_FILE  # what Flora kept before the shared store
    write_json_atomic(
        old,
        {
            "alices": {"owner": "alice", "config": AugmentConfig(zoom=0.1).to_dict()},
            "bare": AugmentConfig(rotation=5).to_dict(),  # from before owners: the local person's
            "broken": {"owner": "bob", "config": {"rotation": 999}},
        },
    )
    assert saved_presets(tmp_path) == {"alices": AugmentConfig(zoom=0.1), "bare": AugmentConfig(rotation=5)}
    assert preset_owner(tmp_path, "alices") == "alice" and preset_owner(tmp_path, "bare") == "local"
    with pytest.raises(ConfigError, match="alice's preset"):
        save_preset(tmp_path, "alices", AugmentConfig(zoom=0.3), owner="bob")
    write_json_atomic(old, {"late": AugmentConfig(zoom=0.2).to_dict()})  # written after the import: not read
    assert "late" not in saved_presets(tmp_path)
