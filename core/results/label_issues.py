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

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.fileio import read_json, write_json_atomic
from core.runs.store import LABEL_ISSUES_FILE

FOLDS = 5
LABEL_ISSUES_VERSION = 2  # 2: regularisation chosen by inner CV, log-odds ranking, the cap, the self-test
MAX_DIMENSIONS = 256  # principal directions the cross-validated model sees
C_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1)  # candidate regularisations (on unit-scale features)
SEARCH_ROWS = 1500  # rows the inner cross-validation chooses C on (a sample of larger sets)
MAX_FIT_ROWS = 30_000  # rows one fold's model is fitted on (a class-balanced sample of larger sets): bounded cost
MAX_WEIGHTS = 65_536  # principal directions x classes: 256 directions up to 256 classes, 65 at 1,000
MIN_DIMENSIONS = 32
ROWS_AT_ONCE = 8192  # rows of probabilities the rule and the ranking work through at a time
PCA_FIT_ROWS = 50_000  # rows the principal directions are fitted on (a sample of larger sets)
REDUCE_CHUNK = 20_000  # rows standardised and projected at a time
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


def reduce(features: np.ndarray, dimensions: int = MAX_DIMENSIONS, seed: int = 0) -> np.ndarray:
    """Standardised features on at most `dimensions` principal directions, scaled to unit mean square.

    Unsupervised (no label is looked at), so fitting it on every row leaks nothing into the folds. Read in
    chunks of the stored (float16) features, the directions fitted on at most PCA_FIT_ROWS of them: 300k x
    2,048 features never exist as a float32 copy (2.4 GB, and as much again standardised).
    """
    from sklearn.decomposition import PCA

    x = np.asarray(features)
    n, width = x.shape
    mean = np.zeros(width)
    square = np.zeros(width)
    for start in range(0, n, REDUCE_CHUNK):
        part = x[start : start + REDUCE_CHUNK].astype(np.float64)
        mean += part.sum(axis=0)
        square += np.square(part).sum(axis=0)
    mean /= max(n, 1)
    std = np.sqrt(np.maximum(square / max(n, 1) - mean**2, 0.0)) + 1e-6

    def standardised(rows: np.ndarray) -> np.ndarray:
        return ((rows.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)

    k = min(dimensions, width, max(1, n - 1))
    if k < width:
        rng = np.random.default_rng(seed)
        fit_rows = np.sort(rng.choice(n, PCA_FIT_ROWS, replace=False)) if n > PCA_FIT_ROWS else np.arange(n)
        pca = PCA(k, random_state=seed).fit(standardised(x[fit_rows]))
        out = np.empty((n, k), dtype=np.float32)
        for start in range(0, n, REDUCE_CHUNK):
            out[start : start + REDUCE_CHUNK] = pca.transform(standardised(x[start : start + REDUCE_CHUNK]))
    else:
        out = standardised(x)
    scale = float(np.sqrt(np.mean(np.square(out, dtype=np.float64)))) or 1.0
    return (out / scale).astype(np.float32)


@dataclass
class OutOfSample:
    """Each row's probabilities from a model that never saw it, and how that model was chosen and did."""

    probabilities: np.ndarray
    C: float | None  # the regularisation the inner cross-validation chose (None: nothing was fitted)
    accuracy: float  # of the probabilities' top class against the given labels (out of sample)


def cross_val_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = FOLDS, seed: int = 0
) -> np.ndarray:
    """Out-of-sample class probabilities of each row (see `out_of_sample`)."""
    return out_of_sample(features, labels, num_classes, folds, seed).probabilities


def out_of_sample(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    folds: int = FOLDS,
    seed: int = 0,
    C: float | None = None,
    reduced: bool = False,
) -> OutOfSample:
    """Out-of-sample class probabilities of each row by stratified K-fold logistic regression.

    The features are reduced (`reduce`) unless `reduced`; C is chosen by inner cross-validation unless given.
    A class with fewer images than `folds` lowers the number of folds to its count (at least 2); images of
    a class with a single image get the probabilities of a model that never saw that class.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(y), num_classes), dtype=np.float32)  # 1.2 GB at 300k photos x 1,000 classes, not 2.4
    counts = np.bincount(y, minlength=num_classes)
    smallest = counts[counts > 0].min() if len(y) else 0
    k = int(min(folds, max(2, smallest)))
    if len(np.unique(y)) < 2 or len(y) < 2 * k:
        out[np.arange(len(y)), y] = 1.0  # nothing to learn from: no evidence against any label
        return OutOfSample(out, None, 1.0)
    x = np.asarray(features, dtype=np.float32) if reduced else reduce(features, dimensions(num_classes), seed)
    if C is None:
        C = choose_c(x, y, num_classes, seed)
    # Rows of classes too small to stratify are dealt to the folds in turn: each is scored by a model that
    # did not see it (a class's only photo, by one that never saw the class), at k fits in all, not one per row.
    splittable = np.flatnonzero(counts[y] >= k)
    small = np.flatnonzero(counts[y] < k)
    fold_of = np.empty(len(y), dtype=np.int64)
    fold_of[small] = np.random.default_rng(seed).permutation(len(small)) % k
    if len(splittable):
        folds = StratifiedKFold(k, shuffle=True, random_state=seed).split(x[splittable], y[splittable])
        for fold, (_, held) in enumerate(folds):
            fold_of[splittable[held]] = fold
    rng = np.random.default_rng(seed + 2)
    for fold in range(k):
        held_rows = np.flatnonzero(fold_of == fold)
        train_rows = balanced_sample(np.flatnonzero(fold_of != fold), y, MAX_FIT_ROWS, rng)
        if not len(held_rows) or not len(train_rows):
            continue
        out[held_rows] = _fit_predict(x[train_rows], y[train_rows], x[held_rows], num_classes, seed, C)
    return OutOfSample(out, float(C), float(np.mean(out.argmax(axis=1) == y)))


def dimensions(num_classes: int) -> int:
    """Principal directions the cross-validated model sees: fewer for many classes, so its weights stay bounded."""
    return int(min(MAX_DIMENSIONS, max(MIN_DIMENSIONS, MAX_WEIGHTS // max(num_classes, 1))))


def balanced_sample(rows: np.ndarray, labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """`rows` when there are at most `limit`; else at most `limit` of them, the largest classes cut first
    (a class keeps min(its rows, an equal share)), so one fold's fit costs the same at 30k or 300k photos."""
    if len(rows) <= limit:
        return rows
    y = labels[rows]
    counts = np.bincount(y)
    present = counts[counts > 0]
    # the largest per-class cap whose total stays within the limit
    low, high = 1, int(present.max())
    while low < high:
        cap = (low + high + 1) // 2
        if np.minimum(present, cap).sum() <= limit:
            low = cap
        else:
            high = cap - 1
    # each row's place among its class's rows, in a random order
    shuffled = rng.permutation(len(rows))
    by_class = shuffled[np.argsort(y[shuffled], kind="stable")]
    sorted_y = y[by_class]
    rank = np.empty(len(rows), dtype=np.int64)
    rank[by_class] = np.arange(len(rows)) - np.searchsorted(sorted_y, sorted_y, side="left")
    return np.sort(rows[rank < max(low, 1)])


def choose_c(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int = 0) -> float:
    """The C of C_GRID with the lowest log loss in a 3-fold cross-validation (on a sample of SEARCH_ROWS rows)."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(y), SEARCH_ROWS, replace=False)) if len(y) > SEARCH_ROWS else np.arange(len(y))
    xs, ys = x[rows], y[rows]
    counts = np.bincount(ys, minlength=num_classes)
    k = int(min(3, counts[counts > 0].min()))
    if k < 2:
        return C_GRID[len(C_GRID) // 2]
    losses = {}
    for c in C_GRID:
        held_out = np.zeros((len(ys), num_classes))
        for train, held in StratifiedKFold(k, shuffle=True, random_state=seed).split(xs, ys):
            held_out[held] = _fit_predict(xs[train], ys[train], xs[held], num_classes, seed, c)
        held_out = np.clip(held_out, 1e-12, 1.0)
        losses[c] = log_loss(ys, held_out / held_out.sum(axis=1, keepdims=True), labels=np.arange(num_classes))
    return min(losses, key=losses.get)


def _fit_predict(x_train, y_train, x_held, num_classes: int, seed: int, C: float) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_train)) < 2:
        out = np.zeros((len(x_held), num_classes))
        out[:, y_train[0]] = 1.0
        return out
    model = LogisticRegression(C=C, max_iter=300, random_state=seed)
    with warnings.catch_warnings():
        # lbfgs may stop at 300 iterations short of its tolerance (bounded on purpose: seconds per fold);
        # sklearn then warns once per fold, which read as an error in the CLI.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    out = np.zeros((len(x_held), num_classes))
    out[:, model.classes_] = model.predict_proba(x_held)
    return out


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


def save(result: LabelReview, run_dir: str | os.PathLike) -> None:
    write_json_atomic(Path(run_dir) / LABEL_ISSUES_FILE, result.to_dict())


def load(run_dir: str | os.PathLike) -> LabelReview | None:
    data = read_json(Path(run_dir) / LABEL_ISSUES_FILE)
    if not data or data.get("version") != LABEL_ISSUES_VERSION:
        return None
    return LabelReview.from_dict(data)
