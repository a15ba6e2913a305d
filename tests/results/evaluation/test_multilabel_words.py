"""A multi-label evaluation in words: one statement for the mAP and the labels one by one, the 'answer every label'
baseline beside the tuned thresholds' F1, thresholds that answer (nearly) every photo named, tiny thresholds never
written '0.000', and the photos' captions read at the threshold being tried."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from core.results.evaluation import multilabel_views as views
from core.results.evaluation import multilabel_words as words
from core.results.evaluation.multilabel import MultilabelEvaluation

pytestmark = pytest.mark.backend_agnostic

LABELS = ["a", "b", "c"]


def _evaluation(n: int, signal: float, thresholds, seed: int = 0) -> MultilabelEvaluation:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, 3)) < [0.4, 0.35, 0.45]).astype(np.uint8)
    scores = np.clip(signal * targets + rng.random((n, 3)) * (1 - signal), 0, 1)
    return MultilabelEvaluation(scores, targets, LABELS, [f"p{i}.png" for i in range(n)], thresholds)


@pytest.mark.parametrize(
    ("threshold", "text"), [(0.0, "0"), (1.02e-7, "1.0e-07"), (0.00099, "9.9e-04"), (0.35, "0.35"), (0.5553, "0.555")]
)
def test_a_threshold_under_a_thousandth_is_never_written_0_000(threshold, text):
    assert words.threshold_text(threshold) == text


def test_the_answer_every_label_baseline_is_scikit_learns_f1_of_all_yes():
    ev = _evaluation(60, 0.3, [0.5, 0.5, 0.5])
    summary = ev.summary()
    everything = np.ones_like(ev.targets)
    expected = skm.f1_score(ev.targets, everything, average=None, zero_division=0).mean()
    assert words.all_yes_f1(summary) == pytest.approx(expected)
    said = words.thresholds_words(summary)
    assert f"answering every label for every photo: {expected:.2f}" in said and "2f/(1+f)" in said


def test_tuned_thresholds_no_better_than_answering_everything_say_so():
    # thresholds of 0: every label for every photo, so the tuned F1 is the baseline's exactly
    summary = _evaluation(60, 0.0, [0.0, 0.0, 0.0]).summary()
    assert summary["f1_macro"] == pytest.approx(words.all_yes_f1(summary))
    assert "do no better than answering every label for every photo" in words.thresholds_words(summary)
    strong = _evaluation(400, 0.8, [0.5, 0.5, 0.5]).summary()  # a model that separates every label well
    assert strong["f1_macro_interval"][0] > words.all_yes_f1(strong)
    said = words.thresholds_words(strong)
    assert "no better" not in said and "not shown" not in said
    # beside 0.5, said of the tuned thresholds (a walk read "0.72 (worse than 0.5 on these test photos)" as the F1)
    tuned, half = strong["f1_macro"], strong["f1_macro_at_half"]
    how = (
        "better than"
        if round(tuned, 2) > round(half, 2)
        else "as well as"
        if round(tuned, 2) == round(half, 2)
        else "worse than"
    )
    assert f"at 0.5 for every label: {half:.2f} (on these test photos the tuned thresholds do {how} 0.5)" in said


def test_a_threshold_that_answers_nearly_every_photo_is_named_with_its_counts():
    ev = _evaluation(60, 0.0, [0.0, 1e-7, 0.5])  # a and b: every photo; c: about half
    summary = ev.summary()
    every = words.every_photo_labels(summary)
    assert every == {"a": 60, "b": 60}
    note = words.every_photo_note(summary, "b")
    positives = int(ev.targets[:, 1].sum())
    assert note.startswith("threshold 1.0e-07, tuned on validation: 'b' is answered for 60 of 60 test photos")
    assert f"(every photo; {positives} have it)" in note and "says little about a photo" in note
    assert "has not shown that it tells the photos with 'b' from the others" in note  # random scores: no AP shown
    assert words.every_photo_note(summary, "c") is None
    assert words.every_photo_words(summary, ["a", "c"]) == (
        "'a' (60 of 60 test photos) is answered for (nearly) every photo at its tuned threshold, so that answer says "
        "little about a photo."
    )
    assert words.every_photo_words(summary, ["c"]) is None and words.every_photo_words(None) is None


def test_the_headline_says_the_pooled_claim_and_the_per_label_one_without_contradiction():
    summary = _evaluation(80, 0.3, [0.5, 0.5, 0.5], seed=2).summary()
    # the pooled mAP shown above a random scorer while no label shows it alone (walk 54's run B)
    summary["map_interval"] = [summary["random_map"] + 0.02, 0.9]
    for entry in summary["per_label"].values():
        entry["ap_interval"] = [entry["random_ap"] - 0.05, 0.9]
    summary["per_label"]["c"]["ap"] = summary["per_label"]["c"]["random_ap"] - 0.02
    said = words.headline(summary)
    assert "Averaged over the labels, the model ranks" in said and "better than chance" in said
    assert "label by label, none of the 3 has shown it on its own" in said
    assert f"'c' {summary['per_label']['c']['ap']:.2f} against {summary['per_label']['c']['random_ap']:.2f}" in said
    summary["per_label"]["a"]["ap_interval"] = [summary["per_label"]["a"]["random_ap"] + 0.01, 0.9]
    said = words.headline(summary)
    assert "label by label, 2 of the 3 have not shown it on their own" in said
    summary["map_interval"] = [summary["random_map"] - 0.01, 0.9]  # not even pooled
    said = words.headline(summary)
    assert "better than chance" not in said and "no better than a random scorer" in said
    assert "label by label, 1 of the 3 show it on their own: 'a'." in said
    for entry in summary["per_label"].values():
        entry["ap_interval"] = [entry["random_ap"] + 0.01, 0.9]
    summary["map_interval"] = [summary["random_map"] + 0.02, 0.9]
    assert words.headline(summary).endswith("better than chance, and each label shows it on its own.")


def test_the_photos_behind_a_cell_are_captioned_at_the_threshold_tried():
    ev = _evaluation(60, 0.3, [0.5, 0.5, 0.5], seed=3)
    j, tried = 0, 0.8  # stricter than the tuned 0.5: some photos with 'a' move to missed
    missed = views.cell(ev, "a", tried, "missed")
    at_tuned = ev.probabilities[missed["index"], j] >= ev.thresholds[j]
    assert at_tuned.any()  # photos the tuned threshold answers 'a' for, missed at the one tried
    assert not any("a" in row.split(", ") for row in missed["predicted"])
    found = views.cell(ev, "a", tried, "found")
    assert all("a" in row.split(", ") for row in found["predicted"])
    for row in missed.itertuples():  # the other labels at their tuned thresholds
        others = [name for k, name in enumerate(LABELS) if k != j and ev.probabilities[row.index, k] >= 0.5]
        assert [name for name in row.predicted.split(", ") if name] == others
    losses = views.top_losses(ev, "a", 60, tried)
    for row in losses.itertuples():
        assert ("a" in row.predicted.split(", ")) == (ev.probabilities[row.index, j] >= tried)
