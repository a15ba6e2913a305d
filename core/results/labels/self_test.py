"""How far the label review's ranking holds on these very photos: labels flipped on purpose, ranked again, the
planted flips counted down the ranking.

Two figures come out. The page's trust figure: how many planted flips are among the first as many suspects as
were planted, against a random order (the lift). And the supported depth that bounds the real list: the depth
d of the self-test's ranking that maximises found(d) - SUPPORT_LIFT x d x planted / photos, the planted flips
among the first d suspects beyond twice what d photos picked at random would hold. Past it, further suspects
hold planted flips less than twice as often as random picks (its slope, on average); a cut where the share
among the first d falls below twice chance instead would keep a long tail of chance-level suspects behind a
strong top (measured on the flowers: 1,300 deep against about 430). No depth when that excess is never
positive or the first d hold fewer than MIN_FOUND planted flips (fewer is luck). `label_issues.bound` scales
the depth to the real list: the same share of the photos.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.results.labels.issues import MIN_FOUND, SUPPORT_LIFT, find_label_issues, log_odds
from core.results.labels.out_of_sample import Fit, balanced_sample, dimensions, out_of_sample, reduce

SELF_TEST_ROWS = 20_000  # training photos the self-test plants flips among (a class-balanced sample of more)
PLANTED_SHARE = 0.05  # of the training photos flipped on purpose to measure the ranking


def self_test(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    seed: int = 0,
    fit: Fit | None = None,
    reduced: bool = False,
) -> dict[str, Any]:
    """Flip PLANTED_SHARE of the labels on purpose, rank again with the same method (its shrinkage and
    temperature chosen again on the flipped labels, unless `fit` is given), and count the planted flips down
    the ranking. Beyond SELF_TEST_ROWS photos, on a class-balanced sample of them.

    Returns {"planted", "found" (among the first `planted` suspects), "chance" (what a random order would
    find there), "lift" (found / chance), "photos" (the self-test's), "depth" (the supported depth, see the
    module; 0: none), "found_at_depth"}; planted 0 and lift None when there are too few photos.
    """
    y = np.asarray(labels, dtype=np.int64)
    if len(y) > SELF_TEST_ROWS:  # a class-balanced sample measures the ranking as well, at a bounded cost
        kept = balanced_sample(np.arange(len(y)), y, SELF_TEST_ROWS, np.random.default_rng(seed + 3))
        features, y = np.asarray(features)[kept], y[kept]
    n = len(y)
    planted = max(5, round(PLANTED_SHARE * n))
    if n < 4 * planted or num_classes < 2:
        return {"planted": 0, "found": 0, "chance": 0.0, "lift": None}
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(n, planted, replace=False)
    flipped = y.copy()
    flipped[rows] = (y[rows] + rng.integers(1, num_classes, planted)) % num_classes
    x = np.asarray(features, dtype=np.float32) if reduced else reduce(features, dimensions(num_classes), seed)
    probabilities = out_of_sample(x, flipped, num_classes, seed=seed, fit=fit, reduced=True).probabilities
    flagged, _ = find_label_issues(probabilities, flipped)
    odds = log_odds(probabilities, flipped)
    order = np.argsort(-odds, kind="stable")
    order = order[flagged[order]]
    hits = np.cumsum(np.isin(order, rows))  # planted flips among the first 1, 2, ... suspects
    found = int(hits[planted - 1]) if len(hits) >= planted else int(hits[-1]) if len(hits) else 0
    chance = planted * planted / n
    depth = supported_depth(hits, planted, n)
    return {
        "planted": planted,
        "found": found,
        "chance": round(chance, 2),
        "lift": round(found / chance, 2),
        "photos": n,
        "depth": depth,
        "found_at_depth": int(hits[depth - 1]) if depth else 0,
    }


def supported_depth(hits: np.ndarray, planted: int, photos: int) -> int:
    """The depth d maximising hits[d - 1] - SUPPORT_LIFT x d x planted / photos (`hits`: planted flips among the
    first 1, 2, ... suspects); 0 when that excess is never positive or the first d hold fewer than MIN_FOUND."""
    if not len(hits):
        return 0
    excess = np.asarray(hits) - SUPPORT_LIFT * np.arange(1, len(hits) + 1) * planted / photos
    best = int(np.argmax(excess))
    return best + 1 if excess[best] > 0 and hits[best] >= MIN_FOUND else 0
