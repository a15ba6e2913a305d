"""Suspected label errors: photos whose folder (given label) the evidence disagrees with.

1. Out-of-sample probabilities for every image: the validation and test splits from the run's own
   logits (the model never trained on them), the training split by stratified K-fold
   cross-validation of a logistic regression on the stored pooled features (each image scored by a
   model that did not see it: seconds, because the backbone's features are already computed).
2. The confident-learning rule (Northcutt et al., 2021, "Confident Learning"): class j's threshold
   t_j is the mean probability of j over the images labelled j; an image's *confident label* is the
   most probable class among those it reaches the threshold of; an image is flagged when its
   confident label is not its given label (and the model's top guess is not the given label either).
3. Ranked by self-confidence, the probability of the given label: lowest (most suspicious) first.

Written in numpy rather than depending on cleanlab: the rule is a few lines and this keeps the
ranking inspectable. Flagged photos are suspects for a person to review, not verdicts.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.fileio import read_json, write_json_atomic
from core.runs import LABEL_ISSUES_FILE

FOLDS = 5
LABEL_ISSUES_VERSION = 1


@dataclass(frozen=True)
class LabelIssue:
    """One suspect: the photo, its given (folder) label, the label the evidence suggests, and how sure."""

    path: str
    given: str
    suggested: str
    score: float  # self-confidence: the out-of-sample probability of the given label (low = suspicious)
    suggested_probability: float
    split: str  # "train" | "val" | "test" ("all" for a dataset reviewed without a run)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confident_thresholds(probabilities: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """t_j: the mean probability of class j over the images labelled j (nan for a class with none)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    sums = np.bincount(labels, weights=probabilities[np.arange(len(labels)), labels], minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def find_label_issues(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The confident-learning rule on out-of-sample probabilities.

    Returns:
        (flagged mask, confident label per image; -1 where no class reaches its threshold).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probabilities.shape[1]
    thresholds = confident_thresholds(probabilities, labels, num_classes)
    # A class no image is labelled with can never be confidently "meant" (its threshold is unknown).
    reached = probabilities >= np.where(np.isnan(thresholds), np.inf, thresholds)[None, :]
    masked = np.where(reached, probabilities, -np.inf)
    confident = np.where(reached.any(axis=1), masked.argmax(axis=1), -1)
    flagged = (confident >= 0) & (confident != labels) & (probabilities.argmax(axis=1) != labels)
    return flagged, confident


def rank(
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    paths: list[str],
    splits: list[str],
) -> list[LabelIssue]:
    """The flagged images as LabelIssues, lowest self-confidence first."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    flagged, confident = find_label_issues(probabilities, labels)
    rows = np.arange(len(labels))
    score = probabilities[rows, labels]
    order = [i for i in np.argsort(score, kind="stable") if flagged[i]]
    return [
        LabelIssue(
            path=paths[i],
            given=classes[labels[i]],
            suggested=classes[confident[i]],
            score=float(score[i]),
            suggested_probability=float(probabilities[i, confident[i]]),
            split=splits[i],
        )
        for i in order
    ]


def cross_val_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = FOLDS, seed: int = 0
) -> np.ndarray:
    """Out-of-sample class probabilities of each row by stratified K-fold logistic regression.

    Features are standardised inside each fold (fitted on its training rows only). A class with
    fewer images than `folds` lowers the number of folds to its count (at least 2); images of a
    class with a single image get the probabilities of a model that never saw that class.
    """
    from sklearn.model_selection import StratifiedKFold

    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(y), num_classes), dtype=np.float64)
    counts = np.bincount(y, minlength=num_classes)
    smallest = counts[counts > 0].min() if len(y) else 0
    k = int(min(folds, max(2, smallest)))
    if len(np.unique(y)) < 2 or len(y) < 2 * k:
        out[np.arange(len(y)), y] = 1.0  # nothing to learn from: no evidence against any label
        return out
    # Singleton classes would break stratification: they go to training folds only, scored below.
    splittable = counts[y] >= k
    for train, held in StratifiedKFold(k, shuffle=True, random_state=seed).split(x[splittable], y[splittable]):
        train_rows = np.flatnonzero(splittable)[train]
        held_rows = np.flatnonzero(splittable)[held]
        train_rows = np.concatenate([train_rows, np.flatnonzero(~splittable)])
        out[held_rows] = _fit_predict(x[train_rows], y[train_rows], x[held_rows], num_classes, seed)
    if (~splittable).any():
        for row in np.flatnonzero(~splittable):
            others = np.flatnonzero(np.arange(len(y)) != row)
            out[row] = _fit_predict(x[others], y[others], x[row : row + 1], num_classes, seed)[0]
    return out


def _fit_predict(x_train, y_train, x_held, num_classes: int, seed: int) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:
        out = np.zeros((len(x_held), num_classes))
        out[:, y_train[0]] = 1.0
        return out
    # C=0.1: 2,048 features and a few hundred photos per class; stronger regularisation than the
    # default keeps the probabilities honest (the CL thresholds are means of them).
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300, random_state=seed))
    with warnings.catch_warnings():
        # On a few thousand photos lbfgs may stop at 300 iterations short of its tolerance (bounded on
        # purpose: seconds per fold); sklearn then warns once per fold, which read as an error in the CLI.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    out = np.zeros((len(x_held), num_classes))
    out[:, model.classes_] = model.predict_proba(x_held)
    return out


@dataclass
class LabelReview:
    """Every image's out-of-sample evidence and the ranked suspects, as stored with a run."""

    issues: list[LabelIssue]
    images: int  # images scored (all splits)
    by_split: dict[str, int]  # images scored per split
    train_source: str  # how the training split was scored, in words
    version: int = LABEL_ISSUES_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "issues": [issue.to_dict() for issue in self.issues],
            "images": self.images,
            "by_split": self.by_split,
            "train_source": self.train_source,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelReview:
        return cls(
            issues=[LabelIssue(**row) for row in data.get("issues", [])],
            images=int(data.get("images", 0)),
            by_split=dict(data.get("by_split", {})),
            train_source=str(data.get("train_source", "")),
            version=int(data.get("version", 0)),
        )


def review(
    parts: dict[str, tuple[np.ndarray, np.ndarray, list[str]]],
    classes: list[str],
    train_source: str,
) -> LabelReview:
    """Rank the suspects over every split: `parts` maps a split ("train", "val", "test", or "all" for a
    dataset without a run) to (probabilities, labels, paths)."""
    names = [name for name in parts if len(parts[name][1])]
    probabilities = np.concatenate([parts[n][0] for n in names]) if names else np.zeros((0, len(classes)))
    labels = np.concatenate([parts[n][1] for n in names]) if names else np.zeros(0, dtype=np.int64)
    paths = [p for n in names for p in parts[n][2]]
    splits = [n for n in names for _ in parts[n][2]]
    issues = rank(probabilities, labels, classes, paths, splits) if len(labels) else []
    return LabelReview(issues, len(labels), {n: len(parts[n][1]) for n in names}, train_source)


def save(result: LabelReview, run_dir: str | os.PathLike) -> None:
    write_json_atomic(Path(run_dir) / LABEL_ISSUES_FILE, result.to_dict())


def load(run_dir: str | os.PathLike) -> LabelReview | None:
    data = read_json(Path(run_dir) / LABEL_ISSUES_FILE)
    if not data or data.get("version") != LABEL_ISSUES_VERSION:
        return None
    return LabelReview.from_dict(data)
