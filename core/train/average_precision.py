"""Average precision per label and its mean (mAP), as scikit-learn computes them, in numpy alone.

The measure a multi-label run is judged by while it trains (core.train.multilabel.ValidationMAP) and once it has
ended (core.results.after_fit); no Keras, so anything may import it.
"""

from __future__ import annotations

import numpy as np


def average_precisions(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of each label (columns), as scikit-learn's `average_precision_score`; NaN without a positive.

    AP = sum over the distinct score thresholds, highest first, of (recall gained) x (precision there): tied scores
    are one threshold, as scikit-learn's step-wise precision-recall curve has them.
    """
    targets = np.asarray(targets) > 0
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(targets.shape[1], np.nan)
    for j in range(targets.shape[1]):
        truth = targets[:, j]
        positives = int(truth.sum())
        if positives == 0:
            continue
        order = np.argsort(-scores[:, j], kind="mergesort")
        ranked, hits = scores[order, j], truth[order]
        last_of_tie = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]
        true_positives = np.cumsum(hits)[last_of_tie]
        precision = true_positives / (last_of_tie + 1)
        recall = true_positives / positives
        out[j] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return out


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> float | None:
    """Macro mean of `average_precisions` over the labels with a positive; None when no label has one."""
    per_label = average_precisions(targets, scores)
    measured = per_label[~np.isnan(per_label)]
    return float(measured.mean()) if len(measured) else None
