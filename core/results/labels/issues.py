"""Suspected label errors: photos whose folder (given label) the evidence disagrees with.

1. Out-of-sample probabilities for every image: the validation and test splits from the run's own
   logits (calibrated with its temperature; the model never trained on them), the training split by
   stratified K-fold cross-validation on the stored pooled features (each image scored by a model that did
   not see it): Gaussian classes with one shared, shrunk covariance on at most 256 principal directions,
   fitted from sufficient statistics, its shrinkage and softmax temperature chosen by held-out log loss
   (core.results.labels.out_of_sample: linear in the photos, 1,000 classes included).
2. The confident-learning rule (Northcutt et al., 2021, "Confident Learning"): class j's threshold
   t_j is the mean probability of j over the images labelled j; an image's *confident label* is the
   most probable class among those it reaches the threshold of; an image is flagged when its
   confident label is not its given label (and the model's top guess is not the given label either).
3. Ranked by the log odds of the suggested label against the given one (a score that does not
   saturate as a probability does), and the list cut at confident learning's estimate of how many
   labels are wrong (the off-diagonal of the calibrated confident joint).
4. How far the ranking can be trusted, measured on the run's own training photos
   (core.results.labels.self_test): a few of their labels are flipped on purpose and the ranking is made
   again; how many of the planted flips come first, against a random order, is the figure the page shows,
   and how deep they keep coming at least SUPPORT_LIFT times as often as at random bounds the list: the
   first `supported` suspects are what the evidence supports, the rest are shown behind them.

Written in numpy and scikit-learn rather than depending on cleanlab: the rules are a few lines and
this keeps the ranking inspectable. Flagged photos are suspects for a person to review, not verdicts.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.fileio import read_versioned, write_json_atomic
from core.results.labels.out_of_sample import OutOfSample
from core.results.labels.power import inconclusive, too_small_words
from core.runs.files import run_files

LABEL_ISSUES_VERSION = 3  # 3: Gaussian classes from sufficient statistics, the list bounded by its self-test
ROWS_AT_ONCE = 8192  # rows of probabilities the rule and the ranking work through at a time
SUPPORT_LIFT = 2.0  # the self-test supports a depth where planted flips come at least this many times chance
MIN_FOUND = 3  # planted flips a supported depth must hold at least (fewer is luck)


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
    fit: dict[str, float] | None = None  # the cross-validated model's shrinkage, temperature, noise (out_of_sample.Fit)
    trust: dict[str, Any] | None = None  # the self-test: planted, found, chance, lift, photos, depth, found_at_depth
    supported: int | None = None  # the first this many suspects are what the self-test supports (None: no self-test)
    supported_why: str = ""  # why the list is bounded there, in words (the page and the CLI say it)

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
            "fit": self.fit,
            "trust": self.trust,
            "supported": self.supported,
            "supported_why": self.supported_why,
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
            fit=data.get("fit"),
            trust=data.get("trust"),
            supported=data.get("supported"),
            supported_why=str(data.get("supported_why", "")),
        )

    @property
    def close_to_chance(self) -> bool:
        """True when the self-test found planted flips barely more often than a random order would."""
        lift = (self.trust or {}).get("lift")
        return lift is not None and lift < SUPPORT_LIFT

    def summary(self, marked: Callable[[str], str | None] | None = None, limit: int = 0) -> dict[str, Any]:
        """What `core label-issues --json` prints: the counts, what the self-test supports and why, and the issues
        (at most `limit`; 0: all), each with `supported` (true / false; null without a self-test) and its mark."""
        issues = self.issues[:limit] if limit else self.issues
        return {
            "images": self.images,
            "listed": len(self.issues),
            "supported": self.supported,
            "behind": len(self.behind),
            "supported_why": self.supported_why,
            "flagged": self.flagged,
            "estimated_errors": self.estimated_errors,
            "train_source": self.train_source,
            "trust": self.trust,
            "issues": [
                {
                    **issue.to_dict(),
                    "supported": None if self.supported is None else i < self.supported,
                    "marked": marked(issue.path) if marked else None,
                }
                for i, issue in enumerate(issues)
            ],
        }

    @property
    def first(self) -> list[LabelIssue]:
        """The suspects the self-test supports (all of them when there was no self-test)."""
        return self.issues if self.supported is None else self.issues[: self.supported]

    @property
    def behind(self) -> list[LabelIssue]:
        """The suspects past what the self-test supports: weaker evidence, shown after the first."""
        return [] if self.supported is None else self.issues[self.supported :]


def bound(trust: dict[str, Any] | None, images: int, listed: int) -> tuple[int | None, str]:
    """How many of the `listed` suspects (of `images` photos) the self-test supports, and why in words.

    The rule: the self-test's supported depth (where its own ranking stops paying off: past it, further
    suspects held planted flips less than SUPPORT_LIFT times as often as random picks; see label_self_test)
    is a share of its photos; the same share of these photos, at most the list, is what the evidence supports
    here. None when there was no self-test (too few photos): nothing bounds the list then.
    """
    trust = trust or {}
    planted, photos = int(trust.get("planted") or 0), int(trust.get("photos") or 0)
    if not planted or not photos or "depth" not in trust:
        return None, "Too few photos to test the list on mistakes planted on purpose, so every suspect is shown."
    depth, found = int(trust["depth"]), int(trust.get("found_at_depth") or 0)
    swapped = (
        f"When {planted:,} of {photos:,} training labels were swapped on purpose as a test and the photos ranked again"
    )
    twice = "twice" if SUPPORT_LIFT == 2 else f"{SUPPORT_LIFT:g} times"
    top, chance = int(trust.get("found") or 0), float(trust.get("chance") or 0.0)
    if depth == 0 and inconclusive(trust):
        return 0, (
            f"{too_small_words(trust)[0].upper()}{too_small_words(trust)[1:]}. Look through the list by eye, most "
            "suspicious first; a larger dataset, or better features (ImageNet weights), gives a test that can judge it."
        )
    if depth == 0 and 0 < top < MIN_FOUND and top >= SUPPORT_LIFT * chance:
        # beat chance at the top, yet too few to tell from luck: "no stretch ... twice as often" would contradict the
        # trust note's "1 of the flips came among the first 6 (a random order would put about 0.3 there)"
        return 0, (
            f"{swapped}, only {top} of them came among the first {planted:,} suspects: more than the {chance:.1f} a "
            f"random pick would hold, but fewer than {MIN_FOUND}, too few to tell from luck. Treat every suspect as "
            "a guess: look at them by eye, or train with better features (ImageNet weights) first."
        )
    if depth == 0 or listed == 0:
        return 0, (
            f"{swapped}, no stretch at the top of the list held the swapped photos even {twice} as often as "
            "picking photos at random would. Treat every suspect as a guess: look at them by eye, or train with "
            "better features (ImageNet weights) first."
        )
    deep = max(1, round(depth / photos * images))
    supported = min(listed, deep)
    times = found / (depth * planted / photos)
    rest = listed - supported
    return supported, (
        f"{swapped}, the first {depth:,} suspects held {found:,} of the swapped photos: {times:.1f} times as many "
        f"as {depth:,} photos picked at random would. Further down the list, swapped photos turned up less than "
        f"{twice} as often as in a random pick. Scaled to these {images:,} photos, that depth is the first "
        f"{deep:,} suspects"
        + (
            f"; the other {rest:,} have weaker evidence: look at them after these, if at all."
            if rest
            else f", deeper than the {listed:,} listed: review them all."
        )
    )


def review(
    parts: dict[str, tuple[np.ndarray, np.ndarray, list[str]]],
    classes: list[str],
    train_source: str,
    scored: OutOfSample | None = None,
    trust: dict[str, Any] | None = None,
) -> LabelReview:
    """Rank the suspects over every split: `parts` maps a split ("train", "val", "test", or "all" for a
    dataset without a run) to (probabilities, labels, paths). The list is cut at the estimated number of
    wrong labels, and bounded (`bound`) by what the self-test supports. `scored`: the cross-validated model's
    figures; `trust`: its self-test (label_self_test.self_test)."""
    names = [name for name in parts if len(parts[name][1])]
    probabilities = Stacked([parts[n][0] for n in names], len(classes))  # read in place, never joined
    labels = np.concatenate([parts[n][1] for n in names]) if names else np.zeros(0, dtype=np.int64)
    paths = [p for n in names for p in parts[n][2]]
    splits = [n for n in names for _ in parts[n][2]]
    issues = rank(probabilities, labels, classes, paths, splits) if len(labels) else []
    estimated = estimate_errors(probabilities, labels) if len(labels) else 0
    counts = np.bincount(labels, minlength=len(classes)) if len(labels) else np.zeros(1)
    listed = issues[:estimated]
    supported, why = bound(trust, len(labels), len(listed))
    return LabelReview(
        listed,
        len(labels),
        {n: len(parts[n][1]) for n in names},
        train_source,
        flagged=len(issues),
        estimated_errors=estimated,
        model_accuracy=None if scored is None else scored.accuracy,
        chance_accuracy=float(counts.max() / max(1, counts.sum())),
        fit=None if scored is None or scored.fit is None else asdict(scored.fit),
        trust=trust,
        supported=supported,
        supported_why=why,
    )


EXPORT_COLUMNS = (
    *("rank", "path", "split", "given", "suggested"),
    *("odds", "score", "suggested_probability", "supported", "marked", "to"),
)


def export_rows(issues: list[LabelIssue], corrections=None, supported: int | None = None) -> list[dict[str, Any]]:
    """The suspects as table rows (most suspicious first), each with the reviewer's mark when there is one.

    `corrections`: a `core.data.corrections.Corrections` (its `entries`: path -> {"action", "to"}), or None.
    `supported`: the review's `supported` (the first that many are marked "yes", the rest "no"; None: "").
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
                "supported": "" if supported is None else "yes" if rank_ <= supported else "no",
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
    write_json_atomic(run_files(run_dir).label_issues, result.to_dict())


def load(run_dir: str | os.PathLike) -> LabelReview | None:
    return read_versioned(run_files(run_dir).label_issues, LABEL_ISSUES_VERSION, LabelReview.from_dict)
