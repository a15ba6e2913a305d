"""Calibration: ECE/MCE/NLL/Brier by hand, temperature scaling recovers a known T, stored with the run."""

from __future__ import annotations

import numpy as np
import pytest

from core.results.probabilities import calibration
from core.results.probabilities import calibration_words as words
from core.runs.analysis import RunAnalysis, SplitArrays, softmax

pytestmark = pytest.mark.backend_agnostic


def _draw(n: int, classes: int, temperature: float, seed: int):
    """Logits z and labels drawn from softmax(z / T0): a model exactly T0 times too sure."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(n, classes))
    p = softmax(logits, temperature).astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return logits, labels


@pytest.mark.parametrize("t0", [0.5, 1.0, 2.5])
def test_the_fit_recovers_the_temperature_labels_were_drawn_with(t0):
    logits, labels = _draw(6000, 5, t0, seed=int(t0 * 10))
    fitted = calibration.fit_temperature(logits, labels)
    assert fitted == pytest.approx(t0, rel=0.08)
    assert calibration.logits_nll(logits, labels, fitted) <= calibration.logits_nll(logits, labels, 1.0) + 1e-9


def test_scaling_never_changes_the_prediction():
    logits, _labels = _draw(500, 7, 2.0, seed=3)
    for t in (0.3, 1.0, 4.0):
        assert np.array_equal(softmax(logits, t).argmax(axis=1), logits.argmax(axis=1))
    raw = softmax(logits)
    assert np.allclose(calibration.rescale(raw, 2.0), softmax(logits, 2.0), atol=1e-6)


def test_ece_by_hand():
    # 4 images: confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 1.0 (right); 2 classes
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [1.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    # bins of width 1/15: 0.9 -> bin 13 ([0.8667, 0.9333)), 0.6 -> bin 9 ([0.6, 0.6667)), 1.0 -> bin 14 (closed)
    # bin 13: acc 0.5, conf 0.9 -> gap 0.4, weight 2/4; bin 9: acc 1, conf 0.6 -> 0.4, 1/4; bin 14: acc 1, conf 1 -> 0
    assert calibration.ece(p, y) == pytest.approx(0.5 * 0.4 + 0.25 * 0.4)
    assert calibration.mce(p, y) == pytest.approx(0.4)
    rows = calibration.reliability(p, y)
    assert [r["count"] for r in rows if r["count"]] == [1, 2, 1]
    assert rows[14]["count"] == 1 and rows[14]["confidence"] == 1.0  # 1.0 is in range: the last bin is closed


def test_edges_belong_to_the_bin_above_and_zero_and_one_are_counted():
    assert calibration.bin_index(np.array([0.0, 1 / 15, 0.5, 14 / 15, 1.0])).tolist() == [0, 1, 7, 14, 14]


def test_nll_and_brier_by_hand():
    p = np.array([[0.5, 0.5], [0.8, 0.2]])
    y = np.array([0, 1])
    assert calibration.nll(p, y) == pytest.approx(-(np.log(0.5) + np.log(0.2)) / 2)
    assert calibration.brier(p, y) == pytest.approx(((0.25 + 0.25) + (0.64 + 0.64)) / 2)


def test_binary_reliability_agrees_with_scikit_learn():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    p1 = rng.uniform(0, 1, 3000)
    y = (rng.uniform(0, 1, 3000) < p1**1.5).astype(int)
    p = np.stack([1 - p1, p1], axis=1)
    # scikit-learn bins P(class 1) with the last bin closed too; compare on the positive class's probability
    true_frac, mean_pred = calibration_curve(y, p1, n_bins=15, strategy="uniform")
    index = calibration.bin_index(p1)
    ours = [(y[index == b].mean(), p1[index == b].mean()) for b in range(15) if np.any(index == b)]
    assert np.allclose(np.array(ours), np.stack([true_frac, mean_pred], axis=1), atol=1e-12)
    # and the top-label reliability (what Flora plots) is a finite, sane number
    assert 0 <= calibration.ece(p, y) < 0.5


def test_constant_and_empty_inputs_give_numbers():
    p = np.full((10, 4), 0.25)
    y = np.zeros(10, dtype=int)
    assert np.isfinite(calibration.ece(p, y)) and calibration.ece(np.zeros((0, 4)), np.zeros(0, int)) == 0.0
    low, high = calibration.ece_interval(p, y, samples=50)
    assert low <= high


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_images():
    logits, labels = _draw(4000, 5, 2.0, seed=9)
    p = softmax(logits)
    small = calibration.ece_interval(p[:200], labels[:200], samples=400)
    large = calibration.ece_interval(p, labels, samples=400)
    assert small[0] <= calibration.ece(p[:200], labels[:200]) <= small[1]
    assert large[1] - large[0] < small[1] - small[0]


def _analysis(t0: float, n: int = 400) -> RunAnalysis:
    logits, labels = _draw(2 * n, 4, t0, seed=5)
    feats = np.zeros((n, 2048), dtype=np.float16)
    parts = [
        SplitArrays(logits[s], feats, labels[s], [f"c/{i}.png" for i in range(n)], np.arange(n))
        for s in (slice(0, n), slice(n, 2 * n))
    ]
    return RunAnalysis(["a", "b", "c", "d"], *parts)


def test_a_run_is_calibrated_once_and_the_fit_is_stored(tmp_path):
    _analysis(3.0).save(tmp_path)
    first = calibration.calibrate_run(tmp_path)
    assert first.temperature > 1.5  # the logits were 3x too sharp
    assert first.after.ece < first.before.ece and first.after.nll < first.before.nll
    assert first.after.accuracy == first.before.accuracy
    assert calibration.stored_temperature(tmp_path) == pytest.approx(first.temperature)
    again = calibration.calibrate_run(tmp_path)
    assert again.to_dict() == first.to_dict()
    summary = first.summary()
    assert {"temperature", "ece_before", "ece_after", "nll_before", "nll_after"} <= set(summary)
    assert first.few_validation_images is False  # 100 validation images per class


def test_the_temperature_search_minimises_the_same_nll_as_logits_nll():
    from core.results.probabilities.calibration import fit_temperature, logits_nll

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 50, 2000)
    logits = rng.normal(0, 1, (2000, 50)).astype(np.float32)
    logits[np.arange(2000), labels] += 2.5
    logits *= 3.0  # over-confident: the best T is above 1
    t = fit_temperature(logits, labels)
    assert t > 1.05
    assert logits_nll(logits, labels, t) <= min(logits_nll(logits, labels, t * f) for f in (0.97, 1.03)) + 1e-9


def weak_analysis(classes: list[str], test_accuracy: float | None, n: int = 1000, seed: int = 11) -> RunAnalysis:
    """A weak model as the analyst's walks met it: validation logits that carry almost nothing yet are sure of
    themselves (the temperature search runs to its upper bound), and test photos whose top class is right
    `test_accuracy` of the time with logits only a little apart (None: as uninformative as validation)."""
    rng = np.random.default_rng(seed)
    k = len(classes)

    def coin(labels):
        logits = rng.normal(0, 6, (len(labels), k))
        logits[np.arange(len(labels)), labels] += 0.15  # barely better than a coin
        return logits

    val_labels, test_labels = rng.integers(0, k, n), rng.integers(0, k, n)
    if test_accuracy is None:
        test_logits = coin(test_labels)
    else:
        right = rng.uniform(size=n) < test_accuracy
        top = np.where(right, test_labels, (test_labels + rng.integers(1, k, n)) % k)
        test_logits = np.zeros((n, k))
        test_logits[np.arange(n), top] = 0.01 + np.abs(rng.normal(0, 2, n))
    feats = np.zeros((n, 4), np.float16)
    paths = [f"c/{i}.png" for i in range(n)]
    parts = [
        SplitArrays(z, feats, y, paths, np.arange(n))
        for z, y in ((coin(val_labels), val_labels), (test_logits, test_labels))
    ]
    return RunAnalysis(list(classes), *parts)


def test_a_temperature_on_the_bound_with_answers_no_better_than_chance_says_it_cannot_tell():
    from pages.ui.evaluate.calibration import reading

    cal = calibration.calibrate(weak_analysis(["cats", "dogs"], None))
    assert cal.temperature == pytest.approx(calibration.T_BOUNDS[1], rel=1e-3) and cal.at_bound == "upper"
    assert cal.near_uniform and cal.after.nll == pytest.approx(np.log(2), abs=0.02)
    said = words.bound_words(cal)
    assert said.startswith("T = 20.00 is the upper bound of Flora's search (0.05-20): the search stopped there")
    assert "the calibrated model says about 50% for every photo" in said and "ln 2 = 0.693" in said
    assert f"test NLL {cal.before.nll:.3f} before, {cal.after.nll:.3f} after" in said
    assert f"right on {cal.after.accuracy:.1%} of the 1000 test photos before scaling and after" in said
    assert "includes chance (50%): on these photos it cannot tell the classes apart either" in said
    assert f"goes from {cal.before.ece:.3f} to {cal.after.ece:.3f}, smaller only because" in said
    read = reading(cal)
    assert "improves it clearly" not in read and said in read
    assert cal.summary()["temperature_at_bound"] == "upper" and cal.summary()["near_uniform_after"] is True
    assert calibration.Calibration.from_dict(cal.to_dict()).classes == 2


def test_a_temperature_on_the_bound_over_a_70_percent_model_says_its_confidence_not_its_answers_is_lost():
    """Walk 41: T = 20.00, the calibrated answers of a 70%-accurate model all near 50%, and words that said it could
    not tell. Its answers are its own (temperature scaling keeps each photo's top class); its confidence is lost."""
    from pages.ui.evaluate.calibration import reading

    cal = calibration.calibrate(weak_analysis(["cats", "dogs"], 0.7))
    assert cal.at_bound == "upper" and cal.near_uniform, (cal.temperature, cal.after.nll)
    assert cal.after.accuracy == cal.before.accuracy == pytest.approx(0.7, abs=0.04)
    said = words.bound_words(cal)
    assert "T = 20.00 is the upper bound of Flora's search (0.05-20)" in said
    assert "says about 50% for every photo" in said and "its confidence carries little information" in said
    kept = f"right on {cal.after.accuracy:.1%} of the 1000 test photos before scaling and after, better than chance"
    assert kept in said
    assert "So its answers are worth more than the 50% beside them says" in said
    assert f"(ECE) shows it: {cal.before.ece:.3f} before scaling, {cal.after.ece:.3f} after" in said
    assert cal.after.ece > 0.1  # saying 50% while right 70% of the time: the ECE says it, and so do the words
    assert "T was fitted on the 1000 validation photos, where the model scored about what a guess scores" in said
    assert "cannot tell" not in said and "improves it clearly" not in reading(cal) and said in reading(cal)
    assert said in words.caveats(cal)  # Predict's caption gives the same sentences
    assert "to about 50% for every photo, so they carry little information" in words.promise_words(cal)


def test_a_temperature_inside_the_search_says_nothing_of_a_bound():
    from pages.ui.evaluate.calibration import reading

    fine = calibration.calibrate(_analysis(3.0))  # logits 3x too sharp, and informative: no such sentence
    assert fine.at_bound is None and not fine.near_uniform and words.bound_words(fine) is None
    assert "upper bound" not in reading(fine) and "every photo" not in reading(fine)
    promise = words.promise_words(fine)
    assert "bound" not in promise and "little information" not in promise
    older = {**fine.to_dict()}
    older.pop("classes")  # a calibration.json from before the class count was kept
    assert calibration.Calibration.from_dict(older).class_count == 4


def test_confident_answers_often_wrong_are_not_called_about_one_in_k():
    """Walk 53: 'the calibrated model says about 33% for every photo' beside answers of 95% and 89%: a test NLL near
    ln K also comes from confident answers that are often wrong; near-uniform needs the top probabilities near 1/K."""
    cal = calibration.calibrate(weak_analysis(["cats", "dogs"], None))
    assert cal.near_uniform  # every photo near 50%: the NLL and the top probabilities agree
    bins = [{"count": 50, "confidence": 0.95, "accuracy": 0.5, "gap": 0.45}, {"count": 50, "confidence": 0.6}]
    confident = calibration.Calibration(**{**cal.__dict__, "reliability_after": bins})
    assert confident.after.nll >= calibration.NEAR_UNIFORM * np.log(2) and not confident.near_uniform
    assert "for every photo" not in words.promise_words(confident)
