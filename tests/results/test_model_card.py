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
    from core.results import robustness

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
