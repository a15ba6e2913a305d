"""Evaluation queries on known probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from core.results.evaluation.metrics import Evaluation, EvaluationMissing

CLASSES = ["daisy", "rose", "tulip"]
# true labels and predicted probabilities, chosen so every number below is checkable by hand
LABELS = [0, 0, 0, 1, 1, 2, 2, 2]
PROBS = [
    [0.9, 0.05, 0.05],  # daisy ok
    [0.6, 0.3, 0.1],  # daisy ok
    [0.1, 0.8, 0.1],  # daisy -> rose (confident)
    [0.2, 0.7, 0.1],  # rose ok
    [0.1, 0.3, 0.6],  # rose -> tulip
    [0.1, 0.1, 0.8],  # tulip ok
    [0.05, 0.05, 0.9],  # tulip ok
    [0.2, 0.5, 0.3],  # tulip -> rose
]


@pytest.fixture
def evaluation():
    return Evaluation(np.array(PROBS), np.array(LABELS), CLASSES, [f"img{i}.jpg" for i in range(8)])


def test_accuracy_and_per_class(evaluation):
    assert evaluation.accuracy() == pytest.approx(5 / 8)
    table = evaluation.per_class().set_index("class")
    # daisy: predicted 2x (both right), 3 true -> precision 1, recall 2/3
    assert table.loc["daisy", "precision"] == pytest.approx(1.0)
    assert table.loc["daisy", "recall"] == pytest.approx(2 / 3)
    # rose: predicted 3x (1 right), 2 true -> precision 1/3, recall 1/2
    assert table.loc["rose", "precision"] == pytest.approx(1 / 3)
    assert table.loc["rose", "recall"] == pytest.approx(1 / 2)
    assert table["support"].tolist() == [3, 2, 3]
    averages = evaluation.averages()
    assert averages["macro"]["recall"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)


def test_confusion_matrix_counts_and_normalised(evaluation):
    np.testing.assert_array_equal(evaluation.confusion_matrix(), [[2, 1, 0], [0, 1, 1], [0, 1, 2]])
    np.testing.assert_allclose(evaluation.confusion_matrix("true")[1], [0, 0.5, 0.5])
    with pytest.raises(ValueError):
        evaluation.confusion_matrix("all")


def test_top_losses_are_the_confident_mistakes(evaluation):
    top = evaluation.top_losses(2)
    assert top["path"].tolist() == ["img2.jpg", "img4.jpg"]  # p_true 0.1 and 0.3
    assert top.loc[0, "true"] == "daisy" and top.loc[0, "predicted"] == "rose"
    assert top.loc[0, "loss"] == pytest.approx(-np.log(0.1))
    assert len(evaluation.top_losses(10)) == 3  # only the wrong ones


def test_most_confused_and_pair(evaluation):
    confused = evaluation.most_confused()
    assert set(zip(confused["true"], confused["predicted"], strict=True)) == {
        ("daisy", "rose"),
        ("rose", "tulip"),
        ("tulip", "rose"),
    }
    assert confused["count"].tolist() == [1, 1, 1]
    pair = evaluation.pair("tulip", "rose")
    assert pair["path"].tolist() == ["img7.jpg"] and pair.loc[0, "p_predicted"] == pytest.approx(0.5)
    assert evaluation.pair(0, 0)["path"].tolist() == ["img0.jpg", "img1.jpg"]  # most confident first
    with pytest.raises(KeyError):
        evaluation.pair("lily", "rose")


def test_classes_by_error_and_top_k(evaluation):
    assert evaluation.classes_by_error()[0] == "rose"
    assert evaluation.top_k_accuracy(1) == pytest.approx(evaluation.accuracy())
    assert evaluation.top_k_accuracy(2) == 1.0  # every mistake has the true class second


def test_error_counts_and_classes_with_most_errors(evaluation):
    # off-diagonal: daisy->rose, rose->tulip, tulip->rose: rose is in all three
    assert evaluation.error_counts().to_dict() == {"daisy": 1, "rose": 3, "tulip": 2}
    assert evaluation.classes_with_most_errors(2) == ["rose", "tulip"]


def test_save_load_round_trip(evaluation, tmp_path):
    evaluation.cache_positions = np.arange(8) + 100
    evaluation.save(tmp_path)
    loaded = Evaluation.load(tmp_path)
    np.testing.assert_allclose(loaded.probabilities, evaluation.probabilities)
    assert loaded.classes == CLASSES and loaded.paths == evaluation.paths
    np.testing.assert_array_equal(loaded.cache_positions, evaluation.cache_positions)
    summary = loaded.summary()
    assert summary["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 1, 2]]
    assert summary["per_class"]["rose"]["support"] == 2
    with pytest.raises(EvaluationMissing):
        Evaluation.load(tmp_path / "nothing")


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="columns"):
        Evaluation(np.zeros((2, 2)), np.zeros(2), ["a", "b", "c"], ["x", "y"])


def test_the_classes_of_the_top_mistakes_show_those_mistakes_and_untested_classes_leave_the_macro():
    from core.results.evaluation.metrics import Evaluation

    classes = [f"c{i}" for i in range(6)]
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 3])  # c4 and c5 have no test photo
    predictions = np.array([4, 4, 0, 5, 1, 2, 2, 3])  # c0 -> c4 twice, c1 -> c5 once
    probabilities = np.full((8, 6), 0.02)
    probabilities[np.arange(8), predictions] = 0.9
    evaluation = Evaluation(
        probabilities=probabilities, labels=labels, classes=classes, paths=[f"{i}.jpg" for i in range(8)]
    )
    assert evaluation.classes_of_top_mistakes(2) == ["c0", "c4"]  # both sides of the most frequent mistake
    assert evaluation.classes_of_top_mistakes(4) == ["c0", "c4", "c1", "c5"]
    per_class = evaluation.per_class().set_index("class")
    tested = per_class[per_class["support"] > 0]
    assert evaluation.averages()["macro"]["f1"] == pytest.approx(tested["f1"].mean())
