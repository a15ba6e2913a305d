"""The fix estimate in words (what it says, what it cannot see), and beside the result of the corrected run.

A later run that applied label corrections (its config records them) is put beside the estimate made for exactly
those corrections (core.results.labels.fix_worth, found by their digest in the earlier run's folder): the validation
accuracy and macro F1 both runs measured on their stored validation logits, on the validation photos both have
(scored on the labels as the earlier run had them and, when a correction changed some, on the corrected ones),
the test change Compare measures, and a sentence on how far the estimate held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.results.feature_head import accuracy_and_macro_f1
from core.results.labels.fix_worth import AS_LABELLED, CORRECTED, MARKED, SUSPECTS, TOP, Change, Estimate, find
from core.runs.analysis import RunAnalysis
from core.runs.record import Run


def caveats(estimate: Estimate, run: Run) -> list[str]:
    """What the estimate cannot see, and what the corrections do that it leaves out, in plain words."""
    config, touched = run.train_config, estimate.touched
    notes = []
    if config.fine_tune_epochs:
        notes.append(
            "It retrains only the head, on this run's frozen features. This run also fine-tuned its backbone, and "
            "a corrected run will too: what the corrected labels teach the backbone is not in the estimate."
        )
    else:
        notes.append(
            "It retrains only the head, on this run's frozen features (a simpler head than the network's, without "
            "augmentation): a corrected run that trains its head as this one did is the closest match."
        )
    notes.append(
        "The test photos are never looked at: the corrected run's test change is the check, and Compare shows it "
        "beside this estimate."
    )
    if estimate.choice.get("kind") in (SUSPECTS, TOP):
        notes.append(
            "Only the suspects among the training photos are fixed: fixing a validation photo changes the measure, "
            "not the model (relabelled to the model's own guess, it would grade the model against itself)."
        )
        notes.append("Suspects you marked Fine are left out; the ones you marked take your mark, not the suggestion.")
    changed_train = touched["train_relabelled"] + touched["train_excluded"]
    if not changed_train:
        notes.append("None of these corrections changes a training photo: the head learns exactly the same.")
    val = touched["val_relabelled"] + touched["val_excluded"]
    if val:
        notes.append(
            f"{_of_the_corrections(val, 'a validation photo', 'validation photos')}: that changes what is measured, "
            "not what is learnt, so the change is given twice: on the validation labels as they are, and with the "
            "corrected labels taken as the truth."
        )
    if touched["test"]:
        notes.append(
            f"{_of_the_corrections(touched['test'], 'a test photo', 'test photos')}: that changes what the test "
            "measures, not what is learnt, so it adds nothing here."
        )
    if touched["unchanged"]:
        n = touched["unchanged"]
        notes.append(f"{n} already {'has' if n == 1 else 'have'} that label in this run (it applied it): no change.")
    if touched["missing"]:
        n = touched["missing"]
        notes.append(
            f"{n} {'names a photo or class' if n == 1 else 'name photos or classes'} this run does not have "
            "(excluded by it, or no longer in the dataset): left out."
        )
    if config.weights == "none":
        notes.append(
            "This run's backbone started from random weights: its features barely tell the classes apart, so "
            "fixing labels shows less here than it would on ImageNet features."
        )
    return notes


def _of_the_corrections(count: int, one: str, many: str) -> str:
    """'1 of the corrections is of a validation photo', '3 of the corrections are of validation photos'."""
    return f"{count} of the corrections is of {one}" if count == 1 else f"{count} of the corrections are of {many}"


def points(value: float) -> str:
    """A change of a fraction in percentage points: '+1.8'."""
    return f"{value * 100:+.1f}"


def change_words(change: Change) -> str:
    """'+1.8 points (95%: +0.4 to +3.1)'."""
    return f"{points(change.change)} points (95%: {points(change.low)} to {points(change.high)})"


def from_to(change: Change) -> tuple[str, str]:
    """The figure without and with the fix, as shown beside its change: 'from' is the mean without the fix, 'to' is
    that plus the change as shown, so the words add up ('from 47.7% to 48.0%' beside '+0.3 points', where the two
    means alone would round to 47.7% and 48.1%)."""
    before = round(change.before * 100, 1)
    return f"{before:.1f}%", f"{before + float(points(change.change)):.1f}%"


def _by(change: Change) -> str:
    """'+1.8 points on average (95%: +0.4 to +3.1)'."""
    return f"{points(change.change)} points on average (95%: {points(change.low)} to {points(change.high)})"


def headline(estimate: Estimate, scoring: str = AS_LABELLED) -> str:
    """'Fixing your 12 marks would change validation accuracy by +1.8 points on average (95%: +0.4 to +3.1), from
    71.2% to 73.0%, and macro F1 by ...'; on the corrected labels, it first says whose labels are the truth."""
    figures = estimate.results[scoring]
    accuracy, f1 = figures["accuracy"], figures["macro_f1"]
    start, end = from_to(accuracy)
    said = f"would change validation accuracy by {_by(accuracy)}, from {start} to {end}, and macro F1 by {_by(f1)}."
    if scoring != CORRECTED:
        return f"Fixing {estimate.words} {said}"
    return f"{truth_words(estimate)}, fixing {estimate.words} {said}"


def truth_words(estimate: Estimate) -> str:
    """'Scored against your corrected validation labels, taken as the truth (2 relabelled photos at their new label,
    1 excluded photo left out)': what the corrected figures measure against."""
    whose = "your" if estimate.choice.get("kind") == MARKED else "these"
    relabelled, excluded = estimate.touched["val_relabelled"], estimate.touched["val_excluded"]
    parts = [
        f"{relabelled} relabelled photo{'s' * (relabelled != 1)} at {'their' if relabelled != 1 else 'its'} new label"
        * bool(relabelled),
        f"{excluded} excluded photo{'s' * (excluded != 1)} left out" * bool(excluded),
    ]
    return (
        f"Scored against {whose} corrected validation labels, taken as the truth "
        f"({', '.join(part for part in parts if part)})"
    )


def verdict(change: Change) -> str:
    """What the interval says, in words."""
    if change.low > 0:
        return "likely to help: the whole interval is above zero"
    if change.high < 0:
        return "likely to hurt: the whole interval is below zero"
    return "no clear change: the interval holds zero"


def how(estimate: Estimate) -> str:
    """How the figures were made, in one sentence."""
    return (
        f"A head retrained on this run's stored features of {estimate.train_photos} training photos, with and "
        f"without the corrections, {estimate.seeds} times on resamples of them, scored on "
        f"{estimate.val_photos} validation photos and {estimate.resamples} resamples of those: 95% of the paired "
        f"changes fell in the interval ({estimate.seconds:.1f} s)."
    )


def touched_words(estimate: Estimate) -> str:
    """'12 training photos: 10 relabelled, 2 excluded; 1 validation photo: 1 relabelled' ('no training or
    validation photo' when none)."""
    parts = []
    for split, name in (("train", "training"), ("val", "validation")):
        relabelled, excluded = estimate.touched[f"{split}_relabelled"], estimate.touched[f"{split}_excluded"]
        if relabelled or excluded:
            count = relabelled + excluded
            done = [f"{relabelled} relabelled" * bool(relabelled), f"{excluded} excluded" * bool(excluded)]
            parts.append(f"{count} {name} photo{'s' * (count != 1)}: " + ", ".join(d for d in done if d))
    return "; ".join(parts) or "no training or validation photo"


# --- beside the corrected run -----------------------------------------------------------------------------------


@dataclass
class Held:
    """An estimate (or none) beside what the corrected run measured."""

    before_run: str
    after_run: str
    corrections: int  # the later run applied
    estimate: Estimate | None
    measured: dict[str, dict[str, dict[str, float]]]  # scoring -> figure -> {"before", "after", "change"}
    val_photos: int  # the validation photos both runs have
    test: dict[str, dict[str, float]] | None  # figure -> {"before", "after", "change"}, from the comparison
    other_settings: list[str]  # settings that also differ between the two runs
    sentence: str
    made_before: bool = True  # the estimate was made before the corrected run was created

    @property
    def confounded(self) -> bool:
        """True when the runs differ in more than the corrections: the measured change is not theirs alone, and
        the estimate is not judged against it."""
        return bool(self.other_settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "before_run": self.before_run,
            "after_run": self.after_run,
            "corrections": self.corrections,
            "estimate": None if self.estimate is None else self.estimate.to_dict(),
            "measured": self.measured,
            "val_photos": self.val_photos,
            "test": self.test,
            "other_settings": self.other_settings,
            "sentence": self.sentence,
            "made_before": self.made_before,
            "confounded": self.confounded,
        }


def _figures(before: tuple[float, float], after: tuple[float, float]) -> dict[str, dict[str, float]]:
    return {
        name: {"before": before[i], "after": after[i], "change": after[i] - before[i]}
        for i, name in enumerate(("accuracy", "macro_f1"))
    }


def measured_validation(before: RunAnalysis, after: RunAnalysis) -> tuple[dict[str, Any], int]:
    """Both runs' validation accuracy and macro F1 from their stored logits, on the validation photos both have:
    scored on the earlier run's labels and, when a correction changed some of them, on the later run's."""
    where = {path: i for i, path in enumerate(after.val.paths)}
    rows_a = np.array([i for i, path in enumerate(before.val.paths) if path in where], dtype=np.int64)
    rows_b = np.array([where[before.val.paths[i]] for i in rows_a], dtype=np.int64)
    predicted_a = before.val.logits[rows_a].argmax(axis=1)
    predicted_b = after.val.logits[rows_b].argmax(axis=1)
    labels_a, labels_b = before.val.labels[rows_a], after.val.labels[rows_b]
    classes = len(before.classes)
    out = {
        AS_LABELLED: _figures(
            accuracy_and_macro_f1(labels_a, predicted_a, classes), accuracy_and_macro_f1(labels_a, predicted_b, classes)
        )
    }
    if len(rows_a) < len(before.val.paths) or np.any(labels_a != labels_b):
        out[CORRECTED] = _figures(
            accuracy_and_macro_f1(labels_b, predicted_a, classes), accuracy_and_macro_f1(labels_b, predicted_b, classes)
        )
    return out, len(rows_a)


def held(
    before: Run,
    after: Run,
    analyses: tuple[RunAnalysis, RunAnalysis],
    comparison: dict[str, Any] | None = None,
    other_settings: list[str] | None = None,
) -> Held | None:
    """The estimate made (on `before`) for the corrections `after` applied, beside what `after` measured; None when
    `after` applied no corrections, or the same ones as `before`.

    Args:
        comparison: core.results.evaluation.compare.compare's result for these runs (its test figures), if made.
        other_settings: what else (besides the corrections) differs between the runs, in words (e.g. "dataset
            photos (800 -> 851)"): with any, the comparison is confounded and the estimate is not judged.
    """
    if not after.corrections or after.corrections == before.corrections:
        return None
    estimate = find(before.directory, after.corrections)
    measured, photos = measured_validation(*analyses)
    test = None
    if comparison is not None:
        a, b = comparison["runs"][before.run_id], comparison["runs"][after.run_id]
        test = _figures((a["accuracy"], a["macro_f1"]), (b["accuracy"], b["macro_f1"]))
    result = Held(
        before.run_id, after.run_id, len(after.corrections), estimate, measured, photos, test, other_settings or [], ""
    )
    result.made_before = estimate is None or estimate.made_at <= after.created
    result.sentence = held_sentence(result)
    return result


def held_sentence(result: Held) -> str:
    """How far the estimate held, in words (or how to make one next time). Only a run that differs from its base in
    the corrections alone judges the estimate; against any other, the sentence says the comparison is confounded
    and by what."""
    a, b = result.before_run[:6], result.after_run[:6]
    estimate = result.estimate
    test = result.test or {}
    test_words = (
        f" On the test photos, which the estimate never sees, {b} changed accuracy by "
        f"{points(test['accuracy']['change'])} points and macro F1 by {points(test['macro_f1']['change'])}."
        if test
        else ""
    )
    also = (
        f" These runs also differ in {', '.join(result.other_settings)}: the change is not the corrections' alone."
        if result.other_settings
        else ""
    )
    if estimate is not None and result.other_settings:  # confounded: the estimate is judged by no such run
        scoring = CORRECTED if CORRECTED in estimate.results and CORRECTED in result.measured else AS_LABELLED
        guessed: Change = estimate.results[scoring]["accuracy"]
        got = result.measured[scoring]["accuracy"]["change"]
        return (
            f"The estimate said {change_words(guessed)} of validation accuracy; {b} measured {points(got)} points, "
            f"but {b} differs from {a} in more than the corrections: {', '.join(result.other_settings)}. The "
            "measured change mixes the corrections with that, so it cannot say whether the estimate held (the "
            f"comparison is confounded). To check the estimate, compare {a} with a run that has {a}'s settings and "
            "photos and only these corrections." + test_words
        )
    if estimate is None:
        return (
            f"No estimate was made on {a} for the {result.corrections} corrections {b} applied. Before the next "
            "corrected run, make one: Explore › Suspected label errors › 'What would fixing these be worth?', or "
            f"`python -m core fix-worth {a} --marked`." + test_words + also
        )
    scoring = CORRECTED if CORRECTED in estimate.results and CORRECTED in result.measured else AS_LABELLED
    guessed: Change = estimate.results[scoring]["accuracy"]
    got = result.measured[scoring]["accuracy"]["change"]
    said = f"The estimate said {change_words(guessed)} of validation accuracy; {b} measured {points(got)} points"
    if guessed.low <= got <= guessed.high and guessed.low < 0 < guessed.high:
        # walk 51: '+2.5 (-4.2 to +8.3) ... measured -3.3: the estimate held' beside a significant test loss
        verdict_words = (
            ": inside the interval, but that interval runs from a loss to a gain, so the estimate could not say "
            "whether fixing these helps, and landing inside it shows little. Judge the fix by the test photos below "
            "and Compare's paired test, not by this estimate."
        )
    elif guessed.low <= got <= guessed.high:
        verdict_words = ": inside the interval, so the estimate held here."
    elif got > guessed.high:
        verdict_words = (
            ": more than the interval. The real run learnt more from the fix than a head on frozen features can "
            "(a fine-tuned backbone, the network's own head), or its own randomness helped."
        )
    else:
        verdict_words = (
            ": less than the interval. A real run has more randomness than the head the estimate retrains (its "
            "own start, augmentation, the epoch early stopping kept), and a backbone that changed with training."
        )
    where = " (on the corrected validation labels)" if scoring == CORRECTED else ""
    return said + where + verdict_words + test_words + also
