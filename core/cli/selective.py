"""`calibrate --max-error`'s words: the threshold that answers only when sure, what it did on the held-out half, how far
another halving moves it, and, where no threshold can promise the level, the nearest level that can."""

from __future__ import annotations

from core.results.probabilities.selective import (
    Selective,
    fragile_words,
    halvings_words,
    no_threshold_words,
    threshold_text,
)


def print_selective(fitted: Selective) -> None:
    level, held, spread = fitted.max_error, fitted.held_out, fitted.spread
    calibration = len(fitted.calibration_confidence)
    views = f" averaged over {fitted.views} views" if fitted.views > 1 else ""
    print(
        f"\nanswer only when sure, at most {level:.0%} wrong among the photos answered (Learn then Test on the "
        f"calibrated probabilities{views}; fitted on {calibration} test photos, counted on the other {held.photos}):"
    )
    if fitted.threshold is None:
        for clause in no_threshold_words(level, fitted.nearest):
            print(clause)
        luck = fitted.no_level_words() if fitted.nearest is None else None
        if luck:
            print(f"still, {luck}")
        if fitted.nearest:
            print(f"to use that level: --max-error {fitted.nearest['max_error']:g} (Predict's slider has it too)")
        return
    error = "-" if held.error is None else f"{held.error:.1%}"
    print(
        f"threshold: answer when the top probability is {threshold_text(fitted.threshold)} or more; promised with "
        f"probability {1 - fitted.delta:.0%} over the calibration photos drawn"
    )
    print(
        f"held-out half: {held.answered} of {held.photos} answered ({held.share_answered:.0%}), {held.errors} wrong "
        f"({error}); a true rate of {level:.0%} gives up to {held.allowed_errors} wrong in 95% of counts this size"
    )
    if spread is not None:
        print(halvings_words(spread, level))
        fragile = fragile_words(spread)
        if fragile:
            print(f"many halvings find no threshold here: {fragile}")
    print(f"stored with the run: Predict, the model server (max_error={level:g}) and batch predictions can hold back")
