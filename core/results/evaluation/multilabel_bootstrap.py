"""A multi-label evaluation's spread and baseline: seeded bootstrap 95% intervals, and what a random scorer's AP is.

The intervals resample the test photos (a photo with all its labels, as they were drawn together), recompute each
figure on every resample and take the 2.5th and 97.5th percentiles. A resample is a count per photo (multinomial), so
each figure is a weighted sum over the photos as they are; average precision with weights is scikit-learn's on the
photos repeated (tied scores one threshold, as `core.train.average_precision` has them).

A random scorer's AP for a label is not exactly its frequency: on N photos of which P have it, a ranking drawn at
random has the expected AP  H_N / N + (P - 1)(N - H_N) / (N(N - 1))  (H_N the N-th harmonic number), which tends to
P / N on many photos and lies above it on few (1 positive among 20 photos: 0.18 against 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 1000
CELL_BUDGET = 50_000_000  # resamples x photos x labels: fewer resamples on a large test split (at least 100)
MIN_RESAMPLES = 100
MAX_CELLS = CELL_BUDGET // MIN_RESAMPLES  # photos x labels above which no interval is resampled (500,000)


def random_ap(positives: int | np.ndarray, photos: int) -> float | np.ndarray:
    """The expected average precision of a random ranking of `photos` photos of which `positives` have the label
    (NaN where none has it)."""
    p = np.asarray(positives, dtype=np.float64)
    n = float(photos)
    if n < 1:
        return np.full_like(p, np.nan) if p.ndim else float("nan")
    harmonic = float(np.sum(1.0 / np.arange(1, int(n) + 1)))
    tail = (p - 1) * (n - harmonic) / (n * (n - 1)) if n > 1 else np.zeros_like(p)
    out = np.where(p > 0, harmonic / n + tail, np.nan)
    return out if out.ndim else float(out)


def weighted_average_precisions(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision of each label (columns of `targets`/`scores`, N rows) under each row of `weights` (B, N):
    (B, C), NaN where a weighting leaves a label no positive."""
    truth = np.asarray(targets) > 0
    scores = np.asarray(scores, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    out = np.full((len(weights), truth.shape[1]), np.nan)
    for j in range(truth.shape[1]):
        out[:, j] = _weighted_ap(truth[:, j], scores[:, j], weights)
    return out


def _weighted_ap(truth: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], truth[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]
    w = weights[:, order]
    true_positives = np.cumsum(w * hits, axis=1)[:, last_of_tie]
    answers = np.cumsum(w, axis=1)[:, last_of_tie]
    positives = true_positives[:, -1]
    gained = np.diff(true_positives, axis=1, prepend=0.0)  # 0 where a tie group holds no positive (or no weight)
    precision = true_positives / np.maximum(answers, 1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.sum(gained * precision, axis=1) / positives
    return np.where(positives > 0, ap, np.nan)


def micro_average_precision(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """AP over every (photo, label) pair as one ranking (scikit-learn's average="micro"), under each weighting."""
    n, c = np.asarray(targets).shape
    weights = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=np.float64)
    flat_truth = (np.asarray(targets) > 0).reshape(-1, 1)
    flat_scores = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    out = np.empty(len(weights))
    chunk = max(1, 4_000_000 // max(1, n * c))  # a chunk's repeated weights stay a few tens of MB
    for start in range(0, len(weights), chunk):
        repeated = np.repeat(weights[start : start + chunk], c, axis=1)  # photo-major, as reshape(-1) lays them
        out[start : start + chunk] = _weighted_ap(flat_truth[:, 0], flat_scores[:, 0], repeated)
    return out


@dataclass
class Intervals:
    """95% intervals (low, high) of each figure, from `resamples` bootstrap resamples seeded with `seed`."""

    resamples: int
    seed: int
    map: tuple[float, float]
    map_micro: tuple[float, float]
    exact_match: tuple[float, float]
    hamming_loss: tuple[float, float]
    f1_macro: tuple[float, float]
    ap: np.ndarray  # (C, 2)
    precision: np.ndarray  # (C, 2)
    recall: np.ndarray  # (C, 2)
    f1: np.ndarray  # (C, 2)


def resamples_for(photos: int, labels: int, wanted: int = RESAMPLES) -> int:
    """`wanted`, or fewer on a split so large that the resamples would pass CELL_BUDGET (never under 100)."""
    return int(max(MIN_RESAMPLES, min(wanted, CELL_BUDGET // max(1, photos * labels))))


def bootstrap(
    targets: np.ndarray, scores: np.ndarray, predicted: np.ndarray, resamples: int = RESAMPLES, seed: int = 0
) -> Intervals:
    """The intervals of every figure a multi-label evaluation reports, from the test photos' 0/1 `targets`, `scores`
    and 0/1 `predicted` labels (each (N, C))."""
    truth = np.asarray(targets) > 0
    predicted = np.asarray(predicted) > 0
    n, c = truth.shape
    if n * c > MAX_CELLS or not n:  # minutes and gigabytes (1,000 labels x 100k photos): none, and said so
        return _none(c, seed)
    resamples = resamples_for(n, c, resamples)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64) if n else np.zeros((0, 0))
    per_label_ap = weighted_average_precisions(truth, scores, weights)
    with np.errstate(invalid="ignore"):
        maps = np.where(np.isnan(per_label_ap).all(axis=1), np.nan, np.nanmean(_nan_safe(per_label_ap), axis=1))
    tp = weights @ (truth & predicted)
    fp = weights @ (~truth & predicted)
    fn = weights @ (truth & ~predicted)
    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    tested = (weights @ truth) > 0
    with np.errstate(invalid="ignore"):
        f1_macro = np.nanmean(np.where(tested, f1, np.nan), axis=1) if c else np.full(resamples, np.nan)
    exact = weights @ np.all(truth == predicted, axis=1) / n
    hamming = weights @ np.sum(truth != predicted, axis=1) / (n * c)
    return Intervals(
        resamples=resamples,
        seed=seed,
        map=_percentiles(maps),
        map_micro=_percentiles(micro_average_precision(truth, scores, weights)),
        exact_match=_percentiles(exact),
        hamming_loss=_percentiles(hamming),
        f1_macro=_percentiles(f1_macro),
        ap=_columns(per_label_ap),
        precision=_columns(precision),
        recall=_columns(recall),
        f1=_columns(f1),
    )


def _none(labels: int, seed: int) -> Intervals:
    """No interval (0 resamples): a split too large to resample within the budget, or none at all."""
    nan, columns = (float("nan"), float("nan")), np.full((labels, 2), np.nan)
    return Intervals(0, seed, nan, nan, nan, nan, nan, columns, columns, columns, columns)


def _nan_safe(values: np.ndarray) -> np.ndarray:
    """All-NaN rows get a 0 column so nanmean does not warn; the caller puts NaN back."""
    out = values.copy()
    empty = np.isnan(out).all(axis=1)
    if empty.any() and out.shape[1]:
        out[empty, 0] = 0.0
    return out


def ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """top / bottom, 0 where bottom is 0 (scikit-learn's zero_division=0)."""
    return np.divide(top, bottom, out=np.zeros_like(top, dtype=np.float64), where=bottom > 0)


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _columns(values: np.ndarray) -> np.ndarray:
    return np.array([_percentiles(values[:, j]) for j in range(values.shape[1])]).reshape(-1, 2)
