"""Out-of-sample probabilities for a run's training photos: cross-validated Gaussian classes with one shared
covariance (shrinkage linear discriminant analysis) on their pooled features, standardised and reduced to
principal directions.

Why this model: the probabilities must come from a model that never saw the photo, over 1,000 classes and
300,000 photos, in seconds. A multinomial logistic regression costs photos x classes x directions per
iteration and needs more iterations as rows grow (2k -> 20k photos at 1,000 classes took 3.8 -> 118 s, an
exponent of 2). Gaussian classes have a closed form: each fold's model comes from sufficient statistics (per
class a count and a sum, one scatter matrix per fold), the training folds' being the whole set's minus the
held-out fold's, so the folds cost one pass over the rows; scoring is one matrix product.

- The shared covariance is shrunk towards a multiple of the identity (its mean variance): `shrinkage` in
  SHRINKAGE_GRID.
- The probabilities are a softmax of the discriminant at a `temperature` (a multiplier of the scores).
- Both are chosen by the held-out log loss of a sample of rows, under a model of label noise: the given label
  is the model's class with probability 1 - noise, a class drawn at random otherwise (noise fitted too). Plain
  log loss is dominated by the wrong labels themselves (each costs -log of a tiny probability) and chose a
  temperature so soft that confident learning's thresholds let a third of planted flips through (516 of 797
  caught in the first 797, against 631 with the noise model; measured at 1,000 classes, 20k photos).

Used by core.results.labels.issues (and its self-test). The ranking by log odds does not depend on the
temperature; which photos are flagged does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FOLDS = 5


MAX_DIMENSIONS = 256  # principal directions the cross-validated model sees


MAX_WEIGHTS = 65_536  # principal directions x classes: 256 directions up to 256 classes, 65 at 1,000


MIN_DIMENSIONS = 32


PCA_FIT_ROWS = 50_000  # rows the principal directions are fitted on (a sample of larger sets)


REDUCE_CHUNK = 20_000  # rows standardised and projected at a time


SHRINKAGE_GRID = (0.01, 0.1, 0.3, 0.7)  # share of the covariance replaced by its mean variance


SEARCH_ROWS = 5_000  # held-out rows the shrinkage and the temperature are chosen on (a sample of larger sets)


SCORE_ROWS = 8_192  # rows scored at a time (8,192 x 1,000 classes of float32: 33 MB)


def reduce(features: np.ndarray, dimensions: int = MAX_DIMENSIONS, seed: int = 0) -> np.ndarray:
    """Standardised features on at most `dimensions` principal directions, scaled to unit mean square.

    Unsupervised (no label is looked at), so fitting it on every row leaks nothing into the folds. Read in
    chunks of the stored (float16) features, the directions fitted on at most PCA_FIT_ROWS of them: 300k x
    2,048 features never exist as a float32 copy (2.4 GB, and as much again standardised).
    """
    from sklearn.decomposition import PCA  # heavy: sklearn

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


@dataclass(frozen=True)
class Fit:
    """How the cross-validated model was set: chosen by held-out log loss (see the module's docstring)."""

    shrinkage: float  # share of the shared covariance replaced by its mean variance
    temperature: float  # the discriminant's multiplier in the softmax
    noise: float  # share of given labels the noise model took for random (on the rows the choice was made on)

    def words(self) -> str:
        return f"shrinkage {self.shrinkage:g}, temperature {self.temperature:.3g}, chosen by held-out log loss"


DEFAULT_FIT = Fit(0.1, 1.0, 0.0)  # nothing held out to choose on (every class a single photo)


@dataclass
class OutOfSample:
    """Each row's probabilities from a model that never saw it, and how that model was chosen and did."""

    probabilities: np.ndarray
    fit: Fit | None  # None: nothing was fitted (too few photos or one class)
    accuracy: float  # of the probabilities' top class against the given labels (out of sample)


def out_of_sample(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    folds: int = FOLDS,
    seed: int = 0,
    fit: Fit | None = None,
    reduced: bool = False,
) -> OutOfSample:
    """Out-of-sample class probabilities of each row by stratified K-fold Gaussian classes (see the module).

    The features are reduced (`reduce`) unless `reduced`; the shrinkage and temperature are chosen unless `fit`
    is given. A class with fewer images than `folds` lowers the number of folds to its count (at least 2);
    images of a class with a single image get the probabilities of a model that never saw that class (0 for it).
    """
    y = np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(y), num_classes), dtype=np.float32)  # 1.2 GB at 300k photos x 1,000 classes, not 2.4
    counts = np.bincount(y, minlength=num_classes)
    smallest = counts[counts > 0].min() if len(y) else 0
    k = int(min(folds, max(2, smallest)))
    if len(np.unique(y)) < 2 or len(y) < 2 * k:
        out[np.arange(len(y)), y] = 1.0  # nothing to learn from: no evidence against any label
        return OutOfSample(out, None, 1.0)
    x = np.asarray(features, dtype=np.float32) if reduced else reduce(features, dimensions(num_classes), seed)
    fold_of = assign_folds(y, num_classes, k, seed)
    stats = FoldStatistics(x, y, num_classes, fold_of, k)
    if fit is None:
        fit = choose_fit(x, y, stats, seed)
    for fold in range(k):
        held = np.flatnonzero(fold_of == fold)
        if not len(held):
            continue
        weights, bias = stats.discriminant(fold, fit.shrinkage)
        for start in range(0, len(held), SCORE_ROWS):
            rows = held[start : start + SCORE_ROWS]
            out[rows] = _softmax(x[rows] @ weights + bias, fit.temperature)
    return OutOfSample(out, fit, float(np.mean(out.argmax(axis=1) == y)))


def dimensions(num_classes: int) -> int:
    """Principal directions the cross-validated model sees: fewer for many classes, so scoring (rows x classes x
    directions) stays bounded."""
    return int(min(MAX_DIMENSIONS, max(MIN_DIMENSIONS, MAX_WEIGHTS // max(num_classes, 1))))


def assign_folds(y: np.ndarray, num_classes: int, k: int, seed: int) -> np.ndarray:
    """Each row's fold: stratified for classes with at least `k` rows; rows of smaller classes dealt to the folds
    in turn (each scored by a model that did not see it: a class's only photo, by one that never saw the class)."""
    from sklearn.model_selection import StratifiedKFold  # heavy: sklearn

    counts = np.bincount(y, minlength=num_classes)
    splittable = np.flatnonzero(counts[y] >= k)
    small = np.flatnonzero(counts[y] < k)
    fold_of = np.empty(len(y), dtype=np.int64)
    fold_of[small] = np.random.default_rng(seed).permutation(len(small)) % k
    if len(splittable):
        split = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(splittable)), y[splittable])
        for fold, (_, held) in enumerate(split):
            fold_of[splittable[held]] = fold
    return fold_of


class FoldStatistics:
    """Per fold: each class's count and sum of rows, and the rows' scatter matrix (float64). A fold's model is
    fitted on the others' totals (the whole set's minus its own), one pass over the rows for all folds."""

    def __init__(self, x: np.ndarray, y: np.ndarray, num_classes: int, fold_of: np.ndarray, k: int):
        width = x.shape[1]
        self.num_classes, self.width, self.fold_of = num_classes, width, fold_of
        self.counts = np.zeros((k, num_classes))
        self.sums = np.zeros((k, num_classes, width))
        self.scatter = np.zeros((k, width, width))
        for fold in range(k):
            rows = np.flatnonzero(fold_of == fold)
            for start in range(0, len(rows), SCORE_ROWS):
                part = rows[start : start + SCORE_ROWS]
                xf = x[part].astype(np.float64)
                self.counts[fold] += np.bincount(y[part], minlength=num_classes)
                np.add.at(self.sums[fold], y[part], xf)
                self.scatter[fold] += xf.T @ xf

    def discriminant(self, fold: int, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
        """(weights (width x classes), bias (classes)) of the model that never saw `fold`: scores = x @ w + b,
        log p(class | x) up to a constant. A class with no row outside the fold gets a bias of -inf."""
        counts = self.counts.sum(axis=0) - self.counts[fold]
        sums = self.sums.sum(axis=0) - self.sums[fold]
        scatter = self.scatter.sum(axis=0) - self.scatter[fold]
        seen = counts > 0
        n = counts.sum()
        means = sums[seen] / counts[seen, None]
        root = sums[seen] / np.sqrt(counts[seen])[:, None]  # sum over classes of n_c mu_c mu_c^T = root^T root
        within = (scatter - root.T @ root) / n  # scikit-learn's (biased) pooled covariance, so it can be checked
        spread = np.trace(within) / self.width
        if spread <= 1e-12:  # every class a single row here: no within-class spread to measure; the total's
            grand = sums.sum(axis=0) / max(n, 1.0)
            spread = max((np.trace(scatter) / max(n, 1.0) - grand @ grand) / self.width, 1e-6)
        covariance = (1.0 - shrinkage) * within + shrinkage * spread * np.eye(self.width)
        solved = np.linalg.solve(covariance, means.T)  # width x seen classes
        weights = np.zeros((self.width, self.num_classes), dtype=np.float32)
        weights[:, seen] = solved
        bias = np.full(self.num_classes, -np.inf, dtype=np.float32)
        bias[seen] = -0.5 * np.einsum("cw,wc->c", means, solved) + np.log(counts[seen] / n)
        return weights, bias


def choose_fit(x: np.ndarray, y: np.ndarray, stats: FoldStatistics, seed: int = 0) -> Fit:
    """The shrinkage of SHRINKAGE_GRID and the temperature with the lowest held-out log loss under the noise
    model (see the module), on at most SEARCH_ROWS rows each scored by its own fold's model."""
    from scipy.optimize import minimize_scalar  # heavy: scipy

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(y), SEARCH_ROWS, replace=False)) if len(y) > SEARCH_ROWS else np.arange(len(y))
    fold_of = stats.fold_of[rows]
    best: tuple[float, Fit] | None = None
    for shrinkage in SHRINKAGE_GRID:
        scores = np.empty((len(rows), stats.num_classes), dtype=np.float32)
        for fold in np.unique(fold_of):
            weights, bias = stats.discriminant(int(fold), shrinkage)
            mine = fold_of == fold
            scores[mine] = x[rows[mine]] @ weights + bias
        given = scores[np.arange(len(rows)), y[rows]]
        known = np.isfinite(given)  # a row whose class its model never saw says nothing about the temperature
        if not known.any():
            return DEFAULT_FIT
        scores = np.where(np.isfinite(scores[known]), scores[known], np.float32(-1e30))
        labels = y[rows][known]

        def loss(log_t: float, scores=scores, labels=labels) -> float:
            return _noisy_log_loss(_given_probability(scores, labels, np.exp(log_t)), stats.num_classes)[1]

        found = minimize_scalar(loss, bounds=(-9.0, 5.0), method="bounded", options={"xatol": 0.02})
        temperature = float(np.exp(found.x))
        noise, value = _noisy_log_loss(_given_probability(scores, labels, temperature), stats.num_classes)
        if best is None or value < best[0]:
            best = (value, Fit(shrinkage, temperature, noise))
    return best[1]


def _given_probability(scores: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(temperature x scores)[row, label], in float64 where it matters."""
    z = scores * np.float32(temperature)
    top = z.max(axis=1, keepdims=True)
    total = np.log(np.exp(z - top).sum(axis=1, dtype=np.float64)) + top[:, 0]
    return np.exp(z[np.arange(len(labels)), labels] - total)


def _noisy_log_loss(given: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(noise, mean -log((1 - noise) p + noise / classes)): the noise share fitted by EM (a mixture weight)."""
    noise = 0.05
    for _ in range(100):
        share = (noise / num_classes) / ((1.0 - noise) * given + noise / num_classes)
        updated = float(np.clip(share.mean(), 1e-4, 0.5))
        if abs(updated - noise) < 1e-6:
            noise = updated
            break
        noise = updated
    return noise, float(-np.mean(np.log((1.0 - noise) * given + noise / num_classes)))


def _softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores * np.float32(temperature)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def balanced_sample(rows: np.ndarray, labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """`rows` when there are at most `limit`; else at most `limit` of them, the largest classes cut first
    (a class keeps min(its rows, an equal share)). The self-test's sample of a large set."""
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
