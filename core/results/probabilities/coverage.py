"""What prediction sets did on photos that chose nothing: coverage and size on the held-out half, by class (with a
one-sided binomial test naming under-covered classes) and by set size, and how far they move over many random
halvings."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from core.results.probabilities.conformal_scores import TOLERANCE, class_thresholds, threshold, true_scores

SPREAD_SPLITS = 200  # random halvings of the test split for the coverage spread
SIZE_SPLITS = 20  # of which the mean set size is counted on the first (every class's score: n x classes a halving)


@dataclass
class ClassCoverage:
    name: str
    photos: int
    coverage: float | None  # None: no held-out photo of this class
    mean_size: float | None
    p_below: float | None  # one-sided binomial p-value of 'this class is covered less than the level'


@dataclass
class HeldOut:
    """What the sets did on the half of the test split that chose nothing."""

    photos: int
    coverage: float
    mean_size: float
    singletons: float  # share of sets with one class
    full: float  # share of sets holding every class
    by_class: list[ClassCoverage]
    # by set size: {"1": [right, photos], "2": [...]}: how often sets of each size held the right class. The promise
    # is over all photos; a size's figure can fall short of it (one-class sets of a weak model, often)
    by_size: dict[str, list[int]] = field(default_factory=dict)

    @property
    def under_covered(self) -> list[str]:
        """Classes whose coverage is below the level by more than chance explains (binomial p < 0.05)."""
        return [c.name for c in self.by_class if c.p_below is not None and c.p_below < 0.05]


@dataclass
class Spread:
    """Coverage and size over many random halvings of the test split (each: fit on one half, count the other)."""

    splits: int
    coverage_mean: float
    coverage_sd: float
    coverage_low: float  # 2.5 % and 97.5 % of the halvings
    coverage_high: float
    size_mean: float
    class_coverage_low: dict[str, float] = field(default_factory=dict)  # per class, 2.5 % of the halvings
    class_coverage_high: dict[str, float] = field(default_factory=dict)
    class_coverage_mean: dict[str, float] = field(default_factory=dict)  # per class, over the halvings


def by_size(masks: np.ndarray, labels: np.ndarray) -> dict[str, list[int]]:
    """{size: [right, photos]}: for the sets of each size, how many held the right class, out of how many."""
    labels = np.asarray(labels, dtype=np.int64)
    covered = masks[np.arange(len(labels)), labels]
    sizes = masks.sum(axis=1)
    return {str(int(k)): [int(covered[sizes == k].sum()), int((sizes == k).sum())] for k in np.unique(sizes)}


def held_out_report(masks: np.ndarray, labels: np.ndarray, classes: list[str], level: float) -> HeldOut:
    from scipy.stats import binomtest  # heavy: scipy

    labels = np.asarray(labels, dtype=np.int64)
    covered = masks[np.arange(len(labels)), labels]
    sizes = masks.sum(axis=1)
    by_class = []
    for c, name in enumerate(classes):
        mine = labels == c
        n = int(mine.sum())
        if n == 0:
            by_class.append(ClassCoverage(name, 0, None, None, None))
            continue
        hits = int(covered[mine].sum())
        p_below = float(binomtest(hits, n, level, alternative="less").pvalue)
        by_class.append(ClassCoverage(name, n, hits / n, float(sizes[mine].mean()), p_below))
    n = max(1, len(labels))
    return HeldOut(
        photos=len(labels),
        coverage=float(covered.mean()) if len(labels) else 0.0,
        mean_size=float(sizes.mean()) if len(labels) else 0.0,
        singletons=float((sizes == 1).sum() / n),
        full=float((sizes == len(classes)).sum() / n),
        by_class=by_class,
        by_size=by_size(masks, labels),
    )


def coverage_spread(
    scores: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    level: float,
    splits: int = SPREAD_SPLITS,
    seed: int = 1,
    by_class: bool = False,
) -> Spread:
    """Fit on a random half, count on the other, `splits` times: how far one split's coverage can move."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    given = true_scores(scores, labels)
    # A photo is covered when its label's score is under its threshold or its label is the top class: counted from
    # the labels' scores alone (O(n) a halving); the mean set size needs every class's score (O(n x classes)),
    # so it is counted on the first SIZE_SPLITS halvings.
    is_top = probabilities.argmax(axis=1) == labels
    top = probabilities.argmax(axis=1)
    rng = np.random.default_rng(seed)
    coverages, sizes = np.empty(splits), []
    per_class = np.full((splits, len(classes)), np.nan)
    for s in range(splits):
        perm = rng.permutation(n)
        calibrate, held = perm[: n // 2], perm[n // 2 :]
        if by_class:
            cut = class_thresholds(given[calibrate], labels[calibrate], len(classes), level)[0]
            covered = (given[held] <= cut[labels[held]] + TOLERANCE) | is_top[held]
        else:
            cut = threshold(given[calibrate], level)
            covered = (given[held] <= cut + TOLERANCE) | is_top[held]
        if s < SIZE_SPLITS:
            inside = scores[held] <= np.asarray(cut) + TOLERANCE
            inside[np.arange(len(held)), top[held]] = True  # the top class is always in its set
            sizes.append(inside.sum(axis=1).mean())
        coverages[s] = covered.mean()
        hits = np.bincount(labels[held], weights=covered, minlength=len(classes))
        counts = np.bincount(labels[held], minlength=len(classes))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class[s] = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    with warnings.catch_warnings():  # a class with no held-out photo in any halving has no figure (left out below)
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(per_class, [0.025, 0.975], axis=0)
        mean = np.nanmean(per_class, axis=0)
    return Spread(
        splits=splits,
        coverage_mean=float(coverages.mean()),
        coverage_sd=float(coverages.std(ddof=1)) if splits > 1 else 0.0,
        coverage_low=float(np.quantile(coverages, 0.025)),
        coverage_high=float(np.quantile(coverages, 0.975)),
        size_mean=float(np.mean(sizes)) if sizes else 0.0,
        class_coverage_low={c: float(v) for c, v in zip(classes, low, strict=True) if np.isfinite(v)},
        class_coverage_high={c: float(v) for c, v in zip(classes, high, strict=True) if np.isfinite(v)},
        class_coverage_mean={c: float(v) for c, v in zip(classes, mean, strict=True) if np.isfinite(v)},
    )
