"""A multi-label evaluation's views, cheap on demand: one label's precision-recall curve, the photos behind its 2x2
counts at any threshold and its top losses; the multi-label confusion (for the photos with each label, which labels the
model adds and which it misses) and the photos behind each count. Plain DataFrames: the Evaluate page draws them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.results.evaluation.multilabel import CELLS, NO_LABEL, MultilabelEvaluation, cells
from core.results.evaluation.multilabel_bootstrap import ratio

_EPS = 1e-7


def curve(evaluation: MultilabelEvaluation, label: str | int) -> pd.DataFrame:
    """The label's precision-recall curve: each distinct test score as a threshold, highest first, with the
    photos found, added and missed there, then its precision and recall."""
    j = evaluation.label_index(label)
    scores, truth = evaluation.probabilities[:, j].astype(np.float64), evaluation.truth[:, j]
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1] if len(ranked) else np.zeros(0, int)
    found = np.cumsum(hits)[last] if len(ranked) else np.zeros(0)
    answers = last + 1
    positives = int(truth.sum())
    return pd.DataFrame(
        {
            "threshold": ranked[last],
            "found": found.astype(int),
            "added": (answers - found).astype(int),
            "missed": (positives - found).astype(int),
            "precision": ratio(found.astype(float), answers.astype(float)),
            "recall": found / positives if positives else np.zeros(len(last)),
        }
    )


def cell(evaluation: MultilabelEvaluation, label: str | int, threshold: float, which: str) -> pd.DataFrame:
    """The photos behind one cell of a label's 2x2 counts at `threshold` (`which` one of CELLS), by the score
    that put them there (highest first for found and added, lowest first for missed). Each photo's `predicted` reads
    `label` at `threshold` (the cell's own) and every other label at its tuned threshold."""
    if which not in CELLS:
        raise ValueError(f"which must be one of {CELLS}. Received: which={which!r}")
    j = evaluation.label_index(label)
    mask = cells(evaluation.truth[:, j], evaluation.probabilities[:, j] >= threshold)[CELLS.index(which)]
    frame = _rows(evaluation, np.flatnonzero(mask), j, threshold)
    return frame.sort_values("score", ascending=which == "missed").reset_index(drop=True)


def top_losses(
    evaluation: MultilabelEvaluation, label: str | int, k: int = 16, threshold: float | None = None
) -> pd.DataFrame:
    """The `k` test photos whose score for `label` was furthest from the truth (binary cross-entropy); `predicted`
    reads `label` at `threshold` (default: its tuned one)."""
    j = evaluation.label_index(label)
    frame = _rows(evaluation, np.arange(len(evaluation.paths)), j, threshold)
    return frame.sort_values("loss", ascending=False).head(k).reset_index(drop=True)


def _rows(evaluation: MultilabelEvaluation, index: np.ndarray, j: int, threshold: float | None = None) -> pd.DataFrame:
    """The photos at `index` with their score for label j; `predicted` at the tuned thresholds, label j's at
    `threshold` when one is given."""
    cut = evaluation.thresholds.copy()
    if threshold is not None:
        cut[j] = threshold
    predicted = evaluation.probabilities[index] >= cut
    scores = evaluation.probabilities[index, j].astype(np.float64)
    has = evaluation.truth[index, j]
    loss = -np.log(np.clip(np.where(has, scores, 1 - scores), _EPS, 1.0))
    return pd.DataFrame(
        {
            "index": index,
            "path": [evaluation.paths[i] for i in index],
            "score": scores,
            "has_label": has,
            "labels": [", ".join(x) for x in evaluation.labels_of(evaluation.truth[index])],
            "predicted": [", ".join(x) for x in evaluation.labels_of(predicted)],
            "loss": loss,
        }
    )


def confusion(evaluation: MultilabelEvaluation) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For the photos with each true label (rows; the photos with none last): how many times the model added
    each label they do not have (`added`), and missed each label they have (`missed`; its diagonal is the row
    label itself missed). Columns are the labels."""
    truth, predicted = evaluation.truth.astype(np.int64), evaluation.predicted
    added = truth.T @ (predicted & ~evaluation.truth).astype(np.int64)
    missed = truth.T @ (evaluation.truth & ~predicted).astype(np.int64)
    none = ~evaluation.truth.any(axis=1)
    rows = [*evaluation.classes, NO_LABEL]
    added = np.vstack([added, predicted[none].sum(axis=0)])
    missed = np.vstack([missed, np.zeros(len(evaluation.classes), dtype=np.int64)])
    return (
        pd.DataFrame(added, index=rows, columns=evaluation.classes),
        pd.DataFrame(missed, index=rows, columns=evaluation.classes),
    )


def confused_photos(evaluation: MultilabelEvaluation, true_label: str, other: str, kind: str) -> pd.DataFrame:
    """The photos behind one confusion count: with `true_label` (or none: NO_LABEL), where the model added
    `other` (kind "added") or missed it (kind "missed")."""
    if kind not in ("added", "missed"):
        raise ValueError(f"kind must be 'added' or 'missed'. Received: kind={kind!r}")
    j = evaluation.label_index(other)
    rows = (
        ~evaluation.truth.any(axis=1)
        if true_label == NO_LABEL
        else evaluation.truth[:, evaluation.label_index(true_label)]
    )
    has, said = evaluation.truth[:, j], evaluation.predicted[:, j]
    mask = rows & (~has & said if kind == "added" else has & ~said)
    frame = _rows(evaluation, np.flatnonzero(mask), j)
    return frame.sort_values("loss", ascending=False).reset_index(drop=True)
