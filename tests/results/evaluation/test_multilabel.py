"""A multi-label run's test evaluation: its figures against scikit-learn, its intervals, its random-scorer baseline,
the curve, counts and confusion, the words on a weak model, and the files it is kept in."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from core.results.evaluation import multilabel_bootstrap as boot
from core.results.evaluation import multilabel_views as views
from core.results.evaluation import multilabel_words as words
from core.results.evaluation.multilabel import NO_LABEL, MultilabelEvaluation, MultilabelEvaluationMissing
from core.results.probabilities import label_thresholds
from core.runs.analysis import RunAnalysis, SplitArrays
from core.train.average_precision import average_precisions  # scikit-learn's (tests/train/test_multilabel.py)

pytestmark = pytest.mark.backend_agnostic

LABELS = ["road", "water", "cloud", "field", "none-seen"]


def _evaluation(n: int = 120, seed: int = 0, signal: float = 0.3) -> MultilabelEvaluation:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, 5)) < [0.5, 0.2, 0.3, 0.05, 0.0]).astype(np.uint8)
    scores = np.clip(signal * targets + rng.random((n, 5)) * (1 - signal), 0, 1).round(2)  # ties included
    thresholds = np.array([0.45, 0.5, 0.3, 0.6, 0.5])
    return MultilabelEvaluation(scores, targets, LABELS, [f"images/p{i}.png" for i in range(n)], thresholds)


def test_the_figures_are_scikit_learns():
    ev = _evaluation()
    truth, scores, predicted = ev.targets, ev.probabilities, ev.predicted.astype(int)
    tested = truth.any(axis=0)
    assert ev.mean_average_precision() == pytest.approx(
        skm.average_precision_score(truth[:, tested], scores[:, tested], average="macro"), abs=1e-9
    )
    assert ev.micro_average_precision() == pytest.approx(
        skm.average_precision_score(truth, scores, average="micro"), abs=1e-9
    )
    p, r, f, _ = skm.precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    ours = ev.precision_recall_f1()
    for mine, theirs in zip(ours, (p, r, f), strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-12)
    assert ev.exact_match() == pytest.approx(skm.accuracy_score(truth, predicted))
    assert ev.hamming_loss() == pytest.approx(skm.hamming_loss(truth, predicted))
    assert ev.f1_macro() == pytest.approx(f[tested].mean())
    counts = ev.counts()
    for j in range(5):
        tn, fp, fn, tp = skm.confusion_matrix(truth[:, j], predicted[:, j], labels=[0, 1]).ravel()
        assert (counts["found"][j], counts["added"][j], counts["missed"][j], counts["left out"][j]) == (tp, fp, fn, tn)


def test_a_weighted_resample_is_the_photos_repeated():
    ev = _evaluation(n=50, seed=3)
    weights = np.random.default_rng(1).multinomial(50, np.full(50, 1 / 50), size=4)
    per_label = boot.weighted_average_precisions(ev.targets, ev.probabilities, weights)
    micro = boot.micro_average_precision(ev.targets, ev.probabilities, weights)
    for b in range(4):
        rows = np.repeat(np.arange(50), weights[b])
        truth, scores = ev.targets[rows], ev.probabilities[rows]
        for j in range(5):
            if truth[:, j].any():
                assert per_label[b, j] == pytest.approx(skm.average_precision_score(truth[:, j], scores[:, j]))
            else:
                assert np.isnan(per_label[b, j])
        assert micro[b] == pytest.approx(skm.average_precision_score(truth, scores, average="micro"))


@pytest.mark.parametrize(("photos", "positives"), [(20, 1), (20, 6), (60, 15)])
def test_a_random_scorers_ap_is_its_expectation_not_the_frequency(photos, positives):
    rng = np.random.default_rng(photos + positives)
    truth = np.r_[np.ones(positives), np.zeros(photos - positives)]
    simulated = np.nanmean(average_precisions(np.tile(truth[:, None], 4000), rng.random((photos, 4000))))
    assert boot.random_ap(positives, photos) == pytest.approx(simulated, abs=0.01)
    assert boot.random_ap(photos, photos) == pytest.approx(1.0)
    if positives == 1:
        assert boot.random_ap(positives, photos) > 3 * positives / photos  # on few photos, well above the frequency


def test_intervals_are_seeded_hold_the_figure_and_narrow_with_more_photos():
    small, large = _evaluation(n=60, seed=4), _evaluation(n=600, seed=4)
    first, again = small.intervals(seed=7), small.intervals(seed=7)
    assert first.map == again.map and np.array_equal(first.ap, again.ap, equal_nan=True)
    summary = small.summary()
    for name in ("map", "map_micro", "exact_match", "hamming_loss", "f1_macro"):
        low, high = summary[f"{name}_interval"]
        assert low <= summary[name] <= high, name
    wide = np.diff(small.intervals().map)[0]
    assert np.diff(large.intervals().map)[0] < wide
    assert summary["per_label"]["none-seen"]["ap"] is None  # no test photo has it: no AP, not 0
    assert summary["per_label"]["none-seen"]["ap_interval"] == [None, None]


def test_a_random_model_is_said_to_be_no_better_than_a_random_scorer():
    ev = _evaluation(n=80, seed=5, signal=0.0)  # scores unrelated to the labels
    summary = ev.summary()
    said = words.headline(summary)
    assert "no better than a random scorer" in said and f"{summary['random_map']:.2f}" in said
    assert set(words.weak_labels(summary)) >= {"none-seen"}
    good = _evaluation(n=200, seed=5, signal=0.6).summary()
    assert "better than chance" in words.headline(good) and "no better" not in words.headline(good)
    assert words.weak_labels(good) == ["none-seen"]


def test_per_label_table_is_worst_ap_first_and_untested_last():
    table = _evaluation().per_label()
    tested = table[table["positives"] > 0]
    assert tested["ap"].tolist() == sorted(tested["ap"].tolist())
    assert table.iloc[-1]["label"] == "none-seen"
    assert {"ap_low", "ap_high", "frequency", "random_ap", "threshold", "precision", "recall", "f1"} <= set(table)


def test_a_labels_curve_counts_cells_and_words_agree():
    ev = _evaluation(seed=6)
    curve = views.curve(ev, "road")
    j = LABELS.index("road")
    assert len(curve) == len(np.unique(ev.probabilities[:, j])) and curve["threshold"].is_monotonic_decreasing
    for row in curve.itertuples():
        said = ev.probabilities[:, j] >= row.threshold
        assert row.precision == pytest.approx(skm.precision_score(ev.targets[:, j], said))
        assert row.recall == pytest.approx(skm.recall_score(ev.targets[:, j], said))
    at = float(curve.iloc[len(curve) // 2]["threshold"])
    counts = ev.counts(np.where(np.arange(5) == j, at, ev.thresholds))
    found, added, missed = (int(counts[k][j]) for k in ("found", "added", "missed"))
    one = ev.counts_at("road", at)
    assert (one["found"], one["added"], one["missed"], one["left out"]) == (found, added, missed, counts["left out"][j])
    assert one["precision"] == pytest.approx(skm.precision_score(ev.targets[:, j], ev.probabilities[:, j] >= at))
    assert len(views.cell(ev, "road", at, "found")) == found and len(views.cell(ev, "road", at, "added")) == added
    assert len(views.cell(ev, "road", at, "missed")) == missed
    assert words.trade_off("road", at, found, added, missed) == (
        f"at {words.threshold_text(at)}: {found} of {found + added} 'road' answers right, "
        f"{found} of {found + missed} photo(s) with 'road' found"
    )
    assert "no photo is answered" in words.trade_off("road", 0.99, 0, 0, 4)


def test_the_confusion_counts_what_is_added_and_missed_on_photos_with_each_label():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.7], [0.1, 0.1, 0.9], [0.1, 0.2, 0.1]])
    ev = MultilabelEvaluation(scores, targets, ["a", "b", "c"], ["1", "2", "3", "4"], [0.5, 0.5, 0.5])
    added, missed = views.confusion(ev)
    assert added.loc["a"].tolist() == [0, 1, 1]  # photo 1 got b added, photo 2 got c added
    assert missed.loc["a"].tolist() == [1, 0, 0]  # photo 2's a missed
    assert missed.loc["b"].tolist() == [1, 1, 0]  # on photos with b: photo 2's a, photo 4's b
    assert added.loc[NO_LABEL].tolist() == [0, 0, 1]  # photo 3 has none and got c
    assert views.confused_photos(ev, NO_LABEL, "c", "added")["path"].tolist() == ["3"]
    assert views.confused_photos(ev, "b", "a", "missed")["path"].tolist() == ["2"]


def test_kept_in_the_run_folder_and_made_from_the_analysis_of_an_older_run(tmp_path):
    ev = _evaluation(n=40)
    analysis = RunAnalysis(
        LABELS,
        *(
            SplitArrays(
                np.log(np.clip(ev.probabilities, 1e-4, 1 - 1e-4) / (1 - np.clip(ev.probabilities, 1e-4, 1 - 1e-4))),
                np.zeros((40, 2)),
                np.full(40, -1),
                ev.paths,
                np.arange(40),
                ev.targets,
            )
            for _ in range(2)
        ),
    )
    with pytest.raises(MultilabelEvaluationMissing):
        MultilabelEvaluation.of_run(tmp_path)
    analysis.save(tmp_path)
    fitted = label_thresholds.fit(analysis.val.probabilities, analysis.val.targets, LABELS)
    label_thresholds.save(fitted, tmp_path)
    made = MultilabelEvaluation.of_run(tmp_path)  # from the arrays, not written
    assert not (tmp_path / "multilabel_evaluation.npz").exists()
    np.testing.assert_allclose(made.thresholds, fitted.thresholds)
    made.save(tmp_path)
    loaded = MultilabelEvaluation.of_run(tmp_path)
    assert loaded.summary() == made.summary() and loaded.paths == made.paths
    np.testing.assert_array_equal(loaded.targets, made.targets)
    photo = loaded.photos()[0]
    assert set(photo) == {"path", "labels", "predicted", "scores"} and set(photo["scores"]) == set(LABELS)


def test_calibration_per_label_is_scikit_learns_curve_and_its_gap():
    from sklearn.calibration import calibration_curve

    from core.results.evaluation import multilabel_calibration as calibration

    ev = _evaluation(n=200, seed=8)
    j = LABELS.index("road")
    table = calibration.reliability(ev.targets[:, j], ev.probabilities[:, j])
    observed, predicted = calibration_curve(ev.targets[:, j], ev.probabilities[:, j], n_bins=10, strategy="uniform")
    np.testing.assert_allclose(table["observed"], observed)
    np.testing.assert_allclose(table["mean_score"], predicted, rtol=1e-6)
    gap = np.sum(table["photos"] * np.abs(table["mean_score"] - table["observed"])) / 200
    assert ev.summary()["per_label"]["road"]["ece"] == pytest.approx(gap)
    assert ev.summary()["per_label"]["none-seen"]["ece"] is not None  # no photo has it: its scores are checked too
    assert "of" in calibration.words("road", table) and table["photos"].sum() == 200


def test_a_split_too_large_to_resample_has_no_interval_and_says_so(monkeypatch):
    monkeypatch.setattr(boot, "MAX_CELLS", 100)  # 1,000 labels x 100k photos would take minutes and gigabytes
    ev = _evaluation(n=200, seed=9, signal=0.6)
    summary = ev.summary()
    assert summary["bootstrap"]["resamples"] == 0 and summary["map_interval"] == [None, None]
    assert summary["per_label"]["road"]["ap_interval"] == [None, None] and summary["map"] is not None
    said = words.headline(summary)
    assert "No interval: the test split is too large to resample here" in said and "no better" not in said
    assert words.weak_labels(summary) == ["none-seen"]  # judged by the figure itself, well above a random scorer's
