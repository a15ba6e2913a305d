"""Augmentation page: controls for every transform, an original beside its versions, saving a preset."""

from __future__ import annotations

import dataclasses

from core.settings.config import AUGMENT_PRESETS, AugmentConfig
from core.settings.presets import saved_presets
from tests.pages.conftest import texts


def test_preview_shows_the_original_and_its_versions(app):
    at = app("augmentation")
    assert len(at.get("image")) >= 1
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert captions[0] == "original" and captions[1:] == [f"version {i}" for i in range(1, 9)]
    for field in dataclasses.fields(AugmentConfig):
        assert f"augment_{field.name}" in at.session_state  # a control for every field


def test_a_preset_fills_the_controls_and_a_slider_changes_them(app):
    at = app("augmentation")
    at.selectbox(key="augment_preset").set_value("strong").run()
    assert at.slider(key="augment_rotation").value == AUGMENT_PRESETS["strong"].rotation
    assert at.toggle(key="augment_vertical_flip").value is True
    before = [image.proto.imgs[0].url for image in at.get("image")]
    at.slider(key="augment_rotation").set_value(15.0).run()
    assert "These settings are no preset's (custom)" in texts(at)
    assert at.selectbox(key="augment_preset").value == "strong"  # the box keeps what the person picked
    after = [image.proto.imgs[0].url for image in at.get("image")]
    assert after[0] == before[0] and after[1:] != before[1:]  # the same photo, new versions
    at.slider(key="augment_rotation").set_value(AUGMENT_PRESETS["strong"].rotation).run()
    assert "These settings are the preset **strong**." in texts(at)  # back to exactly the preset

    def transforms_on() -> str:
        return next(m.value for m in at.markdown if m.value.startswith("**Original**"))

    assert "Rotation" in transforms_on()
    at.slider(key="augment_rotation").set_value(0.0).run()
    assert "Rotation" not in transforms_on() and "Zoom" in transforms_on()


def test_save_a_preset_for_the_train_page(app, workspace):
    at = app("augmentation")
    at.selectbox(key="augment_preset").set_value("light").run()
    at.text_input(key="augment_save_name").set_value("gentle flips")
    at.button(key="augment_save").click().run()
    assert "Saved preset **gentle flips**: " in texts(at)
    assert "These settings are the preset **light**." in texts(at)  # a built-in one is named first
    assert saved_presets(workspace["data"])["gentle flips"] == AUGMENT_PRESETS["light"]
    train = app("train")
    train.session_state["train_tab"] = "New run"
    train.run()
    assert "gentle flips" in train.selectbox(key="train_augment").options


def test_an_upside_down_preset_says_what_it_claims_about_the_photos(app):
    at = app("augmentation")
    at.selectbox(key="augment_preset").set_value("strong").run()
    assert any("Vertical flip is on" in w.value for w in at.warning)
    at.selectbox(key="augment_preset").set_value("light").run()
    assert not any("Vertical flip is on" in w.value for w in at.warning)


def test_save_keeps_the_values_on_screen_when_the_browser_had_not_caught_up(app, workspace):
    """Walk of issue 38, item 3: arrow keys moved Rotation to 35, Save at once saved 25 or 20, and the slider jumped
    back to 20 with the box on "standard": a slider's callback had set the preset box, and the browser's next message
    still held its old value, which read as picking "standard" again. Here that message is sent as the browser sent
    it: the box as the browser last showed it, the slider where the person left it, and Save."""
    at = app("augmentation")
    shown = at.selectbox(key="augment_preset").value  # what the browser shows
    at.slider(key="augment_rotation").set_value(25.0).run()
    at.selectbox(key="augment_preset").set_value(shown)  # the browser had not drawn the rerun above yet
    at.slider(key="augment_rotation").set_value(35.0)
    at.text_input(key="augment_save_name").set_value("arrow keys")
    at.button(key="augment_save").click().run()
    assert saved_presets(workspace["data"])["arrow keys"].rotation == 35.0
    assert at.slider(key="augment_rotation").value == 35.0
    assert "Saved preset **arrow keys**: Rotation 35°" in texts(at)  # the values saved, read back
