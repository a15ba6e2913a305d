"""The fix estimate: its resampled scores against scikit-learn, planted label flips fixed (a positive estimate
whose interval holds a real retrained head's change on photos it never saw), a run's corrections of each kind,
the stored estimate found by the corrections' digest, the CLI, and the estimate beside a corrected run."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from core.cli import main as cli
from core.data.corrections import Corrections, digest, forget_dataset
from core.results.feature_head import accuracy_and_macro_f1, fit_head
from core.results.labels import fix_worth
from core.results.labels.fix_worth import AS_LABELLED, CORRECTED, Change, Choice, FixWorthError
from core.results.labels.fix_worth_report import (
    Held,
    caveats,
    from_to,
    headline,
    held,
    held_sentence,
    points,
    touched_words,
)
from core.runs.analysis import RunAnalysis
from core.runs.record import ANALYSIS_FILE, CONFIG_FILE
from core.runs.store import RunStore
from tests.conftest import copy_run

pytestmark = pytest.mark.backend_agnostic


def clusters(rng, n, centres):
    y = rng.integers(0, len(centres), n)
    return centres[y] + rng.normal(0, 1, (n, centres.shape[1])), y


def test_resampled_scores_are_sklearns_on_the_drawn_photos():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 80)
    labels[labels == 4] = 3  # class 4 never in the truth: macro F1 averages the classes present
    predictions = np.where(rng.random(80) < 0.6, labels, rng.integers(0, 5, 80))
    draws = [rng.integers(0, 80, 80) for _ in range(6)]
    weights = np.stack([np.bincount(d, minlength=80) for d in draws])
    accuracy, macro = fix_worth.resampled_scores(weights, labels, predictions, 5)
    for i, rows in enumerate(draws):
        y, p = labels[rows], predictions[rows]
        assert accuracy[i] == pytest.approx(accuracy_score(y, p))
        assert macro[i] == pytest.approx(f1_score(y, p, labels=np.unique(y), average="macro", zero_division=0))


def test_fixing_planted_flips_is_worth_something_and_the_interval_holds_a_real_retrained_heads_change():
    """40% of class 0's training labels flipped to class 1 on purpose; fixing them is estimated on 300 validation
    photos, then a head is really retrained with and without the fix and scored on 4,000 photos the estimate never
    saw: the estimate is positive, its interval above zero, and it holds the measured change."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 32)) * 0.9
    x_train, y_true = clusters(rng, 600, centres)
    x_val, y_val = clusters(rng, 300, centres)
    x_test, y_test = clusters(rng, 4000, centres)
    noisy = y_true.copy()
    flipped = np.flatnonzero(y_true == 0)[:60]
    noisy[flipped] = 1
    result = fix_worth.paired_change(
        x_train, noisy, y_true, np.ones(600, bool), x_val, {AS_LABELLED: (y_val, np.arange(300))}, 4
    )[AS_LABELLED]
    before, after = fit_head(x_train, noisy, 4), fit_head(x_train, y_true, 4)
    measured = [
        a - b
        for a, b in zip(
            accuracy_and_macro_f1(y_test, after.predict(x_test), 4),
            accuracy_and_macro_f1(y_test, before.predict(x_test), 4),
            strict=True,
        )
    ]
    for change, truth in zip((result["accuracy"], result["macro_f1"]), measured, strict=True):
        assert change.change > 0 and change.low > 0, change
        assert change.low <= truth <= change.high, (change, truth)
        assert change.after == pytest.approx(change.before + change.change)


def test_a_fix_that_changes_no_training_label_changes_nothing():
    rng = np.random.default_rng(1)
    x, y = clusters(rng, 120, rng.normal(0, 1, (3, 8)))
    result = fix_worth.paired_change(
        x[:80], y[:80], y[:80], np.ones(80, bool), x[80:], {AS_LABELLED: (y[80:], np.arange(40))}, 3, seeds=2
    )[AS_LABELLED]
    assert result["accuracy"].change == result["accuracy"].low == result["accuracy"].high == 0.0
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        fix_worth.paired_change(x, y, y, np.ones(120, bool), x, {}, 3, seeds=0)


@pytest.fixture
def own_run(trained_run, tmp_path):
    """A copy of the shared run in a store of its own (an estimate is written into the run folder), and the
    dataset's corrections file removed afterwards (it lives in the shared data folder)."""
    store = RunStore(tmp_path / "models")
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), store.run_dir(trained_run["run_id"]))
    run = store.get(trained_run["run_id"])
    yield store, run, trained_run["data_root"]
    forget_dataset(trained_run["data_root"], run.dataset_path)


def corrections_of_each_kind(run, data_root):
    """A correction of each kind the estimate tells apart, from the run's own photos."""
    from core.results.tasks import training_features

    train = training_features(run, data_root)
    analysis = RunAnalysis.load(run.directory)
    classes = analysis.classes
    other = classes[(int(train.labels[0]) + 1) % len(classes)]
    val_other = classes[(int(analysis.val.labels[0]) + 1) % len(classes)]
    return train, {
        train.paths[0]: {"action": "relabel", "to": other},
        train.paths[1]: {"action": "exclude"},
        train.paths[2]: {"action": "relabel", "to": classes[int(train.labels[2])]},  # the label it has
        analysis.val.paths[0]: {"action": "relabel", "to": val_other},
        analysis.test.paths[0]: {"action": "exclude"},
        "gone/photo.png": {"action": "exclude"},
    }


def test_a_runs_estimate_applies_each_kind_of_correction_and_is_found_by_its_digest(own_run):
    _, run, data_root = own_run
    train, corrections = corrections_of_each_kind(run, data_root)
    estimate = fix_worth.estimate_run(run, data_root, corrections, Choice(), seeds=2, resamples=100, train=train)
    assert estimate.touched == {
        "train_relabelled": 1,
        "train_excluded": 1,
        "val_relabelled": 1,
        "val_excluded": 0,
        "test": 1,
        "unchanged": 1,
        "missing": 1,
    }
    assert set(estimate.results) == {AS_LABELLED, CORRECTED}  # a validation label changed: scored both ways
    assert estimate.train_photos == len(train.labels) and estimate.seeds == 2
    found = fix_worth.find(run.directory, corrections)
    assert found is not None and found.digest == digest(corrections) == estimate.digest
    assert found.results[CORRECTED]["macro_f1"] == estimate.results[CORRECTED]["macro_f1"]
    assert fix_worth.find(run.directory, {"other.png": {"action": "exclude"}}) is None
    notes = " ".join(caveats(found, run))
    assert "frozen features" in notes and "test photos are never looked at" in notes
    assert "1 of the corrections is of a validation photo: " in notes and "random weights" in notes
    assert "1 of the corrections is of a test photo: " in notes and "1 already has that label" in notes
    assert "1 names a photo or class" in notes and "training photos are fixed" not in notes  # said of suspects only
    assert touched_words(found) == "2 training photos: 1 relabelled, 1 excluded; 1 validation photo: 1 relabelled"
    assert headline(found).startswith("Fixing your 6 marks would change validation accuracy by ")
    assert "points on average (95%: " in headline(found)
    assert headline(found, CORRECTED).startswith(
        "Scored against your corrected validation labels, taken as the truth (1 relabelled photo at its new label), "
        "fixing your 6 marks would change validation accuracy by "
    )


def test_the_shown_from_and_to_add_up_to_the_shown_change():
    """The two means alone would read 'from 47.7% to 48.1%' beside '+0.3 points': 'to' is 'from' plus the change."""
    change = Change(before=0.47749, after=0.48051, change=0.00302, low=-0.01, high=0.02)
    assert from_to(change) == ("47.7%", "48.0%")
    estimate = fix_worth.Estimate(
        "a" * 12, "d", 3, {"kind": "marked", "top": 0, "given": ""}, {}, {AS_LABELLED: {"accuracy": change,
        "macro_f1": change}}, 8, 100, 50, 20, 1.0,
    )  # fmt: skip
    assert "by +0.3 points on average (95%: -1.0 to +2.0), from 47.7% to 48.0%, and macro F1" in headline(estimate)
    for before, delta in ((0.5, -0.0449), (0.123456, 0.05551), (0.999, 0.0004)):
        start, end = from_to(Change(before, before + delta, delta, 0, 0))
        assert float(end[:-1]) - float(start[:-1]) == pytest.approx(float(points(delta)), abs=1e-9)


def test_the_choices_name_marks_suspects_and_the_top_n_or_say_what_is_missing(own_run):
    _, run, data_root = own_run
    with pytest.raises(FixWorthError, match="no label corrections are marked"):
        fix_worth.chosen_corrections(run, data_root, Choice())
    with pytest.raises(FixWorthError, match="find them first"):
        fix_worth.chosen_corrections(run, data_root, Choice(fix_worth.SUSPECTS))
    marks = Corrections.load(data_root, run.dataset_path)
    marks.mark("red/img_000.png", "relabel", "crimson")
    marks.mark("red/img_001.png", "fine")  # changes nothing: not a correction
    marks.save()
    assert fix_worth.chosen_corrections(run, data_root, Choice()) == {
        "red/img_000.png": {"action": "relabel", "to": "crimson"}
    }
    from core.results.labels.issues import LabelIssue, LabelReview, save

    issues = [
        LabelIssue("test/a.png", "red", "crimson", 0.1, 0.8, "test"),
        LabelIssue("red/img_001.png", "red", "crimson", 0.1, 0.8, "train"),  # marked Fine above: left out
        LabelIssue("b.png", "red", "crimson", 0.1, 0.8, "train"),
        LabelIssue("c.png", "blue", "green", 0.2, 0.7, "val"),  # a validation suspect: changes the measure only
        LabelIssue("d.png", "blue", "green", 0.2, 0.7, "train"),
        LabelIssue("e.png", "blue", "green", 0.3, 0.6, "train"),
    ]
    save(LabelReview(issues, 56, {"train": 40}, "test", supported=3), run.directory)
    marks = Corrections.load(data_root, run.dataset_path)
    marks.mark("d.png", "exclude")
    marks.mark("e.png", "relabel", "red")
    marks.mark("c.png", "relabel", "red")
    marks.save()
    every = fix_worth.chosen_corrections(run, data_root, Choice(fix_worth.SUSPECTS))
    assert every == {
        "b.png": {"action": "relabel", "to": "crimson"},
        "d.png": {"action": "exclude"},  # the person's mark, not the suggestion
        "e.png": {"action": "relabel", "to": "red"},
    }
    assert list(fix_worth.chosen_corrections(run, data_root, Choice(fix_worth.TOP, top=2))) == ["b.png", "d.png"]
    review = fix_worth.label_issues.load(run.directory)
    assert list(fix_worth.suspects_as_corrections(review, depth=review.supported)) == ["red/img_001.png", "b.png"]
    assert Choice(fix_worth.TOP, top=1).words(1) == "the top 1 training suspect"
    assert Choice(fix_worth.SUSPECTS).words(3) == "every training suspect (3)"
    for name in ("b.png", "d.png", "e.png"):
        marks.mark(name, "fine")
    marks.save()
    with pytest.raises(FixWorthError, match="among its training photos that are not marked Fine"):
        fix_worth.chosen_corrections(run, data_root, Choice(fix_worth.SUSPECTS))
    with pytest.raises(FixWorthError, match="at least 1"):
        fix_worth.chosen_corrections(run, data_root, Choice(fix_worth.TOP, top=0))


def test_the_cli_prints_the_estimate_its_interval_and_caveats(own_run):
    store, run, data_root = own_run
    where = ["--models-dir", str(store.root), "--data-dir", str(data_root)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["fix-worth", run.run_id[:6], "--top", "3", "--seeds", "2", "--json", *where])
    assert code == 0, err.getvalue()[-800:]
    result = json.loads(out.getvalue())
    assert result["choice"]["kind"] == "top" and result["corrections"] <= 3 and result["seeds"] == 2
    accuracy = result["results"]["as_labelled"]["accuracy"]
    assert accuracy["low"] <= accuracy["change"] <= accuracy["high"] or accuracy["low"] == accuracy["high"]
    assert result["headline"].startswith("Fixing the top") and result["caveats"]
    assert any(note.startswith("Only the suspects among the training photos are fixed") for note in result["caveats"])
    assert result["touched"]["val_relabelled"] == result["touched"]["val_excluded"] == 0
    assert "corrected" not in result["results"]  # no validation photo changed: one scoring
    assert fix_worth.find(run.directory, fix_worth.chosen_corrections(run, data_root, Choice("top", 3))) is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli(["fix-worth", run.run_id, "--top", "3", "--seeds", "2", *where]) == 0
    text = out.getvalue()
    assert "validation, as labelled:" in text and "what it cannot see:" in text and "95%: " in text
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert cli(["fix-worth", run.run_id, "--marked", *where]) == 1
    assert "no label corrections are marked" in err.getvalue()


def corrected_copy(store, run, corrections, second="c" * 12):
    """A copy of `run` under another id that says it applied `corrections`, its validation predictions changed
    on a third of the photos, and one validation label corrected (as the corrected run would store it)."""
    copy_run(run.directory, store.run_dir(second))
    config = json.loads((store.run_dir(second) / CONFIG_FILE).read_text())
    config["dataset"]["corrections"] = corrections
    (store.run_dir(second) / CONFIG_FILE).write_text(json.dumps(config))
    arrays = dict(np.load(store.run_dir(second) / ANALYSIS_FILE))
    logits = arrays["val_logits"]
    rows = np.arange(0, len(logits), 3)
    logits[rows] = np.roll(logits[rows], 1, axis=1)
    arrays["val_labels"][0] = (arrays["val_labels"][0] + 1) % logits.shape[1]
    np.savez(store.run_dir(second) / ANALYSIS_FILE, **arrays)
    return store.get(second)


def test_the_estimate_is_found_beside_the_corrected_run_and_its_measured_change(own_run):
    store, run, data_root = own_run
    train, corrections = corrections_of_each_kind(run, data_root)
    after = corrected_copy(store, run, corrections)
    analyses = (RunAnalysis.load(run.directory), RunAnalysis.load(after.directory))
    missing = held(run, after, analyses, other_settings=["Seed"])
    assert missing.estimate is None and f"`python -m core fix-worth {run.run_id[:6]} --marked`" in missing.sentence
    assert "also differ in Seed" in missing.sentence
    estimate = fix_worth.estimate_run(run, data_root, corrections, seeds=2, resamples=100, train=train)
    comparison = {
        "runs": {run.run_id: {"accuracy": 0.5, "macro_f1": 0.4}, after.run_id: {"accuracy": 0.6, "macro_f1": 0.45}}
    }
    result = held(run, after, analyses, comparison)
    assert result.estimate.digest == estimate.digest
    assert not result.made_before  # the copy says it was created with the first run, before this estimate
    a, b = analyses
    for labels, scoring in ((a.val.labels, AS_LABELLED), (b.val.labels, CORRECTED)):
        for logits, side in ((a.val.logits, "before"), (b.val.logits, "after")):
            predicted = logits.argmax(axis=1)
            assert result.measured[scoring]["accuracy"][side] == pytest.approx(accuracy_score(labels, predicted))
            assert result.measured[scoring]["macro_f1"][side] == pytest.approx(
                f1_score(labels, predicted, labels=np.unique(labels), average="macro", zero_division=0)
            )
    assert result.test["accuracy"]["change"] == pytest.approx(0.1)
    assert result.sentence.startswith("The estimate said ")
    assert "(on the corrected validation labels)" in result.sentence
    assert "never sees" in result.sentence and "+10.0 points" in result.sentence
    assert held(run, run, analyses) is None  # no corrections: nothing to put beside


@pytest.mark.parametrize(
    ("measured", "words"),
    [(0.02, "inside the interval"), (0.09, "more than the interval"), (-0.03, "less than the interval")],
)
def test_the_sentence_says_whether_the_measured_change_fell_inside_the_interval(measured, words):
    change = Change(before=0.7, after=0.72, change=0.02, low=0.0, high=0.05)
    estimate = fix_worth.Estimate(
        "a" * 12, "d", 3, {"kind": "marked", "top": 0, "given": ""}, {}, {AS_LABELLED: {"accuracy": change}}, 8, 100,
        50, 20, 1.0,
    )  # fmt: skip
    figures = {"accuracy": {"before": 0.7, "after": 0.7 + measured, "change": measured}}
    result = Held("a" * 12, "b" * 12, 3, estimate, {AS_LABELLED: figures}, 20, None, [], "")
    sentence = held_sentence(result)
    assert sentence.startswith("The estimate said +2.0 points (95%: +0.0 to +5.0) of validation accuracy")
    assert words in sentence
    assert not result.confounded and "confounded" not in sentence


def test_an_estimate_is_not_judged_against_a_run_that_differs_in_more_than_the_corrections():
    # the walk: the corrected run also trained on 51 photos labelled in Flora; the measured change fell inside
    change = Change(before=0.7, after=0.72, change=0.02, low=0.0, high=0.05)
    estimate = fix_worth.Estimate(
        "a" * 12, "d", 3, {"kind": "marked", "top": 0, "given": ""}, {}, {AS_LABELLED: {"accuracy": change}}, 8, 100,
        50, 20, 1.0,
    )  # fmt: skip
    figures = {"accuracy": {"before": 0.7, "after": 0.72, "change": 0.02}}
    photos = ["dataset photos (800 (1a2b3c) → 851 (4d5e6f))"]
    result = Held("a" * 12, "b" * 12, 3, estimate, {AS_LABELLED: figures}, 20, None, photos, "")
    sentence = held_sentence(result)
    assert result.confounded and result.to_dict()["confounded"] is True
    assert "held" not in sentence.replace("whether the estimate held", "") and "inside the interval" not in sentence
    assert "bbbbbb differs from aaaaaa in more than the corrections: dataset photos (800 (1a2b3c) → 851" in sentence
    assert "the comparison is confounded" in sentence and "only these corrections" in sentence


def test_an_interval_from_a_loss_to_a_gain_is_not_said_to_have_held():
    """Walk 51: '+2.5 points (95%: -4.2 to +8.3) ... measured -3.3: inside the interval, so the estimate held here'
    beside a significant test loss: an interval that cannot tell a gain from a loss says little by holding."""
    change = Change(before=0.7, after=0.725, change=0.025, low=-0.042, high=0.083)
    estimate = fix_worth.Estimate(
        "a" * 12, "d", 3, {"kind": "marked", "top": 0, "given": ""}, {}, {AS_LABELLED: {"accuracy": change}}, 8, 100,
        50, 20, 1.0,
    )  # fmt: skip
    figures = {"accuracy": {"before": 0.7, "after": 0.667, "change": -0.033}}
    sentence = held_sentence(Held("a" * 12, "b" * 12, 3, estimate, {AS_LABELLED: figures}, 20, None, [], ""))
    assert "inside the interval, but that interval runs from a loss to a gain" in sentence
    assert "so the estimate held" not in sentence and "Judge the fix by the test photos" in sentence
