"""A multi-label run's feature map (core.results.evaluation.embedding's points) as rows to draw: each validation and
test photo's place, its label list, the model's (each label's sigmoid at its tuned threshold, as Evaluate answers), and
for one picked label whether the photo has it and whether the model answered it; and one photo's every label score.

The probabilities are the analysis arrays' sigmoids (a multi-label run keeps no temperature), the thresholds the
run's tuned ones (core.results.probabilities.label_thresholds, UNTUNED where a label has none).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import NotFound
from core.results.evaluation.embedding import MapPoints
from core.results.evaluation.multilabel import CELLS, cells
from core.results.probabilities.label_thresholds import UNTUNED
from core.runs.analysis import RunAnalysis


def cutoffs(classes: list[str], thresholds: dict[str, float]) -> np.ndarray:
    """Each label's threshold in `classes`' order (UNTUNED where the run keeps none)."""
    return np.array([thresholds.get(name, UNTUNED) for name in classes], dtype=np.float64)


def map_frame(
    analysis: RunAnalysis, points: MapPoints, thresholds: dict[str, float], label: str | None = None
) -> pd.DataFrame:
    """One row per map point of a multi-label run.

    Columns: key ("test:17"), split, row, x, y, path (relative to the dataset folder), labels and predicted (the
    given and answered label lists, ", "-joined, "" for none), n_labels, n_predicted, exact (every label right);
    with `label`, also has (the photo has it), score (its probability), answered (at or above its threshold) and
    cell (one of CELLS: found, added, missed, left out).

    Raises:
        ValueError: the run is not multi-label. NotFound: `label` is not one of its labels.
    """
    classes = list(analysis.classes)
    if analysis.test.targets is None:
        raise ValueError("map_frame reads a multi-label run's label rows; this run has one label a photo")
    if label is not None and label not in classes:
        raise NotFound(f"unknown label {label!r}; the run's labels: {', '.join(classes)}")
    cut = cutoffs(classes, thresholds)
    split = np.asarray(points.split)
    row = np.asarray(points.row, dtype=np.int64)
    n = len(row)
    given = np.zeros((n, len(classes)), dtype=bool)
    scores = np.zeros((n, len(classes)), dtype=np.float64)
    paths: list[str] = [""] * n
    for name in sorted(set(points.split)):
        part, mask = analysis.split(name), split == name
        given[mask] = part.targets[row[mask]] > 0
        scores[mask] = part.probabilities[row[mask]]
        for i in np.flatnonzero(mask):
            paths[i] = part.paths[row[i]]
    answered = scores >= cut
    frame = pd.DataFrame(
        {
            "key": [f"{s}:{int(r)}" for s, r in zip(split, row, strict=True)],
            "split": split,
            "row": row,
            "x": np.asarray(points.xy[:, 0], dtype=float) if n else np.zeros(0),
            "y": np.asarray(points.xy[:, 1], dtype=float) if n else np.zeros(0),
            "path": paths,
            "labels": _names(given, classes),
            "predicted": _names(answered, classes),
            "n_labels": given.sum(axis=1),
            "n_predicted": answered.sum(axis=1),
            "exact": (given == answered).all(axis=1),
        }
    )
    if label is not None:
        j = classes.index(label)
        frame["has"] = given[:, j]
        frame["score"] = scores[:, j]
        frame["answered"] = answered[:, j]
        masks = cells(given[:, j], answered[:, j])
        frame["cell"] = np.select(masks, list(CELLS), default=CELLS[-1])
    return frame


def photo_scores(analysis: RunAnalysis, key: str, thresholds: dict[str, float]) -> pd.DataFrame:
    """Every label's score for the photo with map key `key` ("test:17"), highest first: label, score, threshold,
    has (given), answered (score at or above the threshold), right (the two agree). Raises NotFound for a bad key."""
    name, _, row = key.partition(":")
    if name not in ("val", "test") or not row.isdigit() or int(row) >= len(analysis.split(name).paths):
        raise NotFound(f"no image {key!r} in this run's analysis")
    part, i = analysis.split(name), int(row)
    if part.targets is None:
        raise ValueError("photo_scores reads a multi-label run's label rows; this run has one label a photo")
    classes = list(analysis.classes)
    score = part.probabilities[i].astype(np.float64)
    cut = cutoffs(classes, thresholds)
    has = part.targets[i] > 0
    frame = pd.DataFrame({"label": classes, "score": score, "threshold": cut, "has": has, "answered": score >= cut})
    frame["right"] = frame["has"] == frame["answered"]
    return frame.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)


def _names(rows: np.ndarray, classes: list[str]) -> list[str]:
    return [", ".join(classes[j] for j in np.flatnonzero(r)) for r in rows]
