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


def test_runs_split_differently_are_paired_on_the_photos_they_share_and_say_so():
    # the walk of issue 39: another seed draws another split, so "another random start" shared only a few test photos
    labels = np.tile(np.arange(3), 12)
    a = _result("a" * 12, np.ones(36, dtype=bool), labels)
    shared = a.analysis.test.paths[:6]
    others = [f"elsewhere/{i}.jpg" for i in range(30)]
    b = _result("b" * 12, np.zeros(36, dtype=bool), labels, paths=[*shared, *others])
    out = compare.compare([a, b])
    assert out["test_images"] == 6 and out["mcnemar"]["b"] == 6  # paired statistics on the shared photos alone
    assert out["runs"]["a" * 12]["test_images"] == 6
    note = out["split_differs"]
    assert "split differently" in note and "they share only 6 (test photos: aaaaaa 36, bbbbbb 36)" in note
    assert "seed draws the split as well as the weights' start" in note and "on the 6 shared photo(s) alone" in note
    assert out["difference"] is None  # not blamed on corrections or changed photos
    same = compare.compare([a, _result("c" * 12, np.ones(36, dtype=bool), labels)])
    assert same["split_differs"] is None


def _trained(result, config, dataset="f00d", corrections=""):
    result.config, result.dataset, result.corrections = config, dataset, corrections
    return result


def test_two_random_starts_on_the_same_split_are_paired_on_all_photos_and_said_to_be_chance():
    from core.settings.config import TrainConfig

    labels = np.tile(np.arange(3), 12)
    rng = np.random.default_rng(5)
    first = TrainConfig(epochs=3, seed=42)  # its seed drew its split
    a = _trained(_result("a" * 12, rng.uniform(size=36) < 0.7, labels), first)
    b = _trained(_result("b" * 12, rng.uniform(size=36) < 0.7, labels, seed=1), first.replace(seed=7, split_seed=42))
    out = compare.compare([a, b])
    assert out["test_images"] == 36 and out["split_differs"] is None and out["difference"] is None
    assert out["same_split"].startswith("Same split, another random start: the difference is what chance alone moves")
    assert "only the seed differs (aaaaaa seed 42, bbbbbb seed 7)" in out["same_split"]

    def note(**changes):
        a2 = _trained(_result("a" * 12, np.ones(36, bool), labels), first)
        fields = {"config": first.replace(seed=7, split_seed=42), "dataset": "f00d", "corrections": "", **changes}
        b2 = _trained(_result("b" * 12, np.ones(36, bool), labels), **fields)
        return compare.compare([a2, b2])["same_split"]

    assert note() is not None
    assert note(config=first.replace(seed=7, split_seed=42, learning_rate=0.01)) is None  # more than chance differs
    assert note(corrections='{"x.jpg":"excluded"}') is None  # trained on other labels
    assert note(dataset="beef") is None  # other photos
    assert note(config=None) is None  # settings unknown: nothing claimed
    assert compare.compare([a, _trained(_result("a" * 12, np.ones(36, bool), labels), first)])["same_split"] is None


def test_runs_split_differently_are_told_how_to_keep_the_split():
    from core.settings.config import TrainConfig

    labels = np.tile(np.arange(3), 12)
    a = _trained(_result("a" * 12, np.ones(36, dtype=bool), labels), TrainConfig(epochs=3, seed=42))
    others = [*a.analysis.test.paths[:6], *[f"elsewhere/{i}.jpg" for i in range(30)]]
    b = _result("b" * 12, np.zeros(36, dtype=bool), labels, paths=others)
    b = _trained(b, TrainConfig(epochs=3, seed=7))
    out = compare.compare([a, b])
    assert out["same_split"] is None
    assert "train again like aaaaaa with its split seed, 42, and its validation and test shares" in out["split_differs"]
    assert "--split-seed on `core train`, or the Train page's Split seed (under Advanced)" in out["split_differs"]


def test_the_same_split_note_names_each_seed_once():
    """Walk 41: '(7f80f7 · … · seed 1 · split seed 42 seed 1, …)': a title from the run's settings says its seed."""
    from core.results.evaluation.compare import _with_seed

    assert _with_seed("7f80f7 · 64 px · seed 1 · split seed 42", 1) == "7f80f7 · 64 px · seed 1 · split seed 42"
    assert _with_seed("7f80f7 · split seed 1", 1) == "7f80f7 · split seed 1 seed 1"  # that 1 is the split's
    assert _with_seed("67e7f4", 2) == "67e7f4 seed 2"
