"""A threshold per class: its answers' precision and recall equal scikit-learn's precision-recall curve of that
class's one-vs-rest score, the words count what the figures count, and saved thresholds hold back answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.results.probabilities import class_thresholds as ct
from core.runs.analysis import softmax
from core.runs.files import run_files

pytestmark = pytest.mark.backend_agnostic


def _draw(n=400, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    p = softmax(rng.normal(size=(n, classes)) * 2.5)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return p, labels


@pytest.mark.parametrize("c", [0, 1, 3])
def test_curve_equals_sklearns_precision_recall_curve(c):
    from sklearn.metrics import precision_recall_curve

    p, labels = _draw(seed=c)
    # the class's answers: photos whose top class is c, scored by that top probability (others never answer c)
    score = np.where(p.argmax(axis=1) == c, p.max(axis=1), 0.0)
    precision, recall, cuts = precision_recall_curve(labels == c, score)
    checked = 0
    for at in ct.curve(p, labels, c):
        if at.threshold <= 0 or at.threshold > cuts[-1]:
            continue
        i = np.searchsorted(cuts, at.threshold, side="left")  # score >= t  <=>  score >= the next score cut
        assert at.precision == pytest.approx(precision[i]) and at.recall == pytest.approx(recall[i])
        checked += 1
    assert checked >= 30


def test_words_count_what_the_figures_count():
    p = np.array([[0.8, 0.2], [0.75, 0.25], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])
    labels = np.array([0, 0, 1, 0, 1])
    at = ct.class_answers(p, labels, 0, 0.7)
    assert (at.answers, at.right, at.photos) == (3, 2, 3)
    from scipy.stats import binomtest

    low, high = binomtest(2, 3).proportion_ci(0.95, method="wilson")  # walk 52: '8 of 12' said with no interval
    between = f" (95%: {low:.0%}-{high:.0%})"
    assert ct.words("tulip", at) == (
        f"at 0.70: 2 of 3 'tulip' answers right{between}, 2 of 3 'tulip' photos found{between}"
    )
    assert ct.words("rose", ct.class_answers(p, labels, 1, 0.99)).startswith("at 0.99: no photo answered 'rose'")


def test_saved_thresholds_hold_back_and_are_checked(tmp_path):
    saved = ct.save(tmp_path, {"tulip": 0.7, "rose": 0.0}, ["rose", "tulip"], by="ana")
    assert saved == {"tulip": 0.7} and ct.load(tmp_path) == {"tulip": 0.7}
    assert json.loads(run_files(tmp_path).class_thresholds.read_text())["saved_by"] == "ana"
    assert ct.decision(saved, "tulip", 0.75) == (True, None)
    answered, why = ct.decision(saved, "tulip", 0.62)
    assert not answered and why == "62.0% for tulip is under its saved threshold of 0.70"
    assert ct.decision(saved, "rose", 0.3) == (True, None)
    with pytest.raises(ct.ThresholdError, match="unknown class"):
        ct.check({"daisy": 0.5}, ["rose"])
    with pytest.raises(ct.ThresholdError, match="below 1"):
        ct.check({"rose": 1.0}, ["rose"])


def _two_classes(tops: list[float], c: list[int]) -> np.ndarray:
    top = np.asarray(tops)
    return np.where(np.asarray(c)[:, None] == np.arange(2), top[:, None], 1 - top[:, None])


def test_the_slider_runs_over_the_probabilities_the_run_gives():
    """Walk of issue 42: a slider from 0.00 to 0.99 while every calibrated probability sat in 0.44-0.56."""
    bunched = _two_classes([0.51, 0.56, 0.53, 0.52], [0, 0, 1, 1])  # class 0's answers: 0.51 and 0.56
    span = ct.slider_range(bunched, 0)
    assert (span.low, span.high, span.seen) == (0.5, pytest.approx(0.56), (0.51, 0.56))
    assert span.step == 0.001 and span.bunched  # close together: a finer step, and said why
    assert "come with 0.510-0.560" in span.words("rose") and "bunch near 1/2 = 50%" in span.words("rose")
    assert span.threshold(0.5) == 0.0 and span.threshold(0.53) == 0.53  # at 1/k: no threshold kept

    spread = _two_classes([0.97, 0.7, 0.9, 0.6], [0, 0, 1, 1])
    span = ct.slider_range(spread, 0, saved=0.99)
    assert (span.low, span.high, span.step) == (0.5, 0.99, 0.01) and not span.bunched  # a saved 0.99 stays reachable
    assert ct.slider_range(spread, 0).high == pytest.approx(0.97)
    none = ct.slider_range(_two_classes([0.9, 0.8], [1, 1]), 0)
    assert none.seen is None and "No test photo is answered 'rose'" in none.words("rose")
