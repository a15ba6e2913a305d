"""Conformal prediction's arithmetic: the APS / RAPS score of every class, the finite-sample threshold (one, or one
per class), the sets they give, and RAPS's regularisation chosen on validation. `core.results.probabilities.conformal`
fits and stores a run's sets with these; `core.results.probabilities.coverage` counts what they did."""

from __future__ import annotations

import math

import numpy as np

from core.errors import InvalidInput

LAMBDAS = (0.0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)  # RAPS's grid (the paper's, with 0 = APS)
TOLERANCE = 1e-6  # scores equal to the threshold up to float noise (float32 probabilities summed) are inside


class ConformalError(InvalidInput):
    """Too few photos to fit sets at this level, or a level outside (0, 1)."""


def level_of(value: float) -> float:
    """A level (coverage, 0.5-1) from either a level or an alpha: 0.9 and 0.1 both mean 'right 9 times in 10'."""
    value = float(value)
    if not 0 < value < 1:
        raise ConformalError(f"the level must be between 0 and 1 (0.9, or alpha 0.1). Received: {value}")
    return value if value >= 0.5 else 1.0 - value


def class_scores(
    probabilities: np.ndarray, u: np.ndarray | float = 1.0, lam: float = 0.0, k_reg: int = 0
) -> np.ndarray:
    """(N, C): the score each class would have if it were the photo's label (lower: more plausible).

    In the order of decreasing probability: the cumulated probability up to and including the class, minus
    u times its own probability, plus lam * (rank - k_reg)+ with 1-based ranks (RAPS; lam = 0 is APS).

    Flora's sets use u = 1: a class's score is the probability of the classes ranked above it, so a class joins
    the set while the classes above it hold no more than the threshold. Not randomised: the same probabilities
    always give the same set, and a surer photo never gets a larger set than a less sure one with the same ranking.
    The guarantee (at least the level, over photos exchangeable with the calibration ones) holds for any score
    fixed in advance; randomised APS (u drawn per photo, MAPIE's "randomized") only brings coverage down to
    exactly the level, at the price of sets that differ between two photos the model sees alike. The tests pass
    MAPIE's draws as `u` to check the arithmetic against it.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-probabilities, axis=1, kind="stable")
    ranked = np.take_along_axis(probabilities, order, axis=1)
    ranks = np.arange(1, probabilities.shape[1] + 1)
    share = np.asarray(u, dtype=np.float64)
    ranked_scores = np.cumsum(ranked, axis=1) - (share[:, None] if share.ndim else share) * ranked
    ranked_scores += lam * np.maximum(0, ranks - k_reg)[None, :]
    scores = np.empty_like(ranked_scores)
    np.put_along_axis(scores, order, ranked_scores, axis=1)
    return scores


def true_scores(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return scores[np.arange(len(scores)), np.asarray(labels, dtype=np.int64)]


def threshold(calibration_scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) * level)-th smallest calibration score; +inf when n is too small for the level."""
    n = len(calibration_scores)
    k = math.ceil((n + 1) * level - 1e-12)
    if k > n:
        return math.inf
    return float(np.sort(np.asarray(calibration_scores, dtype=np.float64))[k - 1])


def min_photos(level: float) -> int:
    """The fewest calibration photos for which the threshold is finite at `level` (9 at 0.9, 99 at 0.99)."""
    return math.ceil(level / (1 - level) - 1e-9)


def class_thresholds(
    scores: np.ndarray, labels: np.ndarray, classes: int, level: float
) -> tuple[np.ndarray, list[int]]:
    """(C,) thresholds, each from the calibration photos of its class (Mondrian, class-conditional conformal:
    the guarantee then holds for each class), and the classes with too few photos for `level`.

    A class with too few photos takes the larger of the threshold of all photos and its own largest score (what
    its photos support at the highest level they can): never lower than at a level its photos did support, so a
    higher level never gives a smaller set, and the overall guarantee still holds for it.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    overall = threshold(scores, level)
    cuts, few = np.full(classes, overall), []
    for c in range(classes):
        mine = scores[labels == c]
        if len(mine) < min_photos(level):
            few.append(c)
            if len(mine):
                cuts[c] = max(overall, float(mine.max()))
        else:
            cuts[c] = threshold(mine, level)
    return cuts, few


def set_masks(scores: np.ndarray, cut: float | np.ndarray, probabilities: np.ndarray | None = None) -> np.ndarray:
    """(N, C) booleans: the classes in each photo's set (`cut`: one threshold, or one per class), always with the
    top class: the answer shown first is in its own set, no set is empty, and a higher level never drops a class
    (filling only empty sets did: {top} at one level, {another} at the next, with per-class thresholds)."""
    masks = scores <= np.asarray(cut, dtype=np.float64) + TOLERANCE
    top = (np.asarray(probabilities) if probabilities is not None else -scores).argmax(axis=1)
    masks[np.arange(len(masks)), top] = True
    return masks


def choose_regularisation(
    probabilities: np.ndarray, labels: np.ndarray, level: float, method: str
) -> tuple[float, int, str]:
    """(lam, k_reg, how) for `method` from the validation split.

    RAPS: k_reg is the rank of the true class that `level` of validation photos reach (MAPIE's k*), lam the
    value of the grid with the smallest mean set size on validation. APS, or too few validation photos: 0, 0.
    """
    if method == "aps":
        return 0.0, 0, "APS: no regularisation"
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) < min_photos(level) + 1:
        return 0.0, 0, f"RAPS without regularisation: {len(labels)} validation photos are too few to choose it"
    probabilities = np.asarray(probabilities, dtype=np.float64)
    given = probabilities[np.arange(len(labels)), labels]
    ranks = 1 + (probabilities > given[:, None]).sum(axis=1)
    reached = threshold(ranks, level)
    k_reg = int(max(1, reached if np.isfinite(reached) else ranks.max()))
    # One sort for the whole grid: in rank order a row's scores are its APS scores plus lam * (rank - k_reg)+,
    # ascending in rank, so a set at threshold q is the ranks whose score is <= q (and always the first).
    order = np.argsort(-probabilities, axis=1, kind="stable")
    ranked = np.take_along_axis(probabilities, order, axis=1)
    base = np.cumsum(ranked, axis=1) - ranked  # class_scores with u = 1: the mass ranked above each class
    rows = np.arange(len(labels))
    true_rank = np.argmax(order == labels[:, None], axis=1)  # 0-based position of the label in each row
    penalty = np.maximum(0, np.arange(1, probabilities.shape[1] + 1) - k_reg)
    best = (math.inf, 0.0)
    for lam in LAMBDAS:
        scored = base + lam * penalty[None, :]
        cut = threshold(scored[rows, true_rank], level)
        size = float(np.maximum((scored <= cut + TOLERANCE).sum(axis=1), 1).mean())
        if size < best[0] - 1e-9:
            best = (size, lam)
    how = (
        f"RAPS: k_reg = {k_reg} (the true class's rank reached by {level:.0%} of validation photos), "
        f"lambda = {best[1]:g} (the smallest mean set size on validation, {best[0]:.2f} classes)"
    )
    return best[1], k_reg, how
