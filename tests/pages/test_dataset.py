"""Dataset page: classes, samples, split, a folder by path, the synthetic banner."""

from __future__ import annotations

import json

from tests.conftest import make_image_dataset
from tests.pages.conftest import table_with, texts


def test_dataset_overview(app):
    at = app("dataset")
    shown = texts(at)
    assert "Classes: 4" in shown and "Images: 56" in shown
    assert "Balanced enough" in shown
    assert at.get("image"), "the sample grid shows photos"
    assert "Training uses a stratified split with seed 42" in shown
    split = table_with(at, "train", "val", "test")
    assert split.loc["red"].tolist() == [10, 2, 2]


def test_a_folder_by_path_and_imbalance_and_synthetic_banner(app, tmp_path):
    folder = make_image_dataset(tmp_path / "mine", {"big": 12, "small": 4})
    (folder / "flora.json").write_text(json.dumps({"synthetic": True, "description": "drawn by a test"}))
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(folder)).run()
    shown = texts(at)
    assert "Classes: 2" in shown and "synthetic" in shown and "drawn by a test" in shown
    assert "Imbalanced: the largest class has 3.0x" in shown
    at.text_input(key="dataset_folder").set_value(str(tmp_path / "nope")).run()
    assert "No folder at" in texts(at)
