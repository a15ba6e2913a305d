"""Comparing runs: refusal when the test photos or labels differ, McNemar's exact test, per-class F1."""

from __future__ import annotations

import numpy as np
import pytest

from core.results.evaluation import compare
from core.results.probabilities.calibration import calibrate
from core.runs.analysis import RunAnalysis, SplitArrays

pytestmark = pytest.mark.backend_agnostic
CLASSES = ["daisy", "rose", "tulip"]


def _result(run_id: str, correct: np.ndarray, labels: np.ndarray, paths=None, classes=CLASSES, seed=0):
    """A run whose test predictions are right exactly where `correct` says."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    predicted = np.where(correct, labels, (labels + 1) % len(classes))
    logits = rng.normal(0, 0.3, size=(n, len(classes))).astype(np.float32)
    logits[np.arange(n), predicted] += 3
    paths = paths or [f"{classes[y]}/{i}.jpg" for i, y in enumerate(labels)]
    feats = np.zeros((n, 2048), dtype=np.float16)
    part = SplitArrays(logits, feats, labels, paths, np.arange(n))
    analysis = RunAnalysis(
        list(classes), part, SplitArrays(logits.copy(), feats, labels.copy(), list(paths), np.arange(n))
    )
    return compare.RunResult(run_id, analysis, calibrate(analysis))


def test_mcnemar_exact_p_values():
    a = np.array([True] * 12 + [False] * 31 + [True] * 50)
    b = np.array([False] * 12 + [True] * 31 + [True] * 50)
    test = compare.mcnemar(a, b)
    from scipy.stats import binom

    assert (test["b"], test["c"]) == (12, 31)
    assert test["p_value"] == pytest.approx(2 * binom.cdf(12, 43, 0.5))
    assert test["p_value"] < 0.01
    words = compare.verdict(test)
    assert (
        words.startswith("B is better than A on 31 photo(s), worse on 12; p = 0.00")
        and "unlikely to be chance" in words
    )
    assert compare.mcnemar(a, a)["p_value"] == 1.0  # no discordant photo
    assert "consistent with chance" in compare.verdict(compare.mcnemar([True, False], [False, True]))


def test_two_runs_on_the_same_photos_compare_and_report_their_discordant_photos():
    labels = np.tile(np.arange(3), 40)
    rng = np.random.default_rng(3)
    a_correct = rng.uniform(size=120) < 0.6
    b_correct = a_correct | (rng.uniform(size=120) < 0.5)  # B fixes many of A's mistakes, breaks none
    a = _result("aaaaaa111111", a_correct, labels)
    b = _result("bbbbbb222222", b_correct, labels, seed=1)
    out = compare.compare([a, b])
    assert out["runs"]["aaaaaa111111"]["accuracy"] == pytest.approx(a_correct.mean())
    assert out["mcnemar"] == {**compare.mcnemar(a_correct, b_correct)}
    assert out["mcnemar"]["b"] == 0 and out["mcnemar"]["c"] == int((b_correct & ~a_correct).sum())
    assert set(out["per_class_f1_delta"]) == set(CLASSES)
    assert all(delta >= 0 for delta in out["per_class_f1_delta"].values())
    photos = compare.disagreements(a, b)
    assert len(photos["a_only"]) == 0 and len(photos["b_only"]) == out["mcnemar"]["c"]


def test_the_same_photos_in_another_order_are_aligned():
    labels = np.tile(np.arange(3), 10)
    correct = np.arange(30) % 4 != 0
    a = _result("a" * 12, correct, labels)
    order = np.random.default_rng(0).permutation(30)
    paths = [a.analysis.test.paths[i] for i in order]
    b = _result("b" * 12, correct[order], labels[order], paths=paths)
    assert compare.compare([a, b])["mcnemar"] == {"b": 0, "c": 0, "p_value": 1.0}


@pytest.mark.parametrize(
    "change, reason",
    [
        ("classes", "different classes"),
        ("photos", "tested on different photos"),
    ],
)
def test_runs_that_are_not_paired_are_refused_with_the_reason(change, reason):
    labels = np.tile(np.arange(3), 10)
    correct = np.ones(30, dtype=bool)
    a = _result("a" * 12, correct, labels)
    if change == "classes":
        b = _result("b" * 12, correct, labels, classes=["daisy", "rose", "tulips"])
    else:
        b = _result("b" * 12, correct, labels, paths=[f"x/{i}.jpg" for i in range(30)])
    with pytest.raises(compare.NotComparable, match=reason):
        compare.compare([a, b])


def test_runs_a_correction_changed_are_compared_on_their_common_photos_and_say_so():
    """Run B excluded one test photo and relabelled another: the pair is compared on the other 28 photos."""
    labels = np.tile(np.arange(3), 10)
    a = _result("a" * 12, np.ones(30, dtype=bool), labels)
    relabelled = labels.copy()
    relabelled[1] = (relabelled[1] + 1) % 3
    keep = np.arange(1, 30)  # photo 0 excluded from B's test split
    wrong = np.zeros(29, dtype=bool)  # B gets everything wrong
    b = _result("b" * 12, wrong, relabelled[keep], paths=[a.analysis.test.paths[i] for i in keep])
    out = compare.compare([a, b])
    assert out["test_images"] == 28
    assert out["left_out"] == {"only_in": {"a" * 12: 1, "b" * 12: 0}, "relabelled": 1}
    assert (
        "1 test photo(s) only aaaaaa has" in out["difference"]
        and "1 whose label a correction changed" in out["difference"]
    )
    assert out["mcnemar"]["b"] == 28 and out["runs"]["a" * 12]["test_images"] == 28


def test_one_run_or_six_are_refused():
    labels = np.arange(3)
    one = _result("a" * 12, np.ones(3, bool), labels)
    with pytest.raises(compare.NotComparable, match="compare 2 to 5 runs"):
        compare.compare([one])
