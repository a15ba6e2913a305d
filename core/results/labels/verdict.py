"""The label review in words: one verdict (how many suspects to review first, and why), the figures behind it, and a
probability as a person should read it. The Suspected label errors tab, Data issues and `core label-issues` say these.

Why one verdict: the review has several figures (the suspects listed, the depth the self-test supports, the planted
flips among the first suspects, confident learning's estimate of the wrong labels), and shown side by side they read
as contradicting verdicts ("47 suspects", "supports the first 51", "most suspects are the model's own mistakes").
The verdict is the self-test's, measured against a random pick; the others are its evidence, behind it.

Why capped probabilities: a weak model (a random start gets 60-70% of training labels right out of sample) still puts
99.999% on one class, and the ratio of two such figures runs to hundreds of thousands. Past 99% (or under 1%) the
figure says how the list is ranked, not how likely the label is wrong, so it is shown as "over 99%" / "under 1%".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.results.labels.issues import SUPPORT_LIFT, LabelReview
from core.results.labels.power import inconclusive, too_small_words

SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test", "all": "dataset"}


def probability_text(p: float) -> str:
    """A probability for people: "over 99%" and "under 1%" at the ends, whole percents between."""
    if p > 0.99:
        return "over 99%"
    if p < 0.01:
        return "under 1%"
    return f"{p:.0%}"


# Shown above the suspects, not only among the figures (walk 51: 'over 99%' beside right labels read as certainty)
PERCENT_NOTE = (
    "The percentages beside each suspect are the scoring model's probabilities for the suggested class and for "
    "the label (calibrated where the run has a temperature), shown as 'over 99%' or 'under 1%' at the ends: on a "
    "weak model they order the list, they are not the chance that the label is wrong."
)


def suspect_words(issue) -> str:
    """Why one photo is a suspect, with honest figures: 'looks like dandelion to the scoring model (dandelion over
    99%, daisy under 1%)'."""
    suggested, given = probability_text(issue.suggested_probability), probability_text(issue.score)
    return f"looks like {issue.suggested} to the scoring model ({issue.suggested} {suggested}, {issue.given} {given})"


@dataclass(frozen=True)
class Verdict:
    """How many suspects to review first and why (`headline`), warning or not, and the figures behind it."""

    kind: str  # "warning" | "info"
    review_first: int  # how many suspects to look at first (every one when nothing bounds the list)
    headline: str
    figures: list[str] = field(default_factory=list)


def verdict(review: LabelReview, random_start: bool = False) -> Verdict:
    """The one verdict on a label review (see the module's docstring)."""
    listed = len(review.issues)
    trust = review.trust or {}
    twice = "twice" if SUPPORT_LIFT == 2 else f"{SUPPORT_LIFT:g} times"
    own = (
        f" The model that ranks them gets {review.model_accuracy:.0%} of the training labels right out of sample, so "
        "some suspects are its own mistakes: look at each photo before relabelling it."
        if review.model_accuracy is not None and listed
        else ""
    )
    if not listed:
        headline = "No suspected label errors: every label agrees with the evidence."
        return Verdict("info", 0, headline, figures(review))
    if review.supported is None:
        headline = (
            f"Look through all {listed} suspect(s) by eye, most suspicious first: there were too few photos to test "
            "how well this list finds wrong labels, so each one is a guess." + own
        )
        return Verdict("warning" if random_start else "info", listed, headline, figures(review))
    if review.supported == 0 and inconclusive(trust):
        headline = (
            f"Look through all {listed} suspect(s) by eye, most suspicious first: {too_small_words(trust)}."
            + own
            + (" Training with ImageNet weights first gives a sharper list." if random_start else "")
        )
        return Verdict("warning" if random_start else "info", listed, headline, figures(review))
    if review.supported == 0:
        planted, found, chance = int(trust.get("planted") or 0), int(trust.get("found") or 0), trust.get("chance", 0)
        headline = (
            f"Treat all {listed} suspect(s) as guesses: when {planted} training labels were swapped on purpose as a "
            f"test, the list found {found} of them among its first {planted}, where a random pick would find about "
            f"{chance:.1f}; that is not clearly better than chance. Look by eye if you like"
            + (", or train with ImageNet weights first." if random_start else ".")
        )
        return Verdict("warning", listed, headline, figures(review))
    depth, found, planted = int(trust["depth"]), int(trust.get("found_at_depth") or 0), int(trust["planted"])
    photos = max(int(trust.get("photos") or 1), 1)
    random_pick = depth * planted / photos
    rest = listed - review.supported
    deep = max(1, round(depth / photos * review.images))  # as label_issues.bound scales it
    scaled = f" (scaled to these {review.images} photos, that depth is the first {deep})" if deep != depth else ""
    first = (
        f"Review the first {review.supported} of these {listed} suspects first: that is as deep as the list held up "
        "when tested."
        if rest
        else f"Review all {listed} suspects, most suspicious first: the list ends before the depth it held up to when "
        "tested."
    )  # walk 51: 'the first 82 of these 82' beside 85 and 121 read as three answers to how far to read
    headline = (
        f"{first} When {planted} of {photos} training labels were swapped on purpose and the photos ranked again, "
        f"the first {depth} suspects held {found} of the swapped ones, where {depth} photos picked at random would "
        f"hold about {random_pick:.1f}{scaled}; further down, swapped photos came less than {twice} as often as at "
        "random"
        + (f", so the other {rest} are weaker guesses: look at them after these, if at all." if rest else ".")
        + own
    )
    return Verdict("warning" if random_start else "info", review.supported, headline, figures(review))


def figures(review: LabelReview) -> list[str]:
    """The figures behind the verdict, one sentence each, each saying what it measures."""
    out = []
    splits = ", ".join(f"{n} {SPLIT_WORDS.get(s, s)}" for s, n in review.by_split.items())
    out.append(
        f"{len(review.issues)} suspect(s) among {review.images} photos ({splits}). Training photos are scored by "
        f"{review.train_source}; validation and test photos by the run itself. Each is scored by a model that never "
        "saw it; the list is ordered by how much more the scoring model favours another class than the label."
    )
    if review.model_accuracy is not None:
        out.append(
            f"The scoring model gets {review.model_accuracy:.0%} of the training labels right out of sample (always "
            f"guessing the largest class: {review.chance_accuracy or 0:.0%})."
        )
    trust = review.trust or {}
    if trust.get("planted"):
        out.append(
            f"Self-test, at the very top: of {trust['planted']} labels swapped on purpose, {trust['found']} came among "
            f"the first {trust['planted']} suspects (a random order: about {trust['chance']:.1f})."
        )
    if review.supported == 0 and review.supported_why:  # (a supported depth is the headline's own figure)
        out.append(f"Self-test, down the list: {review.supported_why}")
    share = review.estimated_errors / max(1, review.images)
    listed, flagged = len(review.issues), max(review.flagged, len(review.issues))
    if flagged > listed:
        cut = f"; the list keeps the first {listed} of the {flagged} photos the rule flags, cut at that estimate"
    elif listed < review.estimated_errors:
        cut = (
            f"; the list holds the {listed} photos the rule flags, fewer than the estimate: the estimate counts the "
            "photos whose confident class differs from the label, rescaled to the class sizes, while the rule also "
            "asks that the likeliest class differ"
        )
    else:
        cut = f"; the list holds the {listed} photos the rule flags"
    out.append(
        f"Confident learning estimates {review.estimated_errors} wrong labels ({share:.0%} of the photos){cut}"
        + (
            ": far more than a dataset usually holds, which says the scoring model is weak rather than that so many "
            "labels are wrong."
            if share > 0.2
            else "."
        )
    )
    out.append(PERCENT_NOTE)
    return out
