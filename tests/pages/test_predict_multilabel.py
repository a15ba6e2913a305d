"""Predict page on a multi-label run: each photo's labels with score and threshold, "none of these" when no label
reaches its threshold, every label's score on demand; many photos as a table with a `labels` column."""

from __future__ import annotations

import json

import pytest

from core.data.multilabel import NO_LABEL
from core.results.probabilities import label_thresholds
from core.runs.files import run_files
from core.serving.batch_predict import predict_many
from core.serving.engine import ServedModel
from pages.ui.plain import md
from pages.ui.predict.labels import percent
from tests.conftest import copy_run, multilabel_every_photo
from tests.pages.conftest import table_with, texts


def _photos(run: dict, n: int) -> list:
    return sorted((run["dataset"] / "images").iterdir())[:n]


def _upload(at, files) -> None:
    at.file_uploader(key="predict_upload").set_value([(f.name, f.read_bytes(), "image/png") for f in files]).run()
    assert not at.exception, [e.value for e in at.exception]


def test_each_photo_shows_its_labels_with_score_and_threshold(app, multilabel_run):
    photos = _photos(multilabel_run, 3)
    run = multilabel_run["store"].get(multilabel_run["run_id"])
    expected = predict_many(ServedModel(run), [(p.name, p) for p in photos], source="cli")
    at = app("predict", models_dir=multilabel_run["models_root"])
    assert at.selectbox(key="predict_run").value == run.run_id  # a multi-label run is listed
    assert not [s for s in at.slider if s.key == "predict_top_k"]  # every label a photo has: no top k
    shown = texts(at)
    assert "A multi-label run: each photo gets every one of its 4 labels whose score reaches" in shown
    _upload(at, photos)
    shown = texts(at)
    assert "not yet for multi-label ones" in shown
    assert sum(1 for item in expected if item.answer.labels) >= 1  # a label given somewhere
    thresholds = label_thresholds.load(run.directory)
    for item in expected:
        if item.answer.labels:
            lines = [
                f"- **{name}**: score {percent(item.answer.scores[name])} (threshold {percent(thresholds[name])})"
                for name in item.answer.labels  # the run's label order, as the table and the CSV
            ]
            at_once = "\n".join(lines)
            assert at_once in shown, at_once
        else:
            assert "**None of these**: no label's score reaches its threshold" in shown
    assert sum("Every label's score and threshold" in e.label for e in at.expander) == len(photos)
    assert "not a calibrated chance" in shown  # a score is not a promise on a weak model
    assert len(at.get("plotly_chart")) == len(photos)  # the scores with their thresholds marked, one chart a photo
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {trace["name"] for trace in spec["data"]} == {"score", "threshold"}


def test_none_of_these_when_no_label_reaches_its_threshold(app, multilabel_run, tmp_path):
    models = tmp_path / "models"
    run_dir = copy_run(multilabel_run["models_root"] / multilabel_run["run_id"], models / multilabel_run["run_id"])
    stored = label_thresholds.stored(run_dir)
    stored["thresholds"] = {name: 1.0 for name in stored["thresholds"]}  # out of a weak model's reach
    run_files(run_dir).label_thresholds.write_text(json.dumps(stored))
    at = app("predict", models_dir=models)
    _upload(at, _photos(multilabel_run, 1))
    shown = texts(at)
    assert "**None of these**: no label's score reaches its threshold (the highest, **" in shown
    assert "against its 100.0%" in shown


def test_many_photos_give_a_table_with_a_labels_column_and_every_score(app, multilabel_run):
    photos = _photos(multilabel_run, 5)
    run = multilabel_run["store"].get(multilabel_run["run_id"])
    expected = predict_many(ServedModel(run), [(p.name, p) for p in photos], source="cli")
    at = app("predict", models_dir=multilabel_run["models_root"])
    _upload(at, photos)
    table = table_with(at, "labels", "none_of_these")
    assert table["labels"].fillna("").tolist() == ["|".join(item.answer.labels) for item in expected]
    assert [c for c in table.columns if c.startswith("score_")] == [f"score_{n}" for n in run.classes]
    for row, item in zip(table.itertuples(), expected, strict=True):  # in percent, as the cards write them
        for name in run.classes:
            assert getattr(row, f"score_{name}") == pytest.approx(item.answer.scores[name] * 100, abs=1e-3)
    for item in expected:  # the photos' headings list their labels in the same order as the table
        assert any(e.label == f"{md(item.name)}: {md(', '.join(item.answer.labels) or NO_LABEL)}" for e in at.expander)
    assert "5 photos**: 0 unreadable" in texts(at)
    thresholds = label_thresholds.load(run.directory)
    cuts = ", ".join(f"{name} {percent(thresholds[name])}" for name in run.classes)
    assert f"Each label's threshold (a score at or above it gives the label): {cuts}." in texts(at)
    assert any(b.label == "Download as CSV" for b in at.get("download_button"))
    assert len([e for e in at.expander if e.label.startswith(photos[0].stem)]) == 1  # each photo in full below


@pytest.mark.parametrize(("value", "text"), [(0.776, "77.6%"), (0.4143, "41.4%"), (0.78, "78.0%"), (0.0, "0%"),
                                             (1e-7, "under 0.1%"), (1.0, "100.0%")])  # fmt: skip
def test_one_percent_format(value, text):
    assert percent(value) == text


def test_a_label_given_to_every_photo_says_so(app, multilabel_run, tmp_path):
    _, (zero, tiny) = multilabel_every_photo(multilabel_run, tmp_path / "models")
    at = app("predict", models_dir=tmp_path / "models")
    _upload(at, _photos(multilabel_run, 1))
    shown = texts(at)
    assert f"**{zero}**: score " in shown and "(threshold 0%) — given to (nearly) every test photo" in shown
    assert "(threshold under 0.1%) — given to (nearly) every test photo" in shown and "threshold 0.0%" not in shown
    assert f"**{tiny}**: score " in shown
    warned = [w.value for w in at.warning]
    _upload(at, _photos(multilabel_run, 4))  # a table: its rounding said where a threshold is under 0.1%
    classes = multilabel_run["store"].get(multilabel_run["run_id"]).classes
    low = ", ".join(sorted([zero, tiny], key=classes.index))
    assert f"with a threshold under 0.1% ({low}), a score shown 0.0% can still reach it" in texts(at)
    assert any(md(f"'{zero}'") in w and md(f"'{tiny}'") in w and "every photo at" in w for w in warned), warned
