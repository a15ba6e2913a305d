"""A run's model card: Hugging Face's own reader parses it, its model-index metrics equal the run's evaluation to
the last digit, what the run has not computed is named with its command, and `core card` writes it."""

from __future__ import annotations

import json

import pytest

from core.results import model_card
from core.results.evaluation.metrics import Evaluation
from core.runs.store import RunStore
from tests.conftest import copy_run


@pytest.fixture
def run(trained_run, tmp_path):
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), tmp_path / "models" / trained_run["run_id"])
    return RunStore(tmp_path / "models").get(trained_run["run_id"])


def test_huggingface_reads_the_card_and_its_metrics_are_the_runs(run):
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.repocard_data import model_index_to_eval_results

    text = model_card.render(run)
    card = hub.ModelCard(text)
    assert card.data.library_name == "keras" and card.data.pipeline_tag == "image-classification"
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert name == f"flora-{run.run_id}"
    by_type = {r.metric_type: r.metric_value for r in results}
    summary = Evaluation.load(run.directory).summary()
    assert by_type["accuracy"] == summary["accuracy"]
    assert by_type["f1"] == summary["macro"]["f1"]
    assert by_type["precision"] == summary["macro"]["precision"] and by_type["recall"] == summary["macro"]["recall"]
    assert all(r.dataset_split == "test" and r.task_type == "image-classification" for r in results)
    assert f"accuracy **{summary['accuracy']:.4f}**" in card.text
    for name in run.classes:
        assert f"| {name} | {summary['per_class'][name]['precision']:.3f} |" in card.text


def test_missing_parts_name_their_command_and_stored_ones_are_quoted(run):
    from core.results.evaluation import robustness

    text = model_card.render(run)
    assert f"`python -m core robustness {run.run_id}`" in text
    assert "## How to reproduce" in text and "python -m core train" in text
    report = robustness.RobustnessReport(
        run_id=run.run_id, classes=run.classes, image_size=32, photos=8, test_photos=8, photos_digest="x",
        clean_accuracy=0.75, accuracy={c: [0.5] * 5 for c in robustness.CORRUPTIONS}, seconds=1.0,
        seconds_per_pass=0.01, device="cpu", created=0.0, notes=[robustness.FROST_NOTE],
    )  # fmt: skip
    robustness.save(report, run.directory)
    text = model_card.render(run)
    assert "falls to 0.50 on average under the 15 corruptions" in text and "| gaussian_noise | 0.500 |" in text
    meta = model_card.read_metadata(text)["model-index"][0]["results"][0]["metrics"]
    assert {"type": "mce", "value": 0.5, "name": "Mean corruption error (15 x 5)", "verified": False} in meta


def test_the_none_of_these_figures_are_the_ones_predict_and_serve_show_at_the_threshold_named(run):
    """Issue 39 (walk 7): the card quoted '42% at 5% false alarms' where Predict and Serve said 71%: two thresholds,
    unnamed. The card's first figures are the served check's own, at the threshold named in both places; the table
    beside them says it compares the methods at 5% false alarms on the test photos."""
    from core.results.probabilities.ood import FOREIGN_NAMES, THRESHOLD_IN_USE
    from core.results.probabilities.reference import Reference

    detector = Reference.load(run.directory).detector
    chosen = detector.evidence[detector.method]
    summary, card = detector.summary(), model_card.render(run)
    section = card[card.index("## 'None of these'") :]
    assert f"At {THRESHOLD_IN_USE}" in summary and f"At {THRESHOLD_IN_USE}" in section
    shares = ", ".join(f"{FOREIGN_NAMES[k]} {v:.0%}" for k, v in chosen["foreign_flagged"].items())
    assert f"({shares})" in summary and f"({shares}): the figures Predict and Serve show" in section
    assert f"caught {chosen['foreign_flagged_all']:.0%} of images from elsewhere" in summary
    assert f"catches {chosen['foreign_flagged_all']:.0%} of the foreign images it was tried on" in section
    assert f"wrongly flags {chosen['test_flagged']:.0%} of the run's test photos" in summary
    assert f"flags {chosen['test_flagged']:.0%} of the test photos (its false alarms)" in section
    assert "To compare the methods at one false-alarm rate" in section and "| method |" in section


def _selective(max_error: float, threshold: float | None, at_default: float | None = None):
    """A stored selective fit's face, as the card reads it."""
    from types import SimpleNamespace

    from core.results.probabilities.selective import Counted

    return SimpleNamespace(
        max_error=max_error, threshold=threshold, delta=0.1, spread=None, nearest=None,
        held_out=Counted(photos=20, answered=10, errors=1, allowed_errors=3),
        threshold_at=lambda level: threshold if level == max_error else at_default,
        no_level_words=lambda: None,
    )  # fmt: skip


def test_the_card_promises_only_what_the_run_has_and_says_when_it_is_no_better_than_chance(run):
    """Walk of issue 42: 'its prediction sets and its answer-only-when-sure threshold carry guarantees' on a run with
    no threshold at any level, accuracy 0.500 (0.352-0.648) never called chance, 'Every probability Flora shows or
    serves is calibrated' beside Evaluate's raw ones, and 'at most 20% wrong' without saying it was the level last
    fitted and not the app's 5%."""
    from core.results.model_card_text import body

    found = model_card.facts(run)
    found["sets"] = None
    found["selective"] = _selective(0.2, None, at_default=None)
    found["selective_saved_at"] = "2026-11-26 08:05 UTC"
    found["summary"] = {**found["summary"], "accuracy": 0.3, "test_images": 40}  # 4 classes: chance is 0.25
    found["intervals"] = {**found["intervals"], "accuracy": [0.181, 0.454]}
    text = body(found, "0", 0.0)
    uses = text[text.index("## Uses") : text.index("## Bias")]
    assert "guarantee" not in text and "prediction sets" not in uses
    assert "no answer-only-when-sure threshold can promise at most 20% wrong on it" in uses
    assert "Test accuracy 0.300 on 40 photos: no better than chance on its test photos (its 95% interval " in text
    assert "0.181-0.454 includes 0.25, a guess among 4 classes)" in text and "cannot be used to name photos" in uses
    assert "Every probability" not in text and "own softmax, before calibration" in text
    section = text[text.index("## Answering only when sure") :]
    fitted = (
        "reports the level last fitted and stored with the run, at most 20% wrong, stored 2026-11-26 08:05 UTC "
        f"(`python -m core calibrate {run.run_id} --max-error 0.2`; the app's default when that was never run)"
    )
    assert fitted in section and "used on Predict are not stored and do not change it" in section
    assert "starts at the app's default, 5%, where no threshold can promise it" in section

    found["selective"] = _selective(0.05, 0.8)
    found["summary"] = {**found["summary"], "accuracy": 0.9}
    found["intervals"] = {**found["intervals"], "accuracy": [0.769, 0.960]}
    text = body(found, "0", 0.0)
    assert "chance" not in text[: text.index("## Model details")] and "no better than chance" not in text
    assert "promises at most 5% wrong among the photos it answers" in text
    assert "It is also the app's default" in text


def test_the_card_says_when_its_level_was_stored_and_a_promise_found_in_few_halvings(run):
    """Walk 42: the card gave the level last fitted from the command line as if it were the page's, and a promise at
    a level where 155 of 200 halvings found no threshold without saying so."""
    from dataclasses import replace

    from core.results.model_card_text import body
    from core.results.probabilities import selective
    from core.runs.files import run_files
    from tests.results.probabilities.test_selective import _fragile_fit

    near = _fragile_fit(0.05).nearest
    fitted = _fragile_fit(near["max_error"])
    assert fitted.spread.fragile
    selective.save(fitted, run.directory)
    found = model_card.facts(run)
    stamp = run_files(run).selective.stat().st_mtime
    import datetime

    when = datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert found["selective_saved_at"] == when
    section = body(found, "0", 0.0)
    section = section[section.index("## Answering only when sure") :]
    assert f"at most {near['max_error']:.0%} wrong, stored {when} (`python -m core calibrate" in section
    assert selective.halvings_words(fitted.spread, fitted.max_error) in section
    assert f"**Many halvings find no threshold here**: {selective.fragile_words(fitted.spread)}." in section
    # a spread where nearly every halving found one: no such words
    found["selective"] = replace(fitted, spread=replace(fitted.spread, without_threshold=0, share_mean=0.5))
    assert "Many halvings find no threshold here" not in body(found, "0", 0.0)


def test_intervals_hold_the_metric(run):
    evaluation = Evaluation.load(run.directory)
    ci = model_card.intervals(evaluation)
    assert ci["accuracy"][0] <= evaluation.accuracy() <= ci["accuracy"][1]
    assert 0 <= ci["macro_f1"][0] <= ci["macro_f1"][1] <= 1


def test_core_card_writes_it_into_the_run_folder(run, capsys):
    from core import cli

    code = cli.main(["card", run.run_id, "--models-dir", str(run.directory.parent), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["path"] == str(run.directory / "model_card.md")
    metrics = out["metadata"]["model-index"][0]["results"][0]["metrics"]
    assert metrics[0] == {
        "type": "accuracy",
        "value": Evaluation.load(run.directory).accuracy(),
        "name": "Accuracy",
        "verified": False,
    }


def test_macro_f1_is_sklearns():
    import numpy as np
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(2)
    for _ in range(20):
        labels, predicted = rng.integers(0, 5, 60), rng.integers(0, 6, 60)
        present = np.unique(labels)
        expected = f1_score(labels, predicted, labels=present, average="macro", zero_division=0)
        assert model_card.macro_f1(labels, predicted, present) == pytest.approx(expected)


@pytest.mark.parametrize("test_accuracy", [0.7, None])
def test_a_temperature_on_its_bound_reads_on_the_card_as_on_evaluate(run, test_accuracy):
    """Walk 41: T = 20.00 on a weak model, its calibrated answers all near 1/k, and a card that said 'its probabilities
    are calibrated on the validation split'. The card gives Evaluate's sentences, and promises no more."""
    from core.results.probabilities import calibration, calibration_words
    from pages.ui.evaluate.calibration import reading
    from tests.results.probabilities.test_calibration import weak_analysis

    cal = calibration.calibrate(weak_analysis(run.classes, test_accuracy))
    assert cal.at_bound == "upper" and cal.near_uniform, (cal.temperature, cal.after.nll)
    calibration.save(cal, run.directory)
    text = model_card.render(run)
    uses = text[text.index("## Uses") : text.index("## Bias")]
    assert "its probabilities are calibrated" not in uses.lower()
    assert "temperature-scaled on the validation split to about 25% for every photo, so they carry little" in uses
    section = text[text.index("## Calibration") : text.index("## Prediction sets")]
    said = calibration_words.bound_words(cal)
    assert said in section and said in reading(cal)  # the same words on the card and on Evaluate
    assert f"Temperature {cal.temperature:.3f} fitted on {cal.val_images} validation photos" in section
    assert f"from {cal.before.ece:.3f} to {cal.after.ece:.3f}" in section
    assert ("better than chance (25%)" in said) == (test_accuracy is not None)
    assert ("cannot tell the classes apart" in said) == (test_accuracy is None)


def test_a_temperature_inside_its_search_on_informative_logits_is_called_calibrated_on_the_card(run):
    from core.results.probabilities import calibration, calibration_words
    from tests.results.probabilities.test_calibration import _analysis

    cal = calibration.calibrate(_analysis(3.0))  # logits 3x too sharp, 400 validation photos: T fixes them
    assert cal.at_bound is None and not cal.near_uniform and not calibration_words.caveats(cal)
    calibration.save(cal, run.directory)
    text = model_card.render(run)
    assert "Its probabilities are calibrated on the validation split" in text
    section = text[text.index("## Calibration") : text.index("## Prediction sets")]
    assert "bound" not in section and "Calibration changes no ranking, so no accuracy." in section
