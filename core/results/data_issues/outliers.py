"""Outliers: photos far from every other photo, in the backbone's feature space and in how the picture looks.

The score is cleanlab's `OutOfDistribution` idea on features: the mean distance of a photo to its K nearest
neighbours (itself left out), divided by the median of that over the dataset, so 1 is a typical photo and 3 is
three times farther from its neighbours than a typical one. Two views are scored and averaged:

- the pooled features (reduced to their leading principal directions, `out_of_sample.reduce`): what the network
  sees. With ImageNet weights they alone find a screenshot among flowers;
- the look of the picture (`look_statistics`): mean colour, colourfulness, contrast, edges, the gray-level
  histogram, how alike neighbouring pixels are (near 1 in a photograph, near 0 in noise) and the share of the
  largest flat area (large in a screenshot). Read from the health check's 32 px thumbnails, so free once the
  dataset was checked. Measured on flowers5-128 with 8 planted non-flowers (tests/results/data_issues/test_report.py,
  docs: the helper's report): a random-start backbone's features alone put 2-6 of them in the top 20, the two
  views together 7-8.

A photo is flagged as cleanlab's Datalab flags one: its score above the third quartile plus 1.7 interquartile
ranges. Bounded at any size: neighbours are searched among at most MAX_REFERENCE photos (a random sample of more).
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 10  # K: cleanlab's default
KNN_DIMENSIONS = 64  # leading principal directions the neighbour search sees (the rest is mostly noise)
MAX_REFERENCE = 50_000  # photos the neighbours are searched among (a random sample of larger sets)
IQR_SCALE = 1 / 0.37037 - 1  # cleanlab Datalab's outlier threshold: Q3 + 1.7 x IQR
LOOK_BINS = 8
LOOK_CHUNK = 8192  # thumbnails at a time (100k of them as float32 would be 400 MB, and each difference as much)
LOOK_WIDTH = 11 + LOOK_BINS  # colour (3), colourfulness (2), contrast, edges (2), neighbours alike (2), flat area


def look_statistics(thumbs: np.ndarray, colour: np.ndarray, chroma_mean: np.ndarray, chroma_peak: np.ndarray):
    """How each picture looks, as numbers: (n, LOOK_WIDTH) float32 from the health check's per-photo results.

    Args:
        thumbs: (n, 32, 32) uint8 grayscale thumbnails.
        colour: (n, 3) mean R, G, B (0-255).
        chroma_mean, chroma_peak: (n,) colourfulness, mean and 99th percentile of max(R,G,B) - min(R,G,B).
    """
    parts = [
        _look(
            thumbs[i : i + LOOK_CHUNK],
            colour[i : i + LOOK_CHUNK],
            chroma_mean[i : i + LOOK_CHUNK],
            chroma_peak[i : i + LOOK_CHUNK],
        )
        for i in range(0, len(thumbs), LOOK_CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, LOOK_WIDTH), dtype=np.float32)


def _look(thumbs, colour, chroma_mean, chroma_peak) -> np.ndarray:
    gray = np.asarray(thumbs, dtype=np.float32) / 255.0
    n = len(gray)
    edges_x = np.abs(np.diff(gray, axis=2)).mean(axis=(1, 2))
    edges_y = np.abs(np.diff(gray, axis=1)).mean(axis=(1, 2))
    levels = np.clip((gray * (LOOK_BINS - 1)).round().astype(np.int64), 0, LOOK_BINS - 1).reshape(n, -1)
    histogram = _row_counts(levels, LOOK_BINS) / levels.shape[1]
    fine = np.clip((gray * 31).round().astype(np.int64), 0, 31).reshape(n, -1)
    flat_share = _row_counts(fine, 32).max(axis=1) / fine.shape[1]
    return np.column_stack(
        [
            np.asarray(colour, dtype=np.float32) / 255.0,
            np.asarray(chroma_mean, dtype=np.float32) / 255.0,
            np.asarray(chroma_peak, dtype=np.float32) / 255.0,
            gray.std(axis=(1, 2)),
            edges_x,
            edges_y,
            _correlation(gray[:, :, 1:], gray[:, :, :-1]),
            _correlation(gray[:, 1:], gray[:, :-1]),
            flat_share,
            histogram,
        ]
    ).astype(np.float32)


def _row_counts(values: np.ndarray, bins: int) -> np.ndarray:
    """Per row, how many of its values fall in each of `bins` levels (one bincount for all rows)."""
    n = len(values)
    offsets = (values + np.arange(n)[:, None] * bins).ravel()
    return np.bincount(offsets, minlength=n * bins).reshape(n, bins).astype(np.float32)


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image, the correlation of each pixel with its neighbour (0 for a flat image)."""
    a = a - a.mean(axis=(1, 2), keepdims=True)
    b = b - b.mean(axis=(1, 2), keepdims=True)
    spread = np.sqrt((a * a).mean(axis=(1, 2)) * (b * b).mean(axis=(1, 2)))
    return np.where(spread > 1e-6, (a * b).mean(axis=(1, 2)) / np.maximum(spread, 1e-6), 0.0)


def standardised(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance (a constant column stays 0)."""
    x = np.asarray(x, dtype=np.float32)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)


def knn_distances(x: np.ndarray, k: int = NEIGHBOURS, seed: int = 0, max_reference: int = MAX_REFERENCE) -> np.ndarray:
    """Each row's mean Euclidean distance to its k nearest other rows (among at most `max_reference` of them)."""
    from sklearn.neighbors import NearestNeighbors  # heavy: sklearn

    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n)
    if n > max_reference:
        reference = np.sort(np.random.default_rng(seed).choice(n, max_reference, replace=False))
    else:
        reference = np.arange(n)
    search = NearestNeighbors(n_neighbors=k + 1).fit(x[reference])
    distances, neighbours = search.kneighbors(x)
    # a row in the reference finds itself first, at distance 0: leave it out (a row outside it keeps k + 1 - 1)
    own = np.full(n, -1)
    own[reference] = np.arange(len(reference))
    itself = neighbours == own[:, None]
    itself[:, -1] |= ~itself.any(axis=1)  # rows that did not find themselves drop their farthest neighbour
    return distances[~itself].reshape(n, k).mean(axis=1)


def ratio_to_typical(distances: np.ndarray) -> np.ndarray:
    """Distances divided by their median: 1 is a typical photo."""
    distances = np.asarray(distances, dtype=np.float64)
    typical = float(np.median(distances)) if len(distances) else 1.0
    return distances / max(typical, 100 * np.finfo(np.float64).eps)


def outlier_scores(
    features: np.ndarray, look: np.ndarray | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(score, feature view's ratio, look view's ratio or None) per photo; the score averages the two views.

    Args:
        features: reduced features (principal directions first; the leading KNN_DIMENSIONS are searched).
        look: `look_statistics` rows for the same photos (nan rows: the photo's look is unknown, its features
            alone score it), or None.
    """
    by_features = ratio_to_typical(knn_distances(np.asarray(features)[:, :KNN_DIMENSIONS], seed=seed))
    if look is None:
        return by_features, by_features, None
    look = np.asarray(look, dtype=np.float32)
    known = ~np.isnan(look).any(axis=1)
    by_look = np.full(len(look), np.nan)
    if known.sum() > 1:
        by_look[known] = ratio_to_typical(knn_distances(standardised(look[known]), seed=seed))
    score = np.where(np.isnan(by_look), by_features, (by_features + by_look) / 2)
    return score, by_features, by_look


def threshold(scores: np.ndarray) -> float:
    """Datalab's outlier threshold on these scores: the third quartile plus 1.7 interquartile ranges."""
    if not len(scores):
        return float("inf")
    q1, q3 = np.percentile(scores, [25, 75])
    return float(q3 + IQR_SCALE * (q3 - q1))
