"""Augmentation presets saved from the Augmentation page and read by the Train page."""

from __future__ import annotations

import pytest

from core.settings.config import AUGMENT_PRESETS, AugmentConfig, ConfigError
from core.settings.presets import all_presets, delete_preset, preset_name_for, save_preset, saved_presets


def test_save_list_find_delete(tmp_path):
    mine = AugmentConfig(rotation=12, horizontal_flip=True)
    assert save_preset(tmp_path, "  my flips ", mine) == "my flips"
    assert saved_presets(tmp_path) == {"my flips": mine}
    presets = all_presets(tmp_path)
    assert list(presets)[: len(AUGMENT_PRESETS)] == list(AUGMENT_PRESETS) and presets["my flips"] == mine
    assert preset_name_for(mine, tmp_path) == "my flips"
    assert preset_name_for(AUGMENT_PRESETS["light"], tmp_path) == "light"
    delete_preset(tmp_path, "my flips")
    assert saved_presets(tmp_path) == {}


@pytest.mark.parametrize("name", ["", "standard", "../escape", "x" * 41, "semi;colon"])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigError):
        save_preset(tmp_path, name, AugmentConfig(zoom=0.1))


def test_a_corrupt_entry_is_skipped(tmp_path):
    save_preset(tmp_path, "ok", AugmentConfig(zoom=0.1))
    path = tmp_path / ".flora" / "augment_presets.json"
    path.write_text(path.read_text().replace('"ok"', '"ok", "broken": {"rotation": 999}, "x"', 1))
    assert "broken" not in saved_presets(tmp_path)
