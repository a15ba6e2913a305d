"""Serve page with a multi-label run: it is listed to serve, alias and export; the client examples read its label
lists (no top k, the `labels` output) and say what its answers hold; retraining with feedback leaves it out."""

from __future__ import annotations

import csv

from core.serving.aliases import AliasStore
from tests.conftest import copy_run, copy_run_and_dataset
from tests.pages.conftest import table_with, texts
from tests.pages.test_serve import running_server


def _store(multilabel_run, tmp_path):
    models = tmp_path / "models"
    copy_run(multilabel_run["models_root"] / multilabel_run["run_id"], models / multilabel_run["run_id"])
    return models


def labels_of(dataset, rel: str) -> list[str]:
    """A photo's labels as the dataset's label file lists them."""
    rows = list(csv.reader((dataset / "labels.csv").open()))
    return next(row[1].split("|") if row[1] else [] for row in rows if row[0] == rel)


def test_a_multilabel_run_is_listed_to_serve_alias_and_export(app, multilabel_run, tmp_path):
    from core.export.run import export_run  # heavy: keras
    from core.export.store import export_dir
    from core.runs.store import RunStore

    models = _store(multilabel_run, tmp_path)
    run_id = multilabel_run["run_id"]
    run = RunStore(models).get(run_id)
    export_run(run, "onnx", export_dir(run, "onnx"))  # what Export and verify makes, here in-process
    at = app("serve", models_dir=models)
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="serve_models").value == [run_id]  # the run to serve, by default
    assert at.selectbox(key="serve_alias_run").value == run_id
    assert at.selectbox(key="serve_export_run").value == run_id
    assert not [s for s in at.selectbox if s.key == "serve_retrain_run"]  # feedback keeps one class a photo
    assert "Retraining with feedback is for single-label runs" in texts(at)
    made = table_with(at, "export", "same label lists")  # what a multi-label export is checked on
    assert made["same label lists"].tolist() == [1.0]


def test_the_examples_read_a_multilabel_run_s_label_lists(app, multilabel_run, tmp_path):
    models = _store(multilabel_run, tmp_path)
    run_id = multilabel_run["run_id"]
    AliasStore(models).set("production", run_id)
    running_server(models, run_id, ["production"], {"production": run_id})
    at = app("serve", models_dir=models)
    assert not at.exception, [e.value for e in at.exception]
    snippets = [c.value for c in at.code]
    photo = sorted((multilabel_run["dataset"] / "images").iterdir())[0].resolve()
    assert f'curl -F file=@{photo} "http://127.0.0.1:8599/predict?model=production"' in snippets  # no top k
    assert any('print(result.as_numpy("labels"), result.as_numpy("probabilities"))' in c for c in snippets)
    shown = texts(at)
    said = next(c.value for c in at.caption if c.value.startswith("The examples send"))
    has = labels_of(multilabel_run["dataset"], "images/" + photo.name)  # the photo's own, not the run's (walk 54)
    own = f"its labels in the dataset: {', '.join(has)}" if has else "it has no label"
    assert f"`{photo.name}`, a photo from the dataset mosaics ({own}); any photo works the same" in said
    assert "A multi-label run answers each photo's `labels`: every label whose score reaches its threshold" in shown
    assert "`none_of_these: true`" in shown and "not a calibrated chance" in shown
    assert "&prediction_set=0.9" not in shown  # the single-label runs' sets are not offered


def test_an_example_photo_with_no_label_is_said_to_have_none(app, multilabel_run, tmp_path, monkeypatch):
    """Walk 54: m000 had no label, yet the caption listed the run's four as 'its labels'."""
    copied = copy_run_and_dataset(multilabel_run, tmp_path)
    label_file = copied["dataset"] / "labels.csv"
    rows = list(csv.reader(label_file.open()))
    rows[1][1] = ""  # the first photo (the example) loses its labels
    with label_file.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    monkeypatch.setenv("FLORA_DATA_DIR", str(copied["data_root"]))
    running_server(copied["models_root"], copied["run_id"], [copied["run_id"]], {copied["run_id"]: copied["run_id"]})
    at = app("serve", models_dir=copied["models_root"])
    assert not at.exception, [e.value for e in at.exception]
    said = next(c.value for c in at.caption if c.value.startswith("The examples send"))
    assert "`m000.png`, a photo from the dataset mosaics (it has no label); any photo works the same" in said
    assert "red" not in said
