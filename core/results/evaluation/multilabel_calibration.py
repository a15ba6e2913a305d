"""Calibration per label of a multi-label run: do its scores come true as often as they say?

For one label, the test photos are put in equal-width bins of score (scikit-learn's `calibration_curve`, strategy
"uniform": the same bins and edges); each bin's mean score beside the share of its photos that have the label. The
expected calibration error (ECE) is the photos-weighted mean gap between the two. On a few dozen test photos a bin
holds a handful of them, so the words give the counts, not a verdict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BINS = 10


def reliability(truth: np.ndarray, scores: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """The non-empty bins, lowest first: their edges, photos, mean score and observed share with the label."""
    truth = np.asarray(truth) > 0
    scores = np.asarray(scores, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], scores)  # scikit-learn's binning
    photos = np.bincount(ids, minlength=bins)
    score_sums = np.bincount(ids, weights=scores, minlength=bins)
    true_sums = np.bincount(ids, weights=truth.astype(np.float64), minlength=bins)
    kept = photos > 0
    return pd.DataFrame(
        {
            "low": edges[:-1][kept],
            "high": edges[1:][kept],
            "photos": photos[kept].astype(int),
            "with_label": true_sums[kept].astype(int),
            "mean_score": score_sums[kept] / photos[kept],
            "observed": true_sums[kept] / photos[kept],
        }
    )


def expected_calibration_error(truth: np.ndarray, scores: np.ndarray, bins: int = BINS) -> float | None:
    """The photos-weighted mean |mean score - observed share| over the bins (None without a photo)."""
    table = reliability(truth, scores, bins)
    total = int(table["photos"].sum())
    if not total:
        return None
    return float(np.sum(table["photos"] * np.abs(table["mean_score"] - table["observed"])) / total)


def per_label(targets: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each label's ECE (NaN without a photo)."""
    targets, probabilities = np.asarray(targets), np.asarray(probabilities)
    out = [expected_calibration_error(targets[:, j], probabilities[:, j], bins) for j in range(targets.shape[1])]
    return np.array([np.nan if v is None else v for v in out])


def words(label: str, table: pd.DataFrame) -> str:
    """The fullest bin in words: 'scores near 0.85 ('road'): 6 of 9 photos have it'."""
    if table.empty:
        return f"No test photo to check '{label}''s scores on."
    row = table.sort_values(["photos", "low"], ascending=[False, True]).iloc[0]
    return (
        f"Scores between {row.low:.1f} and {row.high:.1f} for '{label}' (mean {row.mean_score:.2f}): {row.with_label} "
        f"of {row.photos} photo(s) have it ({row.observed:.0%}). Each point is a bin of photos; on the diagonal, a "
        "score comes true as often as it says. Few photos a bin: read the counts, not the line."
    )
