"""Home page: what is on disk, the device, the way in; and an empty workspace that explains itself."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

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
