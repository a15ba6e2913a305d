"""Evaluate page on a multi-label run: mAP against a random scorer in words, the per-label table worst first, one
label's curve with a threshold to try and the photos behind its counts, and the label confusion with its photos."""

from __future__ import annotations

import pytest

from core import run_job
from core.results.evaluation import multilabel_views as views
from core.results.evaluation import multilabel_words as words
from core.results.evaluation.multilabel import NO_LABEL, MultilabelEvaluation
from core.results.labels import multilabel_issues
from core.runs.analysis import RunAnalysis
from core.runs.store import RunStore
from core.settings.config import TrainConfig
from core.train import jobs
from pages.ui.plain import md
from tests.pages.conftest import table_with, texts
from tests.train.test_multilabel import COLOURS, make_mosaics


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("evaluate_multilabel")
    data, models = base / "data", base / "models"
    dataset = make_mosaics(data / "mosaics", n=60, size=32)
    store = RunStore(models)
    config = TrainConfig(image_size=32, weights="none", epochs=2, batch_size=8, head=(8,), seed=0)
    submission = jobs.submit(store, dataset, config)
    run_job.execute(store, submission, data, console=False, ingest_workers=1)
    run = store.get(submission.run_id)
    return {"data": data, "models": models, "run": run, "evaluation": MultilabelEvaluation.load(run.directory)}


@pytest.fixture
def open_evaluate(app, multilabel_run, monkeypatch):
    def opened():
        monkeypatch.setenv("FLORA_DATA_DIR", str(multilabel_run["data"]))
        at = app("evaluate", models_dir=multilabel_run["models"])
        assert at.selectbox(key="evaluate_run").value == multilabel_run["run"].run_id
        return at

    return opened


def test_headline_map_against_a_random_scorer_and_the_table_worst_first(open_evaluate, multilabel_run):
    at = open_evaluate()
    summary = multilabel_run["evaluation"].summary()
    shown = texts(at)
    assert f"mAP: {summary['map']:.3f}" in shown and f"Random scorer's mAP: {summary['random_map']:.3f}" in shown
    said = md(words.headline(summary))  # the interval, the baseline, what they say on this weak model, label by label
    assert said in shown
    shown_alone = len(words.weak_labels(summary)) < len(summary["per_label"])
    alert = (
        at.info if words.beats_random(summary["map_interval"][0], summary["random_map"]) and shown_alone else at.warning
    )
    assert any(said == a.value for a in alert)
    assert "Accuracy" not in shown and "started from random weights" in shown
    table = table_with(at, "label", "ap", "ap 95%", "random_ap", "frequency", "threshold", "precision", "recall")
    tested = table[table["positives"] > 0]
    assert tested["ap"].tolist() == sorted(tested["ap"].tolist()) and set(table["label"]) == set(COLOURS)
    for row in table.itertuples():
        assert row.threshold == words.threshold_text(summary["per_label"][row.label]["threshold"])


def test_one_label_a_threshold_to_try_its_words_counts_and_photos(open_evaluate, multilabel_run):
    evaluation = multilabel_run["evaluation"]
    at = open_evaluate()
    label = at.selectbox(key=f"evaluate_ml_label_{multilabel_run['run'].run_id}").value
    assert label == evaluation.per_label()["label"].iloc[0]  # the worst AP first
    j = evaluation.label_index(label)
    slider = at.slider(key=f"evaluate_ml_threshold_{multilabel_run['run'].run_id}_{j}")
    assert slider.value == pytest.approx(evaluation.thresholds[j])
    slider.set_value(0.3).run()
    assert not at.exception, [e.value for e in at.exception]
    counts = evaluation.counts_at(label, 0.3)
    said = words.trade_off(label, 0.3, counts["found"], counts["added"], counts["missed"])
    shown = texts(at)
    assert md(said[0].upper() + said[1:]) in shown and "Its tuned threshold, at" in shown
    grid = table_with(at, f"answered '{label}'", "not answered")
    assert grid.to_numpy().tolist() == [[counts["found"], counts["missed"]], [counts["added"], counts["left out"]]]
    assert f"Calibration of '{label}'" in shown and "Expected calibration error" in shown
    at.segmented_control(key="evaluate_ml_cell").set_value("found").run()
    captions = [c for image in at.get("image") for c in image.captions]
    expected = views.cell(evaluation, label, 0.3, "found")
    assert sum(1 for c in captions if c.startswith(f"{label} ")) >= min(len(expected), 24)
    if len(expected):
        assert any(md(expected["path"].iloc[0].split("/")[-1]) in c for c in captions)


def test_the_label_confusion_shows_what_is_added_and_missed_and_its_photos(open_evaluate, multilabel_run):
    evaluation = multilabel_run["evaluation"]
    added, missed = views.confusion(evaluation)
    at = open_evaluate()
    rows = at.selectbox(key="evaluate_ml_row")
    assert rows.options == [*COLOURS, NO_LABEL]
    row, column = rows.value, at.selectbox(key="evaluate_ml_column").value
    if added.to_numpy().any():
        assert added.loc[row, column] == added.to_numpy().max()  # opens on the most frequent addition
    found = views.confused_photos(evaluation, row, column, "added")
    assert md(f"where the model added '{column}': {len(found)}") in texts(at)
    at.segmented_control(key="evaluate_ml_confusion_kind").set_value("missed").run()
    at.selectbox(key="evaluate_ml_row").set_value("red").run()
    at.selectbox(key="evaluate_ml_column").set_value("red").run()
    assert not at.exception, [e.value for e in at.exception]
    assert md(f"Photos with 'red' where the model missed 'red': {int(missed.loc['red', 'red'])}") in texts(at)


def test_the_train_page_links_a_multilabel_run_to_evaluate(app, multilabel_run, monkeypatch):
    monkeypatch.setenv("FLORA_DATA_DIR", str(multilabel_run["data"]))
    at = app("train", models_dir=multilabel_run["models"])
    links = [link for link in at.get("page_link") if "Evaluate" in link.proto.label]
    assert links, "the finished multi-label run leads to the Evaluate page"
    assert "Explore maps its photos by label" in texts(at) and "Predict, Serve and" in texts(at)


def test_the_photos_whose_label_lists_the_model_doubts(open_evaluate, multilabel_run):
    found = multilabel_issues.of_analysis(RunAnalysis.load(multilabel_run["run"].directory))
    at = open_evaluate()
    shown = texts(at)
    assert f"**{found.suspected} of {found.photos}** validation and test photos" in shown
    assert "not errors found" in shown
    if found.suspected:
        table = table_with(at, "path", "split", "quality", "missing", "wrong")
        assert table["path"].tolist() == found.table["path"].tolist()


def test_explore_and_compare_list_a_multilabel_run(app, multilabel_run, monkeypatch):
    monkeypatch.setenv("FLORA_DATA_DIR", str(multilabel_run["data"]))
    at = app("explore", models_dir=multilabel_run["models"])
    assert "not listed" not in texts(at) and not at.exception
    at = app("compare", models_dir=multilabel_run["models"])  # Compare lists them: one alone is not enough
    assert "not listed" not in texts(at) and "at least two finished runs" in texts(at)


def test_one_labels_heatmap_for_a_photo_behind_its_counts(open_evaluate, multilabel_run):
    from core.results.evaluation.explain import Explainer, Target, label_probability

    evaluation, run = multilabel_run["evaluation"], multilabel_run["run"]
    at = open_evaluate()
    label = at.selectbox(key=f"evaluate_ml_label_{run.run_id}").value
    j = evaluation.label_index(label)
    picker = at.selectbox(key=f"evaluate_ml_gradcam_{j}")
    cell = at.segmented_control(key="evaluate_ml_cell").value
    rows = views.cell(evaluation, label, evaluation.thresholds[j], cell)
    losses = views.top_losses(evaluation, label, 12)
    expected = list(dict.fromkeys([*rows["path"].head(24), *losses["path"]]))
    assert picker.value is None and picker.options == [
        (f"{p.split('/')[-1]} · {cell if p in set(rows['path'].head(24)) else 'top loss'} · score "
           f"{float(evaluation.probabilities[evaluation.paths.index(p), j]):.2f}") for p in expected
    ]  # fmt: skip
    path = expected[-1]  # a top loss: the photo whose score for this label was furthest from the truth
    picker.set_value(path).run()
    assert not at.exception, [e.value for e in at.exception]
    explainer = Explainer(run)
    image = explainer.load(multilabel_run["data"] / "mosaics" / path)
    probability = label_probability(explainer.explain(image, [Target(j)], layer=explainer.default_layer)[0].score)
    stored = float(evaluation.probabilities[evaluation.paths.index(path), j])
    assert probability == pytest.approx(stored, abs=0.02)  # the map's model is the evaluated one
    metric = next(m for m in at.metric if m.label == f"Probability of '{md(label)}'")
    assert metric.value == f"{probability:.3f}"
    answered = "answers" if probability >= evaluation.thresholds[j] else "does not answer"
    shown = texts(at)
    assert f"Threshold **{evaluation.thresholds[j]:.3f}**: the model {answered} '{md(label)}' for this photo." in shown
    captions = [c for image in at.get("image") for c in image.captions]
    assert "the photo" in captions and any(c.startswith(f"'{md(label)}'") for c in captions)
    assert "which on a weak model need not be the thing the label names" in shown
