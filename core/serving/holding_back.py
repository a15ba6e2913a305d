"""Whether an answer is given or held back, and why: the run's saved threshold for the answer's class
(`core.results.probabilities.class_thresholds`), and, when asked for a maximum error, the threshold that promises
it (`core.results.probabilities.selective`) with photos that look like none of the run's classes held back too (the
promise covers photos like the run's test photos, not those).

Answers get `abstained` (None where nothing could hold them back: no level asked and no class threshold saved) and
the reasons in words. A photo that looks like none of the classes is held back whenever anything could hold it back,
with that reason first: every threshold was measured on photos like the run's test photos, not on this one.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.results.probabilities import class_thresholds as per_class
from core.results.probabilities import selective as sure
from core.results.probabilities.selective_words import fragile_words, guarantee_words

FOREIGN_REASON = (
    "it looks like none of the classes this model knows: the promise covers photos like its test photos only"
)


def hold_back(
    answers: Iterable,
    selective: sure.Selective | None,
    max_error: float | None,
    thresholds: dict[str, float],
) -> None:
    """Set each answer's `abstained`, `abstain_reason` and `max_error` (a ServedModel Answer)."""
    if max_error is None and not thresholds:
        return
    promise = None
    if max_error is not None and selective is not None and selective.threshold_at(max_error) is not None:
        promise = guarantee_words(max_error, fragile_words(selective.spread_at(max_error)))
    for answer in answers:
        reasons = [FOREIGN_REASON] if answer.ood_flag else []
        if max_error is not None:
            given, why = sure.decision(selective, answer.max_probability, max_error)
            if not given:
                reasons.append(why)
        given, why = per_class.decision(thresholds, answer.label, answer.max_probability)
        if not given:
            reasons.append(why)
        answer.abstained = bool(reasons)
        answer.abstain_reason = "; ".join(reasons) if reasons else None
        answer.max_error = max_error
        answer.guarantee = promise


def held_back_counts(
    answers: Iterable,
    selective: sure.Selective | None,
    max_error: float | None,
    thresholds: dict[str, float],
) -> tuple[int, int]:
    """(held back, held back by the saved class thresholds alone): answers `hold_back` held back, and of them those
    that neither the level's threshold nor the foreign check would have held back (what the level's guarantee does
    not cover)."""
    held = alone = 0
    for answer in answers:
        if not answer.abstained:
            continue
        held += 1
        level_holds = max_error is not None and not sure.decision(selective, answer.max_probability, max_error)[0]
        if (
            not answer.ood_flag
            and not level_holds
            and not per_class.decision(thresholds, answer.label, answer.max_probability)[0]
        ):
            alone += 1
    return held, alone
