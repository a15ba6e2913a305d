"""Out-of-sample probabilities for a run's training photos: cross-validated logistic regression on their pooled
features, standardised and reduced to principal directions, its regularisation chosen by an inner cross-validation.

An unregularised fit separates 2,048 weak features in every fold and its probabilities saturate at 0% and 100%,
which ranks nothing; so the features are reduced (at most MAX_DIMENSIONS directions, fewer with many classes so
the weights stay bounded) and C is chosen by log loss. Folds fit on class-balanced samples of at most
MAX_FIT_ROWS rows: the cost is bounded whatever the dataset's size. Used by core.results.label_issues.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

FOLDS = 5


MAX_DIMENSIONS = 256  # principal directions the cross-validated model sees


C_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1)  # candidate regularisations (on unit-scale features)


SEARCH_ROWS = 1500  # rows the inner cross-validation chooses C on (a sample of larger sets)


MAX_FIT_ROWS = 30_000  # rows one fold's model is fitted on (a class-balanced sample of larger sets): bounded cost


MAX_WEIGHTS = 65_536  # principal directions x classes: 256 directions up to 256 classes, 65 at 1,000


MIN_DIMENSIONS = 32


PCA_FIT_ROWS = 50_000  # rows the principal directions are fitted on (a sample of larger sets)


REDUCE_CHUNK = 20_000  # rows standardised and projected at a time


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
