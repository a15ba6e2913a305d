"""Train page on a multi-label dataset: the form says it found one and what that changes; a finished run shows its
validation mAP curve and test mAP."""

from __future__ import annotations

from core import run_job
from core.runs.store import RunStore
from core.settings.config import TrainConfig
from core.train import jobs
from tests.pages.conftest import table_with, texts
from tests.pages.test_train import _new_run_tab
from tests.train.test_multilabel import make_mosaics


def test_the_form_says_it_found_a_multilabel_dataset_and_what_that_changes(app, tmp_path, monkeypatch):
    data = tmp_path / "data"
    make_mosaics(data / "mosaics", n=12, size=32)
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    at = _new_run_tab(app, tmp_path / "models")
    assert at.selectbox(key="train_dataset").value.endswith("mosaics")
    shown = texts(at)
    for words in ("A multi-label dataset", "4 labels", "sigmoid", "binary cross-entropy", "mAP", "threshold per label"):
        assert words in shown, words
    assert any("--task multilabel" in code.value for code in at.code)  # the terminal's same run
    # the plan names what the run follows (walk 54: it said the lowest validation loss picks the epoch)
    at.radio(key="train_weights_kind").set_value("none")
    at.radio(key="train_lr_schedule").set_value("plateau").run()
    shown = texts(at)
    assert "The weights of the epoch with the highest validation mAP are kept" in shown
    assert "lowered whenever validation mAP stalls" in shown and "expect a much lower mAP" in shown
    assert "validation loss" not in shown and "accuracy" not in shown
    at.number_input(key="train_threshold_precision").set_value(0.9).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("--threshold-precision 0.9" in code.value for code in at.code)


def test_a_single_label_dataset_says_nothing_of_labels(app):
    at = _new_run_tab(app)
    assert "multi-label" not in texts(at)
    assert not [n for n in at.number_input if n.key == "train_threshold_precision"]
    assert not any("--task" in code.value for code in at.code)
    assert "The weights of the epoch with the lowest validation loss are kept" in texts(at)


def test_a_finished_multilabel_run_shows_its_validation_map_and_test_map(app, tmp_path, monkeypatch):
    data, models = tmp_path / "data", tmp_path / "models"
    dataset = make_mosaics(data / "mosaics", n=40, size=32)
    store = RunStore(models)
    config = TrainConfig(image_size=32, weights="none", epochs=2, batch_size=8, head=(8,), seed=0)
    submission = jobs.submit(store, dataset, config)
    run_job.execute(store, submission, data, console=False, ingest_workers=1)
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    at = app("train", models_dir=models)
    assert at.selectbox(key="train_run").value == submission.run_id
    shown = texts(at)
    assert "Test mAP" in shown and "Labels: 4" in shown and "Test accuracy" not in shown
    assert "Split (seeded, seed 0): " in shown  # as the Dataset page names it (walk 54: 'Split (random)')
    assert "core predict" in shown and "Explore maps its photos by label" in shown
    assert "the Evaluate page gives its AP, precision, recall and F1 per label" in shown
    runs = table_with(at, "run", "mAP")  # the runs table: the mAP under its own name (walk 54), no column of Nones
    assert runs["mAP"].tolist() == [store.get(submission.run_id).status.map] and "accuracy" not in runs.columns
    charts = list(at.get("plotly_chart"))
    assert len(charts) == 2 and "Validation mAP" in charts[1].proto.spec
