"""What a run's temperature scaling means, in words every place gives (Evaluate's reading, Predict's caption,
`core calibrate`'s notes and the model card), with the run's own figures.

The case that needs words most is a weak model: the NLL-minimising temperature grows until the scaled probabilities
are about 1/k for every photo, or stops at the search's upper bound. Such probabilities are honest in saying they
know little, but temperature scaling keeps each photo's top class, so the answers, and the accuracy, are the same as
before: a 70%-accurate model whose calibrated answers all read about 50% still names 70% of the photos right. Its
confidence, not its answers, carries little information.
"""

from __future__ import annotations

import math

from core.results.evaluation.chance import chance_level, no_better_than_chance, wilson
from core.results.probabilities.calibration import NEAR_UNIFORM, T_BOUNDS, Calibration


def bound_words(cal: Calibration) -> str | None:
    """What a temperature on the search's bound, or near-uniform calibrated probabilities, mean, with the run's T,
    NLL, ECE and accuracy; None when neither is the case (then the figures speak for themselves)."""
    said = []
    low, high = T_BOUNDS
    searched = f"Flora's search ({low:g}-{high:g})"
    if cal.at_bound == "upper":
        said.append(
            f"T = {cal.temperature:.2f} is the upper bound of {searched}: the search stopped there, and the best "
            "temperature may be higher still"
            + (
                ""
                if cal.near_uniform
                else ", so the scaled probabilities may still be surer than they should be (calibration error, ECE, "
                f"{cal.before.ece:.3f} before scaling and {cal.after.ece:.3f} after)"
            )
        )
    elif cal.at_bound == "lower":
        said.append(
            f"T = {cal.temperature:.2f} is the lower bound of {searched}: the search stopped there, and the logits "
            f"look broken rather than under-confident (ECE {cal.before.ece:.3f} before scaling, {cal.after.ece:.3f} "
            "after)"
        )
    if cal.near_uniform:
        said.extend(_near_uniform(cal))
    if not said:
        return None
    return " ".join(text[0].upper() + text[1:] + "." for text in said)


def _near_uniform(cal: Calibration) -> list[str]:
    """Near-uniform probabilities: what they say, that the answers are unchanged, and what the ECE then means."""
    k = cal.class_count
    guess = chance_level(k)
    accuracy, photos = cal.after.accuracy, cal.after.images
    said = [
        f"after scaling, the calibrated model says about {guess:.0%} for every photo (test NLL {cal.before.nll:.3f} "
        f"before, {cal.after.nll:.3f} after; ln {k} = {math.log(k):.3f} is what saying 1/{k} for every class "
        "scores): its confidence carries little information about which of its answers are right"
    ]
    kept = (
        "temperature scaling keeps each photo's top class, so its answers are unchanged: right on "
        f"{accuracy:.1%} of the {photos} test photos before scaling and after"
    )
    if no_better_than_chance(accuracy, photos, k):
        low, high = wilson(round(accuracy * photos), photos)
        said.append(
            f"{kept}, and that accuracy's 95% interval ({low:.1%}-{high:.1%}) includes chance ({guess:.0%}): on these "
            "photos it cannot tell the classes apart either"
        )
        said.append(
            f"the calibration error (ECE) goes from {cal.before.ece:.3f} to {cal.after.ece:.3f}, smaller only because "
            f"a model that says {guess:.0%} is right about {guess:.0%} of the time here; it is no better informed"
        )
        return said
    said.append(f"{kept}, better than chance ({guess:.0%})")
    said.append(
        f"so its answers are worth more than the {guess:.0%} beside them says, and the calibration error (ECE) shows "
        f"it: {cal.before.ece:.3f} before scaling, {cal.after.ece:.3f} after"
    )
    if cal.val_nll_after >= NEAR_UNIFORM * math.log(k):  # the validation photos T was fitted on looked like a guess
        said.append(
            f"T was fitted on the {cal.val_images} validation photos, where the model scored about what a guess "
            f"scores (NLL {cal.val_nll_before:.3f} before scaling, {cal.val_nll_after:.3f} after): they did not "
            "show what the test photos do"
        )
    return said


def caveats(cal: Calibration) -> list[str]:
    """Why '80%' may not mean right about 80% of the time after scaling, one sentence each (the Evaluate page's
    reading and the Predict page say the same); empty when the test photos support it."""
    bound = bound_words(cal)
    said = [bound] if bound else []
    if cal.after.ece > 0.1:
        said.append("An ECE above 0.1 is still poorly calibrated: read its probabilities as rough.")
    elif cal.after.ece_high is not None and cal.after.ece_high > 0.1:
        said.append(
            f"The ECE's 95 % interval ({cal.after.ece_low:.3f}-{cal.after.ece_high:.3f}) reaches above 0.1: on "
            f"{cal.after.images} test photos it may still be poorly calibrated."
        )
    if cal.few_validation_images:
        said.append(
            f"With only {cal.val_per_class:.0f} validation photos per class the temperature is uncertain; "
            "the interval on ECE shows how much."
        )
    return said


def promise_words(cal: Calibration) -> str:
    """What the model card's uses may promise of the run's probabilities, no more than the figures hold."""
    fitted = "its probabilities are temperature-scaled on the validation split"
    if cal.near_uniform:
        guess = chance_level(cal.class_count)
        return (
            f"{fitted} to about {guess:.0%} for every photo, so they carry little information about which answers "
            "are right (see Calibration)"
        )
    if cal.at_bound:
        return (
            f"{fitted} with T = {cal.temperature:.2f}, the {cal.at_bound} bound of Flora's search: they may still "
            "be off (see Calibration)"
        )
    if caveats(cal):
        return f"{fitted}; whether '80%' means right about 80% of the time is not established (see Calibration)"
    return "its probabilities are calibrated on the validation split"
