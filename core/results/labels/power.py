"""Whether a label review's self-test was large enough to judge its list.

The self-test plants flips among the training photos and counts them at the top of its ranking. With few photos
it plants few (5%, at least 5), and a count that small cannot tell a useful list from chance: 9 planted among 180
photos need 3 found to beat chance, which even a list four times better than a random order reaches only 26% of
the time. Such a test says nothing either way, and the verdict must say so rather than "treat them as guesses".
"""

from __future__ import annotations

from typing import Any

SIGNIFICANCE = 0.05  # a self-test count beats chance when a random order reaches it at most this often
USEFUL_LIFT = 4.0  # a useful list: planted flips at its top this many times as often as a random order puts them
ENOUGH_POWER = 0.5  # a self-test can judge the list when a useful one would show itself at least this often


def self_test_power(trust: dict[str, Any] | None) -> dict[str, Any] | None:
    """Whether the self-test could tell a useful list from chance: `needed`, the fewest planted flips among the
    first `planted` suspects a random order reaches at most SIGNIFICANCE of the time (hypergeometric; None when no
    count is that rare), `power`, how often a list USEFUL_LIFT times better than a random order would reach it
    (binomial), and `too_small` when that is under ENOUGH_POWER. Found fewer than `needed` on a too-small test says
    nothing either way (9 planted among 180 photos: 3 needed, reached 26% of the time). None without a self-test."""
    from scipy.stats import binom, hypergeom  # heavy: scipy

    trust = trust or {}
    planted, photos = int(trust.get("planted") or 0), int(trust.get("photos") or 0)
    if not planted or photos < planted:
        return None
    needed = next(
        (k for k in range(1, planted + 1) if hypergeom.sf(k - 1, photos, planted, planted) <= SIGNIFICANCE), None
    )
    hit = min(1.0, USEFUL_LIFT * planted / photos)
    power = 0.0 if needed is None else float(binom.sf(needed - 1, planted, hit))
    return {"needed": needed, "power": power, "too_small": power < ENOUGH_POWER}


def inconclusive(trust: dict[str, Any] | None) -> bool:
    """The self-test found too few planted flips to show the list beats chance, and was too small to show it could
    not (`self_test_power`): its figure judges nothing."""
    power = self_test_power(trust)
    if power is None or not power["too_small"]:
        return False
    return power["needed"] is None or int((trust or {}).get("found") or 0) < power["needed"]


def too_small_words(trust: dict[str, Any]) -> str:
    """'the self-test was too small to judge the list (9 training labels swapped ...)', for the verdict and bound."""
    power = self_test_power(trust) or {"needed": None, "power": 0.0}
    planted, photos = int(trust["planted"]), int(trust["photos"])
    chance, found = float(trust.get("chance") or 0.0), int(trust.get("found") or 0)
    needed = (
        f"only {power['needed']} or more would have shown the list beats chance, which even a list "
        f"{USEFUL_LIFT:g} times better than a random order reaches {power['power']:.0%} of the time"
        if power["needed"] is not None
        else "no count would have shown the list beats chance"
    )
    return (
        f"the self-test was too small to judge the list ({planted} training labels swapped on purpose among "
        f"{photos} photos: a random order puts about {chance:.1f} of them among the first {planted}, and {needed}; "
        f"it found {found}, which says nothing either way)"
    )
