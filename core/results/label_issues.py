"""Suspected label errors: photos whose folder (given label) the evidence disagrees with.

1. Out-of-sample probabilities for every image: the validation and test splits from the run's own
   logits (calibrated with its temperature; the model never trained on them), the training split by
   stratified K-fold cross-validation of a logistic regression on the stored pooled features (each
   image scored by a model that did not see it). The features are standardised and reduced to at most
   256 principal directions, and the regularisation C is chosen by the log loss of an inner
   cross-validation: an unregularised fit separates 2,048 weak features in every fold and its
   probabilities saturate at 0% and 100%, which ranks nothing.
2. The confident-learning rule (Northcutt et al., 2021, "Confident Learning"): class j's threshold
   t_j is the mean probability of j over the images labelled j; an image's *confident label* is the
   most probable class among those it reaches the threshold of; an image is flagged when its
   confident label is not its given label (and the model's top guess is not the given label either).
3. Ranked by the log odds of the suggested label against the given one (a score that does not
   saturate as a probability does), and the list cut at confident learning's estimate of how many
   labels are wrong (the off-diagonal of the calibrated confident joint).
4. How far the ranking can be trusted, measured on the run's own training photos: a few of their
   labels are flipped on purpose and the ranking is made again; how many of the planted flips come
   first, against a random order, is the figure the page shows.

Written in numpy and scikit-learn rather than depending on cleanlab: the rules are a few lines and
this keeps the ranking inspectable. Flagged photos are suspects for a person to review, not verdicts.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.fileio import read_json, write_json_atomic
from core.results.out_of_sample import OutOfSample, balanced_sample, dimensions, out_of_sample, reduce
from core.runs.record import LABEL_ISSUES_FILE

LABEL_ISSUES_VERSION = 2  # 2: regularisation chosen by inner CV, log-odds ranking, the cap, the self-test
ROWS_AT_ONCE = 8192  # rows of probabilities the rule and the ranking work through at a time
SELF_TEST_ROWS = 20_000  # training photos the self-test plants flips among (a class-balanced sample of more)
PLANTED_SHARE = 0.05  # of the training photos flipped on purpose to measure the ranking


@dataclass(frozen=True)
class LabelIssue:
    """One suspect: the photo, its given (folder) label, the label the evidence suggests, and how sure."""

    path: str
    given: str
    suggested: str
    score: float  # self-confidence: the out-of-sample probability of the given label (low = suspicious)
    suggested_probability: float
    split: str  # "train" | "val" | "test" ("all" for a dataset reviewed without a run)
    odds: float = 1.0  # how many times likelier the suggested label is than the given one (what ranks it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Stacked:
    """The rows of several (n_i, classes) arrays read as one, never joined: the splits' probabilities of 300k
    photos x 1,000 classes are 1.2 GB, and a joined copy would be as much again. Rows are read by slices (a
    chunk at a time) and single cells by (rows, columns) index arrays."""

    def __init__(self, arrays: list[np.ndarray], width: int):
        self.arrays = [np.asarray(a) for a in arrays]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        self.shape = (int(self.starts[-1]), width)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, _ = key.indices(len(self))
            parts = [
                a[max(start - s, 0) : max(min(stop - s, len(a)), 0)]
                for a, s in zip(self.arrays, self.starts[:-1], strict=True)
            ]
            parts = [part for part in parts if len(part)]
            return np.concatenate(parts) if parts else np.zeros((0, self.shape[1]), dtype=np.float32)
        rows, columns = key
        rows, columns = np.asarray(rows), np.asarray(columns)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty(np.broadcast(rows, columns).shape, dtype=np.float64)
        for i, array in enumerate(self.arrays):
            mine = which == i
            if mine.any():
                out[mine] = array[rows[mine] - self.starts[i], np.broadcast_to(columns, rows.shape)[mine]]
        return out if out.shape else float(out)


def _rows(probabilities):
    return probabilities if isinstance(probabilities, Stacked) else np.asarray(probabilities)


def confident_thresholds(probabilities: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """t_j: the mean probability of class j over the images labelled j (nan for a class with none)."""
    labels = np.asarray(labels, dtype=np.int64)
    given = np.asarray(_rows(probabilities)[np.arange(len(labels)), labels], dtype=np.float64)
    sums = np.bincount(labels, weights=given, minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _chunks(n: int):
    """Row ranges of ROWS_AT_ONCE: an (n, classes) temporary never exists whole (800 MB at 100k x 1,000 in float64)."""
    for start in range(0, n, ROWS_AT_ONCE):
        yield slice(start, min(n, start + ROWS_AT_ONCE))


def find_label_issues(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The confident-learning rule on out-of-sample probabilities.

    Returns:
        (flagged mask, confident label per image; -1 where no class reaches its threshold).
    """
    probabilities = _rows(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probabilities.shape[1]
    thresholds = confident_thresholds(probabilities, labels, num_classes)
    # A class no image is labelled with can never be confidently "meant" (its threshold is unknown).
    bar = np.where(np.isnan(thresholds), np.inf, thresholds)[None, :]
    confident = np.empty(len(labels), dtype=np.int64)
    top = np.empty(len(labels), dtype=np.int64)
    for rows in _chunks(len(labels)):
        p = probabilities[rows].astype(np.float64)
        reached = p >= bar
        masked = np.where(reached, p, -np.inf)
        confident[rows] = np.where(reached.any(axis=1), masked.argmax(axis=1), -1)
        top[rows] = p.argmax(axis=1)
    flagged = (confident >= 0) & (confident != labels) & (top != labels)
    return flagged, confident


def log_odds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p(most probable other class) - log p(given class): > 0 when another class is likelier."""
    probabilities = _rows(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    out = np.empty(len(labels), dtype=np.float64)
    for rows in _chunks(len(labels)):
        logp = np.log(np.clip(probabilities[rows].astype(np.float64), 1e-12, 1.0))
        index = np.arange(len(logp))
        given = logp[index, labels[rows]].copy()
        logp[index, labels[rows]] = -np.inf
        out[rows] = logp.max(axis=1) - given
    return out


def estimate_errors(probabilities: np.ndarray, labels: np.ndarray) -> int:
    """Confident learning's estimate of how many labels are wrong: the off-diagonal of the confident joint,
    calibrated so each given label's row sums to its count (Northcutt et al. 2021, eq. 2-3)."""
    probabilities = _rows(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    k = probabilities.shape[1]
    _, confident = find_label_issues(probabilities, labels)
    joint = np.zeros((k, k))
    np.add.at(joint, (labels[confident >= 0], confident[confident >= 0]), 1.0)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    calibrated = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1.0) * counts[:, None]
    return round(float(calibrated.sum() - np.trace(calibrated)))


def rank(
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    paths: list[str],
    splits: list[str],
) -> list[LabelIssue]:
    """The flagged images as LabelIssues, the suggested label's log odds against the given one highest first."""
    probabilities = _rows(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    flagged, confident = find_label_issues(probabilities, labels)
    rows = np.arange(len(labels))
    score = probabilities[rows, labels]
    odds = log_odds(probabilities, labels)
    order = [i for i in np.argsort(-odds, kind="stable") if flagged[i]]
    return [
        LabelIssue(
            path=paths[i],
            given=classes[labels[i]],
            suggested=classes[confident[i]],
            score=float(score[i]),
            suggested_probability=float(probabilities[i, confident[i]]),
            split=splits[i],
            odds=float(np.exp(min(odds[i], 50.0))),
        )
        for i in order
    ]


def self_test(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    seed: int = 0,
    C: float | None = None,
    reduced: bool = False,
) -> dict[str, Any]:
    """How well the ranking finds wrong labels on these very photos: flip PLANTED_SHARE of the labels on
    purpose, rank again, count the planted flips among the first as many suspects as were planted. Beyond
    SELF_TEST_ROWS photos, on a class-balanced sample of them.

    Returns {"planted", "found", "chance" (what a random order would find), "lift" (found / chance)}.
    """
    y = np.asarray(labels, dtype=np.int64)
    if len(y) > SELF_TEST_ROWS:  # a class-balanced sample measures the ranking as well, at a bounded cost
        kept = balanced_sample(np.arange(len(y)), y, SELF_TEST_ROWS, np.random.default_rng(seed + 3))
        features, y = np.asarray(features)[kept], y[kept]
    n = len(y)
    planted = max(5, round(PLANTED_SHARE * n))
    if n < 4 * planted or num_classes < 2:
        return {"planted": 0, "found": 0, "chance": 0.0, "lift": None}
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(n, planted, replace=False)
    flipped = y.copy()
    flipped[rows] = (y[rows] + rng.integers(1, num_classes, planted)) % num_classes
    x = np.asarray(features, dtype=np.float32) if reduced else reduce(features, dimensions(num_classes), seed)
    probabilities = out_of_sample(x, flipped, num_classes, seed=seed, C=C, reduced=True).probabilities
    flagged, _ = find_label_issues(probabilities, flipped)
    odds = log_odds(probabilities, flipped)
    order = [i for i in np.argsort(-odds, kind="stable") if flagged[i]][:planted]
    found = int(np.isin(rows, order).sum())
    chance = planted * planted / n
    return {"planted": planted, "found": found, "chance": round(chance, 2), "lift": round(found / chance, 2)}


@dataclass
class LabelReview:
    """Every image's out-of-sample evidence and the ranked suspects, as stored with a run."""

    issues: list[LabelIssue]
    images: int  # images scored (all splits)
    by_split: dict[str, int]  # images scored per split
    train_source: str  # how the training split was scored, in words
    version: int = LABEL_ISSUES_VERSION
    flagged: int = 0  # suspects by the confident-learning rule, before the cap
    estimated_errors: int = 0  # confident learning's estimate of how many labels are wrong (the cap)
    model_accuracy: float | None = None  # the cross-validated model's out-of-sample accuracy on its labels
    chance_accuracy: float | None = None  # always guessing the largest class
    C: float | None = None  # the regularisation chosen
    trust: dict[str, Any] | None = None  # the self-test: planted, found, chance, lift

    def to_dict(self) -> dict[str, Any]:
        return {
            "issues": [issue.to_dict() for issue in self.issues],
            "images": self.images,
            "by_split": self.by_split,
            "train_source": self.train_source,
            "version": self.version,
            "flagged": self.flagged,
            "estimated_errors": self.estimated_errors,
            "model_accuracy": self.model_accuracy,
            "chance_accuracy": self.chance_accuracy,
            "C": self.C,
            "trust": self.trust,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelReview:
        return cls(
            issues=[LabelIssue(**row) for row in data.get("issues", [])],
            images=int(data.get("images", 0)),
            by_split=dict(data.get("by_split", {})),
            train_source=str(data.get("train_source", "")),
            version=int(data.get("version", 0)),
            flagged=int(data.get("flagged", 0)),
            estimated_errors=int(data.get("estimated_errors", 0)),
            model_accuracy=data.get("model_accuracy"),
            chance_accuracy=data.get("chance_accuracy"),
            C=data.get("C"),
            trust=data.get("trust"),
        )

    @property
    def close_to_chance(self) -> bool:
        """True when the self-test found planted flips barely more often than a random order would."""
        lift = (self.trust or {}).get("lift")
        return lift is not None and lift < 2.0


def review(
    parts: dict[str, tuple[np.ndarray, np.ndarray, list[str]]],
    classes: list[str],
    train_source: str,
    scored: OutOfSample | None = None,
    trust: dict[str, Any] | None = None,
) -> LabelReview:
    """Rank the suspects over every split: `parts` maps a split ("train", "val", "test", or "all" for a
    dataset without a run) to (probabilities, labels, paths). The list is cut at the estimated number of
    wrong labels. `scored`: the cross-validated model's figures; `trust`: its self-test."""
    names = [name for name in parts if len(parts[name][1])]
    probabilities = Stacked([parts[n][0] for n in names], len(classes))  # read in place, never joined
    labels = np.concatenate([parts[n][1] for n in names]) if names else np.zeros(0, dtype=np.int64)
    paths = [p for n in names for p in parts[n][2]]
    splits = [n for n in names for _ in parts[n][2]]
    issues = rank(probabilities, labels, classes, paths, splits) if len(labels) else []
    estimated = estimate_errors(probabilities, labels) if len(labels) else 0
    counts = np.bincount(labels, minlength=len(classes)) if len(labels) else np.zeros(1)
    return LabelReview(
        issues[:estimated],
        len(labels),
        {n: len(parts[n][1]) for n in names},
        train_source,
        flagged=len(issues),
        estimated_errors=estimated,
        model_accuracy=None if scored is None else scored.accuracy,
        chance_accuracy=float(counts.max() / max(1, counts.sum())),
        C=None if scored is None else scored.C,
        trust=trust,
    )


EXPORT_COLUMNS = (
    *("rank", "path", "split", "given", "suggested"),
    *("odds", "score", "suggested_probability", "marked", "to"),
)


def export_rows(issues: list[LabelIssue], corrections=None) -> list[dict[str, Any]]:
    """The suspects as table rows (most suspicious first), each with the reviewer's mark when there is one.

    `corrections`: a `core.data.corrections.Corrections` (its `entries`: path -> {"action", "to"}), or None.
    """
    marks = corrections.entries if corrections is not None else {}
    rows = []
    for rank_, issue in enumerate(issues, start=1):
        mark = marks.get(issue.path) or {}
        rows.append(
            {
                "rank": rank_,
                "path": issue.path,
                "split": issue.split,
                "given": issue.given,
                "suggested": issue.suggested,
                "odds": round(float(issue.odds), 4),
                "score": round(float(issue.score), 6),
                "suggested_probability": round(float(issue.suggested_probability), 6),
                "marked": mark.get("action") or "",
                "to": mark.get("to") or "",
            }
        )
    return rows


def export_csv(rows: list[dict[str, Any]]) -> str:
    """`export_rows` as CSV text (a header, then one line per suspect)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def save(result: LabelReview, run_dir: str | os.PathLike) -> None:
    write_json_atomic(Path(run_dir) / LABEL_ISSUES_FILE, result.to_dict())


def load(run_dir: str | os.PathLike) -> LabelReview | None:
    data = read_json(Path(run_dir) / LABEL_ISSUES_FILE)
    if not data or data.get("version") != LABEL_ISSUES_VERSION:
        return None
    return LabelReview.from_dict(data)
