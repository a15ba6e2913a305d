"""What a prediction set's promise says and what the held-out photos measured, in words that hold on a weak model.

The split-conformal promise is an average: over many photos like the calibration ones, sets at 90% hold the right
class 9 times in 10 (at least, in expectation). It says nothing about one photo, and with one threshold for all
classes nothing about one class. A finite held-out sample can land below the level by chance: on n photos a true
90% gives a count of right sets spread like Binomial(n, 0.9), so the words say whether the measured count is inside
that spread (the sampling slack) or below it, and never call a figure under the level "at least" the level.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

SLACK_MASS = 0.95  # the counts a true level gives in this share of draws of n photos


# Beside a set for a photo the check did not flag (the server's `prediction_set.note`): `trusted` says only that
# (walk 52: 'trusted: true' on a sunflower's set, a class the model does not know, read as an endorsement).
def unflagged_set_note(let_through: str | None = None) -> str:
    """Beside a set whose photo the out-of-distribution check did not flag ("trusted"): what that means, with the
    share of other photos the check let through when tested (`OODDetector.let_through_words`) where it was measured."""
    through = let_through or "the check lets some photos of other kinds through"
    return (
        "trusted means only that the photo was not flagged as unlike the run's classes; the promise covers photos of "
        f"those classes, and {through}"
    )


def level_words(level: float) -> str:
    """'9 times in 10' at 0.9, '19 times in 20' at 0.95, '99 times in 100' at 0.99."""
    for out_of in (10, 20, 100):
        right = level * out_of
        if abs(right - round(right)) < 1e-6:
            return f"{round(right)} times in {out_of}"
    return f"{level:.0%} of the time"


def promise_words(level: float, by_class: bool = False, shared: Sequence[str] = ()) -> str:
    """The promise and what it covers, one statement wherever it is shown: an average over many photos like the
    calibration ones, never each photo; for each class only where the sets have a threshold per class, and not for
    the classes in `shared` (too few calibration photos for their own threshold: they share the overall one)."""
    held = (
        f"on average over many photos like the calibration ones (half of the run's test photos), sets at {level:.0%} "
        f"hold the right class {level_words(level)}"
    )
    if not by_class:
        return (
            f"{held}, all classes taken together (one threshold for all: marginal coverage); not for each photo or "
            "each class"
        )
    if not shared:
        return (
            f"{held}, and so do the photos of each class (a threshold per class: class-conditional coverage); "
            "not for each photo"
        )
    named = ", ".join(shared)
    return (
        f"{held}; for each class with a threshold of its own the same holds among its photos (class-conditional "
        f"coverage), but {named} {'has' if len(shared) == 1 else 'have'} too few calibration photos for one and "
        f"{'shares' if len(shared) == 1 else 'share'} the overall threshold, so for {named} the promise holds only "
        "with the other classes taken together; not for each photo"
    )


def sampling_range(photos: int, level: float) -> tuple[int, int]:
    """(low, high): the counts of right sets a true `level` gives on `photos` photos in SLACK_MASS of draws."""
    from scipy.stats import binom  # heavy: scipy

    tail = (1 - SLACK_MASS) / 2
    return int(binom.ppf(tail, photos, level)), int(binom.ppf(1 - tail, photos, level))


def held_words(right: int, photos: int, level: float) -> str:
    """'16 of 18 (89%), below 90% but within the sampling slack of 18 photos (...)': the measured figure with its
    count, and whether a shortfall is what chance gives on that many photos."""
    if photos <= 0:
        return "no held-out photo to count on"
    said = f"{right} of {photos} ({right / photos:.0%})"
    if right / photos >= level:
        return f"{said}, at or above {level:.0%}"
    low, high = sampling_range(photos, level)
    spread = f"on {photos} photos a true {level:.0%} gives {low} to {high} right in {SLACK_MASS:.0%} of draws"
    if right >= low:
        return f"{said}: below {level:.0%}, but within the sampling slack ({spread})"
    return f"{said}: below {level:.0%} by more than chance explains ({spread}), so the promise did not hold here"


def full_words(share: float, classes: int) -> str | None:
    """'on 61% of photos the set holds both classes: the model cannot tell them apart there'; None when no set
    held every class."""
    if share <= 0:
        return None
    every = "both classes" if classes == 2 else f"all {classes} classes"
    apart = "them" if classes == 2 else "the classes"
    return f"on {share:.0%} of photos the set holds {every}: the model cannot tell {apart} apart there"


def by_size_record(by_size: dict[str, list[int]], classes: int) -> tuple[int, int, int]:
    """(right, photos, photos whose set holds every class) from a held-out count by set size."""
    right = sum(int(r) for r, _ in by_size.values())
    photos = sum(int(n) for _, n in by_size.values())
    full = int(by_size.get(str(classes), [0, 0])[1])
    return right, photos, full


def shared_words(sets, level: float | None = None) -> str | None:
    """Why the classes of ConformalSets `sets` without a threshold of their own have none: 'calibration photos by
    class: rose 6 (the others: daisy 9, dandelion 12); a threshold of its own at 90% needs 9'; None where every class
    has one (or the sets have one threshold)."""
    from core.results.probabilities.conformal_scores import min_photos  # heavy: numpy's scores, beside the words

    level = sets.level if level is None else level
    few = sets.few_photos(level)
    if not few:
        return None
    counts = Counter(sets.classes[int(c)] for c in sets.calibration_labels)
    named = ", ".join(f"{c} {counts[c]}" for c in few)
    others = ", ".join(f"{c} {counts[c]}" for c in sets.classes if c not in few)
    return (
        f"calibration photos by class: {named}"
        + (f" (the others: {others})" if others else "")
        + f"; a threshold of its own at {level:.0%} needs {min_photos(level)}"
    )
