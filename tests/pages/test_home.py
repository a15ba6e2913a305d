"""Home page: what is on disk, the device, the way in; and an empty workspace that explains itself."""

from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest

from pages.ui import device_status
from pages.ui.navigation import page_file
from tests.conftest import copy_run_and_dataset
from tests.pages.conftest import APP, table_with, texts


def test_home_lists_datasets_runs_and_the_start_path(app, workspace):
    at = app()
    shown = texts(at)
    assert "Datasets: 1" in shown and "Training runs: 1" in shown and "Finished models: 1" in shown
    assert "1 · Pick or add a dataset" in shown and "5 · Predict" in shown
    datasets = table_with(at, "name", "classes", "images")
    assert datasets["name"].tolist() == ["colours"] and datasets["images"].tolist() == [56]
    runs = table_with(at, "run", "state", "dataset")
    assert runs["run"].tolist() == [workspace["run_id"]] and runs["state"].tolist() == ["done"]
    assert "CPU" in shown  # the device
    assert "No training running." in shown  # the sidebar's jobs panel


def test_empty_workspace_says_how_to_get_a_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("FLORA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(tmp_path / "models"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    shown = texts(at)
    assert "Datasets: 0" in shown
    assert "No dataset under" in shown and "data get demo" in shown and "tf_flowers" in shown
    assert "No training runs yet" in shown


@pytest.mark.slow
def test_the_sidebar_says_when_the_framework_does_not_see_the_drivers_gpu(app, tmp_path, monkeypatch):
    """Issue 20.1: a driver (a fake nvidia-smi) and the CPU build: the sidebar checks, then says training will run
    on the CPU, why, and the fix, and the Home page counts the CPU as the device."""
    import time

    from tests.test_gpu_build import FAKE_SMI

    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "nvidia-smi").write_text(FAKE_SMI)
    (folder / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    device_status._driver_device.clear(), device_status.device_check.clear()
    try:
        at = app()
        checking = "Device: NVIDIA H100 80GB HBM3 (checking that TensorFlow sees it…)"
        assert checking in [c.value for c in at.sidebar.caption]
        check = device_status.device_check()
        deadline = time.time() + 240
        while check.result() is None and time.time() < deadline:
            time.sleep(0.5)
        at.run()
        warning = next(w.value for w in at.sidebar.warning if "Training will run on the CPU" in w.value)
        assert "driver found \\(NVIDIA H100 80GB HBM3" in warning
        assert "pip install -r requirements-gpu-tensorflow.txt`" in warning  # the fix, as code
        assert any(m.label == "Device" and m.value == "CPU" for m in at.metric)
    finally:
        device_status._driver_device.clear(), device_status.device_check.clear()


def test_a_multilabel_dataset_and_run_are_said_with_labels_and_map_and_predict_ticks(
    app, multilabel_run, tmp_path, monkeypatch
):
    """Walk 54: Home said 'classes 4' of a multi-label set and 'test accuracy: None' of its runs, and the Predict step
    never got its tick."""
    copied = copy_run_and_dataset(multilabel_run, tmp_path)
    monkeypatch.setenv("FLORA_DATA_DIR", str(copied["data_root"]))
    at = app(models_dir=copied["models_root"])
    datasets = table_with(at, "name", "kind", "classes or labels")
    assert datasets["kind"].tolist() == ["multi-label"] and datasets["classes or labels"].tolist() == [4]
    runs = table_with(at, "run", "mAP")
    status = multilabel_run["store"].get(multilabel_run["run_id"]).status
    assert status.map is not None and runs["mAP"].tolist() == [status.map]
    assert "accuracy" not in runs.columns  # no column of Nones
    assert "**5 · Predict**" in texts(at) and "**5 · Predict** :material/check_circle:" not in texts(at)

    at.switch_page(page_file("predict")).run()
    photo = sorted((copied["dataset"] / "images").iterdir())[0]
    at.file_uploader(key="predict_upload").set_value([(photo.name, photo.read_bytes(), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(page_file("home")).run()
    assert "**5 · Predict** :material/check_circle:" in texts(at)
    again = AppTest.from_file(APP, default_timeout=60).run()  # a later visit: the tick is kept on disk
    assert "**5 · Predict** :material/check_circle:" in texts(again)


def test_single_label_runs_have_no_map_column(app, workspace):
    runs = table_with(app(), "run", "accuracy")
    assert "mAP" not in runs.columns and runs["accuracy"].notna().all()


def test_a_dataset_whose_photos_link_outside_the_data_roots_is_named_not_dropped_in_silence(tmp_path, monkeypatch):
    """Walk 55: a linked import copied elsewhere kept absolute links; Home said "Datasets 0" with no word why. The
    dataset is still not offered (the link rule), but Home and the Dataset page name it, its links and the fix."""
    from PIL import Image

    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("fine", "linked"):
        for cls in ("a", "b"):
            (data / name / cls).mkdir(parents=True)
            for i in range(3):
                photo = (elsewhere if name == "linked" else data / name / cls) / f"{name}-{cls}{i}.png"
                Image.new("RGB", (8, 8), (40 * i, 90 if cls == "a" else 10, 0)).save(photo)
                if name == "linked":
                    (data / name / cls / photo.name).symlink_to(photo)
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FLORA_DATA_ROOTS", str(data))  # the data folder alone (else home and the project's parent)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "Datasets: 1" in texts(at)
    (warning,) = [w.value for w in at.warning if "not shown" in w.value]
    assert warning.startswith("1 dataset not shown") and "linked holds 6 link(s)" in warning
    assert "FLORA_DATA_ROOTS" in warning and "fine" not in warning
    at.switch_page(page_file("dataset"))
    at.run()
    assert not at.exception
    assert any("linked holds 6 link(s)" in w.value for w in at.warning)
