"""Answer only when sure, in words: a threshold as written, that a level has no threshold and the nearest that has
one, the spread over random halvings and, where more than a tenth of them found no threshold, that the promise rests
on a lucky halving. Predict, Evaluate, the server's reason, `core calibrate` and the model card say these."""

from __future__ import annotations

from typing import Any

from core.results.probabilities.learn_then_test import LEVELS

# The spreads below are selective.SelectiveSpread; typed Any so that selective, which says its words through this
# module, is not imported back from here (one direction: selective -> selective_words).
SelectiveSpread = Any


def threshold_text(threshold: float) -> str:
    """A threshold as written: three decimals where that is exact (the grid's thousandths), else all it needs."""
    return f"{threshold:.3f}" if abs(round(threshold, 3) - threshold) < 1e-9 else f"{threshold:.6f}".rstrip("0")


def no_threshold_words(max_error: float, nearest: dict[str, Any] | None) -> tuple[str, str]:
    """Where `max_error` has no threshold: (that it cannot be promised, the nearest level that can with the share it
    answered on the held-out half), two clauses in lower case; `nearest` is `Selective.nearest_at(max_error)`.
    Predict, Evaluate, the server's reason, `core calibrate` and the card say these."""
    level = f"{max_error:.0%}"
    cannot = (
        f"no threshold can promise at most {level} wrong on this run's photos, so at {level} every photo is held back"
    )
    if nearest is None:
        return cannot, (
            f"no level up to {LEVELS[-1]:.0%} can be promised either: on the photos it calibrates on, even its surest "
            "answers do not show one"
        )
    held = nearest["held_out"]
    how = (
        f"answering when the top probability is {threshold_text(nearest['threshold'])} or more"
        if nearest["threshold"] > 0
        else "answering every photo"
    )
    return cannot, (
        f"the nearest level it can promise is {nearest['max_error']:.0%} wrong: {how}, it answered "
        f"{held['answered']} of {held['photos']} held-out test photos ({held['share_answered']:.0%}), "
        f"{held['errors']} of them wrong"
    )


def fragile_words(spread: SelectiveSpread | None) -> str | None:
    """Where more than a tenth of the random halvings found no threshold at the level, that in words (one clause, lower
    case), to stand beside the promise; None otherwise. The promise itself is over the calibration photos drawn; this
    says how often another draw of the same test photos would have had none to make."""
    if spread is None or not spread.fragile:
        return None
    text = (
        f"on other random halvings of the same test photos, each fitting its own threshold, no threshold could be "
        f"promised in {spread.without_threshold} of {spread.splits}"
    )
    if spread.share_found_mean is None:
        return text + ", so none of them answered any photo"
    return text + (
        f", so over all {spread.splits} it answered {spread.share_mean:.0%} of photos on average "
        f"({spread.share_found_mean:.0%} in the {spread.found} where one was found)"
    )


def halvings_words(spread: SelectiveSpread, max_error: float) -> str:
    """The spread over halvings in one sentence (no final stop): each fits its own threshold, the error among the
    photos answered, and which halvings its figures leave out (those with no threshold or no answer)."""
    level = f"{max_error:.0%}"
    text = (
        f"Over {spread.splits} random halvings of the test photos, each fitting its own threshold on one half and "
        "counting on the other"
    )
    if spread.error_mean is None:
        return text + f", none answered a photo at {level} (no threshold in {spread.without_threshold} of them)"
    text += (
        f", the error among answered photos was {spread.error_mean:.1%} ± {spread.error_sd or 0:.1%} "
        f"({spread.error_low:.1%}–{spread.error_high:.1%} in 95% of them), at most {level} in "
        f"{spread.within_level:.0%} of them"
    )
    left = []
    if spread.without_threshold:
        left.append(f"the {spread.without_threshold} where no threshold was found")
    empty = spread.found - spread.answered_splits if spread.answered_splits is not None else 0
    if empty:
        left.append(f"the {empty} where it answered no photo")
    if left:
        counted_over = spread.answered_splits if spread.answered_splits is not None else spread.found
        text += f"; these figures are over {counted_over} halvings and leave out " + " and ".join(left)
    return text + (
        f"; the share answered was {spread.share_low:.0%}–{spread.share_high:.0%} (a halving without a threshold "
        "answers none)"
    )


def guarantee_words(max_error: float, fragile: str | None) -> str:
    """What answering at `max_error` promises, one sentence (no final stop), and, with `fragile` (fragile_words), that
    the promise rests on a lucky halving: the server's `guarantee`, beside each answer at that level."""
    said = (
        f"with probability at least 90% over the test photos it calibrated on, at most {max_error:.0%} of the answers "
        "given to photos like the run's test photos are wrong (over many photos, not this one)"
    )
    return said + (f"; but {fragile}" if fragile else "")


def other_halvings_words(spread: SelectiveSpread | None, level: float) -> str | None:
    """Where no level can be promised on the photos drawn, how often other random halvings found a threshold at the
    highest level (`spread` at `level`), one clause in lower case; None where none did (walk 52: 30 of 200 had one at
    50%, which 'cannot be promised' left unsaid)."""
    if spread is None or spread.found == 0:
        return None
    said = (
        f"on other random halvings of the same test photos, each fitting its own, a threshold at {level:.0%} was found "
        f"in {spread.found} of {spread.splits}"
    )
    if spread.error_mean is not None and spread.error_mean > level:  # walk 53: 67% wrong shown as support
        return said + (
            f", but on their other halves the error among the photos answered was {spread.error_mean:.0%} on "
            f"average, above {level:.0%}: those thresholds did not keep their promise there, so they are no support"
        )
    if spread.error_mean is not None:
        said += f" (the error among the photos they answered {spread.error_mean:.0%} on average)"
    return said + ": whether one exists depends on which photos calibrate"
