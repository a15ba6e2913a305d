"""Suspected label errors in a multi-label run's label lists: a label a photo lacks that the model is confident it
shows (missing), or one it carries that the model is confident it does not (wrong).

Computed as cleanlab 2.9's `multilabel_classification` computes it on the same probabilities, one label at a time
against the rest (tests/results/labels/test_multilabel_issues.py checks it):

- a (photo, label) pair is suspected when confident learning on that label alone counts the photo on the other
  side of its given answer (`find_multilabel_issues_per_class(..., filter_by="confident_learning")`): a side is
  reached when its probability is at least its mean over the photos given that side; both reached, the larger wins;
  and the model's own answer (the larger side, ties to the given one) is not the given one;
- a photo is suspected when any of its labels is; photos are ranked by cleanlab's label quality score
  (`get_label_quality_scores`: each label's self-confidence, p where given and 1 - p where not, sorted from the
  highest and folded by an exponential moving average with alpha 0.8), lowest first.

The probabilities must be out of sample: a run's validation and test photos (its analysis arrays), never its
training photos, which the model has learnt labels and all.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.results.evaluation.multilabel_words import beats_random, weak_labels

NUDGE = 1e-6  # cleanlab's FLOATING_POINT_COMPARISON
BIG_THRESHOLD = 2.0  # a side no photo is given: nothing reaches it (cleanlab's BIG_VALUE)
ALPHA = 0.8  # cleanlab's default exponential moving average
LARGE_SHARE = 0.2  # a share of the photos flagged that label errors alone rarely reach (a few % is usual)
CSV_COLUMNS = ["path", "split", "quality", "labels", "missing", "wrong"]
CSV_SEPARATOR = "|"  # between the labels of one cell, as a multi-label dataset's labels.csv


def suspected_pairs(targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """(N, C) bool: the (photo, label) pairs whose given answer confident learning on that label doubts."""
    given = np.asarray(targets) > 0
    p = np.asarray(probabilities, dtype=np.float64)
    out = np.zeros(given.shape, dtype=bool)
    for j in range(given.shape[1]):
        out[:, j] = _one_label(given[:, j], p[:, j])
    return out


def _one_label(given: np.ndarray, p: np.ndarray) -> np.ndarray:
    sides = np.stack([1 - p, p], axis=1)  # cleanlab's stack_complement: column 0 "not the label", 1 "the label"
    answer = given.astype(np.int64)
    bar = np.array([_mean_or_big(sides[answer == side, side]) for side in (0, 1)])
    reached = sides >= np.clip(bar, 2 * NUDGE, None) - NUDGE
    count = reached.sum(axis=1)
    guess = np.where(count > 1, sides.argmax(axis=1), reached.argmax(axis=1))
    off = (count > 0) & (guess != answer)
    nudged = sides.copy()
    nudged[np.arange(len(answer)), answer] += NUDGE
    return off & (nudged.argmax(axis=1) != answer)


def _mean_or_big(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else BIG_THRESHOLD


def quality_scores(targets: np.ndarray, probabilities: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Each photo's label quality (0-1, lower: more likely a wrong list), cleanlab's default."""
    given = np.asarray(targets) > 0
    p = np.asarray(probabilities, dtype=np.float64)
    confidence = np.where(given, p, 1 - p)
    ordered = np.fliplr(np.sort(confidence, axis=1))
    score = ordered[:, 0].copy()
    for column in ordered[:, 1:].T:
        score = alpha * column + (1 - alpha) * score
    return score


@dataclass
class LabelListIssues:
    """The suspected photos of a run's validation and test splits, lowest quality first."""

    photos: int  # photos checked
    table: pd.DataFrame  # path, split, quality, labels, missing, wrong (one row per suspected photo)

    @property
    def suspected(self) -> int:
        return len(self.table)

    @property
    def share(self) -> float:
        """The share of the photos checked that are flagged."""
        return self.suspected / self.photos if self.photos else 0.0

    def csv(self, marked: dict[str, str] | None = None) -> str:
        """Every suspected photo, lowest quality first: path, split, quality, labels, missing, wrong (a cell's labels
        joined by "|", empty for none), and with `marked` ({path: the mark in words}) a last column, "marked"."""
        table = self.table.assign(**{k: self.table[k].map(CSV_SEPARATOR.join) for k in ("labels", "missing", "wrong")})
        columns = CSV_COLUMNS
        if marked is not None:
            table, columns = table.assign(marked=table["path"].map(lambda p: marked.get(p, ""))), [*columns, "marked"]
        out = io.StringIO()
        table[columns].to_csv(out, index=False, float_format="%.4f", lineterminator="\n")
        return out.getvalue()


def weak_model_words(issues: LabelListIssues, summary: dict[str, Any] | None) -> str | None:
    """When a large share of the photos is flagged by a model near chance, the sentence that says the list is then
    mostly the model's own mistakes, with the figures that decide it: the share flagged, the run's test mAP and its
    interval against a random scorer's, and how many labels are no better than a random scorer on their own (walk
    54: 92 of 120 flagged on a set whose every label was right). None otherwise, or without the run's evaluation.

    Weak: the mAP's 95% interval reaches down to the random scorer's mAP, or half the labels or more are no better
    than a random scorer on their own (core.results.evaluation.multilabel_words)."""
    if summary is None or summary.get("map") is None or issues.share < LARGE_SHARE:
        return None
    found, baseline = summary["map"], summary.get("random_map")
    low, high = summary.get("map_interval") or (None, None)
    overall = not beats_random(low if low is not None else found, baseline)
    weak, total = weak_labels(summary), len(summary["per_label"])
    if not overall and 2 * len(weak) < total:
        return None
    interval = f" (95% interval {low:.2f}-{high:.2f})" if low is not None and high is not None else ""
    if overall:  # the interval reaches down to the random scorer's figure (or, without one, the figure does)
        why = ": no better than chance on these test photos"
    else:
        why = f", but {len(weak)} of its {total} labels are no better than a random scorer on their own"
    return (
        f"**{issues.share:.0%} of the photos are flagged, by a weak model**: its test mAP is {found:.2f}{interval} "
        f"against {baseline:.2f} for a random scorer{why}. A list this long from a model this weak is mostly the "
        "model's own mistakes, not label errors (unless a large share of the labels really is wrong). A stronger "
        "model (ImageNet weights, more photos) gives a list worth working through."
    )


def find(
    targets: np.ndarray, probabilities: np.ndarray, classes: list[str], paths: list[str], splits: list[str]
) -> LabelListIssues:
    """The photos with a suspected label, each with the labels suspected missing and wrong, lowest quality first."""
    given = np.asarray(targets) > 0
    pairs = suspected_pairs(given, probabilities)
    quality = quality_scores(given, probabilities)
    rows = []
    for i in np.flatnonzero(pairs.any(axis=1)):
        rows.append(
            {
                "path": paths[i],
                "split": splits[i],
                "quality": float(quality[i]),
                "labels": [classes[j] for j in np.flatnonzero(given[i])],
                "missing": [classes[j] for j in np.flatnonzero(pairs[i] & ~given[i])],
                "wrong": [classes[j] for j in np.flatnonzero(pairs[i] & given[i])],
            }
        )
    columns = ["path", "split", "quality", "labels", "missing", "wrong"]
    table = pd.DataFrame(rows, columns=columns).sort_values(["quality", "path"], kind="mergesort")
    return LabelListIssues(len(given), table.reset_index(drop=True))


def of_analysis(analysis) -> LabelListIssues:
    """The suspected photos among a multi-label run's validation and test photos (core.runs.analysis arrays)."""
    val, test = analysis.val, analysis.test
    return find(
        np.vstack([val.targets, test.targets]),
        np.vstack([val.probabilities, test.probabilities]),
        list(analysis.classes),
        [*val.paths, *test.paths],
        ["val"] * len(val.paths) + ["test"] * len(test.paths),
    )
