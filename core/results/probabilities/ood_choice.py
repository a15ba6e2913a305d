"""Which "none of these" check a run uses, chosen on its own data: every method of `ood` fitted,
measured, and one picked on a set of foreign images that is not the one reported.

Two sets of foreign images of each kind (`foreign`: noise, flat images, drawings, other photos) are
made with different seeds. The *selection* set picks the method: the largest share caught, each kind weighing the
same, at the threshold in use (validation's 95th percentile); ties go to the larger AUROC, then the simpler method.
The *report* set, which chose nothing, gives the figures shown: per kind, the share caught at that threshold and at
5 % false alarms on the test photos (the threshold at the test split's own 95th percentile, the usual way to compare
detectors), and the AUROC of test photos against all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from core.results.probabilities.image_stats import StatsCheck
from core.results.probabilities.knn_distance import KNNDistance
from core.results.probabilities.ood import METHODS, Mahalanobis, OODDetector, Projection, threshold_for

Pair = tuple[np.ndarray, np.ndarray]  # (logits, pooled features)


@dataclass
class PictureInputs:
    """The image statistics (`image_stats`) of the photos and foreign images `fit` is given, and the
    report set of foreign images: {kind: (logits, features, statistics)}."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    foreign: dict[str, np.ndarray]
    report: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


def fit(
    train: tuple[np.ndarray, np.ndarray],
    val: Pair,
    test: Pair,
    foreign: dict[str, Pair],
    projection: Projection,
    pictures: PictureInputs | None = None,
) -> OODDetector:
    """Fit every detector, scale and threshold them on validation, pick one on the selection set.

    Args:
        train: (pooled features, labels) of training photos: Mahalanobis's means and covariance, kNN's bank.
        val: (logits, pooled features) of the validation split: the scales and thresholds.
        test: (logits, pooled features) of the test split: the false alarms.
        foreign: {kind: (logits, pooled features)}: the selection set of foreign images.
        projection: the PCA of the pooled features (fitted on training photos).
        pictures: the image statistics of all of these and the report set; without them, the feature scores alone,
            selected and reported on `foreign`.
    """
    detector = OODDetector(
        METHODS[0],
        {},
        Mahalanobis.fit(train[0], train[1], projection),
        knn=KNNDistance.fit(train[0]),
        stats=StatsCheck.fit(pictures.train) if pictures is not None else None,
    )

    def stats_of(name: str, kind: str | None = None) -> np.ndarray | None:
        if pictures is None:
            return None
        return getattr(pictures, name) if kind is None else pictures.foreign[kind]

    raw_val = detector.base_scores(*val, stats_of("val"))
    detector.scales = {}
    for method, values in raw_val.items():
        median, high = float(np.median(values)), threshold_for(values)
        detector.scales[method] = [median, max(high - median, 1e-9)]
    val_scores = detector.scores(*val, stats_of("val"))
    detector.thresholds = {m: threshold_for(s) for m, s in val_scores.items()}
    test_scores = detector.scores(*test, stats_of("test"))
    selection = {kind: detector.scores(*pair, stats_of("foreign", kind)) for kind, pair in foreign.items()}
    if pictures is not None and pictures.report:
        report = {kind: detector.scores(*three) for kind, three in pictures.report.items()}
    else:
        report = selection
    evidence = {m: _evidence(m, detector.thresholds[m], val_scores, test_scores, selection, report) for m in val_scores}
    order = [m for m in METHODS if m in evidence]
    detector.method = max(
        order,
        key=lambda m: (
            round(evidence[m]["selection_caught"] or 0.0, 3),
            round(evidence[m]["selection_auroc"] or 0.0, 3),
            -order.index(m),  # equal evidence: the simpler, cheaper method
        ),
    )
    detector.evidence = evidence
    return detector


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float | None:
    if not len(inside) or not len(outside):
        return None
    truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(truth, np.r_[inside, outside]))


def _evidence(
    method: str,
    threshold: float,
    val: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    selection: dict[str, dict[str, np.ndarray]],
    report: dict[str, dict[str, np.ndarray]],
) -> dict[str, Any]:
    at_test = threshold_for(test[method])  # 5 % false alarms on the test photos
    rates = {kind: float(np.mean(s[method] > threshold)) for kind, s in report.items()}
    all_report = np.concatenate([s[method] for s in report.values()]) if report else np.array([])
    all_selection = np.concatenate([s[method] for s in selection.values()]) if selection else np.array([])
    chosen_on = [float(np.mean(s[method] > threshold)) for s in selection.values()]
    return {
        "threshold": threshold,
        "val_flagged": float(np.mean(val[method] > threshold)),
        "test_flagged": float(np.mean(test[method] > threshold)),
        "foreign_flagged": rates,
        "foreign_flagged_all": float(np.mean(all_report > threshold)) if len(all_report) else None,
        "auroc_test_vs_foreign": _auroc(test[method], all_report),
        "caught_at_5_percent_test_alarms": {kind: float(np.mean(s[method] > at_test)) for kind, s in report.items()},
        "selection_caught": float(np.mean(chosen_on)) if chosen_on else None,  # each kind weighing the same
        "selection_auroc": _auroc(test[method], all_selection),
    }
