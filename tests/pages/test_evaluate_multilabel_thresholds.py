"""Evaluate on a multi-label run, its thresholds (walk 54): a threshold that answers every photo is said in the table,
below it and on its label's view, tiny ones never read '0.000'; the tuned F1 stands beside answering every label; the
photos' captions follow the threshold being tried; the label picked is the run's own."""

from __future__ import annotations

from core.results.evaluation import multilabel_words as words
from core.results.evaluation.multilabel import MultilabelEvaluation
from pages.ui.plain import md
from tests.conftest import multilabel_every_photo, multilabel_pair
from tests.pages.conftest import table_with, texts

SECOND = "b" * 12


def _open(app, multilabel_run, monkeypatch, models, run_id):
    monkeypatch.setenv("FLORA_DATA_DIR", str(multilabel_run["data_root"]))
    at = app("evaluate", models_dir=models)
    at.selectbox(key="evaluate_run").set_value(run_id).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_threshold_that_answers_every_photo_is_said_where_it_is_shown(app, multilabel_run, monkeypatch, tmp_path):
    run_dir, (zero, tiny) = multilabel_every_photo(multilabel_run, tmp_path / "models")
    summary = MultilabelEvaluation.load(run_dir).summary()
    n = summary["test_images"]
    at = _open(app, multilabel_run, monkeypatch, tmp_path / "models", multilabel_run["run_id"])
    table = table_with(at, "label", "threshold", "note").set_index("label")
    assert table.loc[zero, "threshold"] == "0" and table.loc[tiny, "threshold"] == "1.0e-07"
    assert table.loc[zero, "note"] == f"answered for {n} of {n} photos"
    every = words.every_photo_labels(summary)
    for name in table.index:
        assert bool(table.loc[name, "note"]) == (name in every)
    shown = texts(at)
    for name in every:
        note = words.every_photo_note(summary, name)
        assert md(note[0].upper() + note[1:]) in shown
    assert md(words.thresholds_words(summary)) in shown and "answering every label for every photo" in shown
    at.selectbox(key=f"evaluate_ml_label_{multilabel_run['run_id']}").set_value(zero).run()
    assert not at.exception, [e.value for e in at.exception]
    note = words.every_photo_note(summary, zero)
    assert any(w.value == md(note[0].upper() + note[1:]) for w in at.warning)  # on the label's own view too
    assert md(f"At 0: {n - summary['per_label'][zero]['positives']} ") not in texts(at)  # counts, not 0.000
    assert "0.000" not in "\n".join(str(s.help) for s in at.slider)


def test_the_photos_captions_follow_the_threshold_tried(app, multilabel_run, monkeypatch, tmp_path):
    models = tmp_path / "models"
    multilabel_pair(multilabel_run, models, SECOND)
    run_id = multilabel_run["run_id"]
    evaluation = MultilabelEvaluation.load(models / run_id)
    at = _open(app, multilabel_run, monkeypatch, models, run_id)
    label = at.selectbox(key=f"evaluate_ml_label_{run_id}").value
    j = evaluation.label_index(label)
    scores = evaluation.probabilities[evaluation.truth[:, j], j]
    tried = float(min(0.995, round(float(scores.max()) + 0.005, 3)))  # stricter: every photo with the label missed
    at.slider(key=f"evaluate_ml_threshold_{run_id}_{j}").set_value(tried).run()
    at.segmented_control(key="evaluate_ml_cell").set_value("missed").run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c for image in at.get("image") for c in image.captions if c.startswith(f"{label} ")]
    answered = [c.split(md("answered: "))[1].split("\n")[0].split(", ") for c in captions]  # missed and top losses
    assert answered and all(label not in names for names in answered)
    assert md(f"at the slider's {words.threshold_text(tried)} and every other label at its tuned threshold") in (
        texts(at)
    )


def test_the_label_picked_is_the_runs_own(app, multilabel_run, monkeypatch, tmp_path):
    models = tmp_path / "models"
    first = multilabel_pair(multilabel_run, models, SECOND)
    worst = {r: MultilabelEvaluation.of_run(models / r).per_label()["label"].tolist() for r in (first, SECOND)}
    at = _open(app, multilabel_run, monkeypatch, models, first)
    other = next(name for name in worst[first] if name != worst[SECOND][0])
    at.selectbox(key=f"evaluate_ml_label_{first}").set_value(other).run()
    at.selectbox(key="evaluate_run").set_value(SECOND).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key=f"evaluate_ml_label_{SECOND}").value == worst[SECOND][0]  # its worst AP, not the first's
