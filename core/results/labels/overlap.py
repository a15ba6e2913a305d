"""Overlapping classes and label health, from out-of-sample probabilities: cleanlab's dataset-level checks.

Both read the *calibrated confident joint* of confident learning (Northcutt et al., 2021): for every photo, the
class it confidently belongs to (its probability of that class reaches the class's threshold, the mean probability
the class's own photos get), counted against its given label, each given label's row rescaled to that label's count.
Computed as cleanlab 2.9 computes it (`cleanlab.count.compute_confident_joint`, `estimate_joint`), so the figures
are the same as cleanlab's on the same probabilities (tests/results/data_issues/test_report.py checks it):

- overlapping classes (`cleanlab.dataset.find_overlapping_classes`): the joint made symmetric, joint[a, b] +
  joint[b, a]: the share of all photos that sit between a and b. A pair the model cannot tell apart (given one photo
  of each, it orders them barely better than a coin: `separability`) is a candidate for merging; a pair it can tell
  apart but that still overlaps wants a clearer rule for labelling;
- label health (`cleanlab.dataset.overall_label_health_score`, `rank_classes_by_label_quality`): the share of labels
  that look right overall, and per class p(true = k | given = k) with the estimated wrong labels in and out.

Rows are read a chunk at a time (`label_issues.Stacked`): 100k photos x 1,000 classes never exist as a float64 copy;
the joint is classes x classes (1M cells at 1,000 classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.results.labels.issues import ROWS_AT_ONCE, Stacked

BIG_THRESHOLD = 2.0  # a class no photo is labelled with: nothing reaches it (cleanlab's BIG_VALUE)
NUDGE = 1e-6  # cleanlab's FLOATING_POINT_COMPARISON
MAX_PAIRS = 20  # overlapping pairs reported
MERGE_SEPARABILITY = 0.6  # below this, the model orders a photo of each class barely better than a coin: merge
MERGE_MARGIN = 0.1  # ...and at least this far below the typical candidate pair (weak features separate no pair well)
COIN_ALPHA = 0.05  # or not told apart better than a coin would by luck at this level (few photos: a noisy AUC)
EXAMPLES = 12  # photos shown per pair


@dataclass
class ConfidentJoint:
    """What the confident-learning count found: the per-photo guesses and the calibrated joint."""

    guess: np.ndarray  # (n,) the class each photo confidently belongs to; -1 when it reaches no threshold
    joint: np.ndarray  # (K, K) calibrated and normalised: p(given = i, true = j); sums to 1
    photos: int
    wrong_labels: int  # cleanlab's num_label_issues (off_diagonal): confidently elsewhere and not predicted as given


def _rows(probabilities):
    if isinstance(probabilities, Stacked):
        return probabilities
    if isinstance(probabilities, list | tuple):
        width = np.asarray(probabilities[0]).shape[1]
        return Stacked(list(probabilities), width)
    return np.asarray(probabilities)


def thresholds(probabilities, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per class, the mean probability of the class over the photos labelled with it (cleanlab's)."""
    labels = np.asarray(labels, dtype=np.int64)
    given = np.asarray(_rows(probabilities)[np.arange(len(labels)), labels], dtype=np.float64)
    sums = np.bincount(labels, weights=given, minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    out = np.where(counts > 0, sums / np.maximum(counts, 1), BIG_THRESHOLD)
    return np.clip(out, 2 * NUDGE, None)


def confident_joint(probabilities, labels: np.ndarray) -> ConfidentJoint:
    """The confident count, calibrated, as cleanlab computes it (rounded to whole photos per given label)."""
    probabilities = _rows(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = len(labels), probabilities.shape[1]
    bar = thresholds(probabilities, labels, k)[None, :] - NUDGE
    guess = np.full(n, -1, dtype=np.int64)
    wrong = 0
    for start in range(0, n, ROWS_AT_ONCE):
        rows = slice(start, min(n, start + ROWS_AT_ONCE))
        p = np.asarray(probabilities[rows], dtype=np.float64)
        reached = p >= bar
        count = reached.sum(axis=1)
        # one class reached: that one; several: the most probable class (cleanlab's rule)
        chosen = np.where(count > 1, p.argmax(axis=1), reached.argmax(axis=1))
        guess[rows] = np.where(count > 0, chosen, -1)
        given = labels[rows]
        nudged = p.copy()
        nudged[np.arange(len(given)), given] += NUDGE
        predicted_as_given = nudged.argmax(axis=1) == given
        wrong += int(np.sum((count > 0) & (chosen != given) & ~predicted_as_given))
    counted = guess >= 0
    raw = np.zeros((k, k))
    np.add.at(raw, (labels[counted], guess[counted]), 1.0)
    np.fill_diagonal(raw, np.maximum(np.diagonal(raw), 1.0))
    label_counts = np.bincount(labels, minlength=k).astype(np.float64)
    calibrated = raw / np.clip(raw.sum(axis=1, keepdims=True), 1e-100, None) * label_counts[:, None]
    calibrated = calibrated / max(calibrated.sum(), 1e-100) * label_counts.sum()
    calibrated = np.array([_round_keeping_sum(row) for row in calibrated])
    joint = calibrated / max(float(calibrated.sum()), 1e-100)
    return ConfidentJoint(guess, joint, n, wrong)


def _round_keeping_sum(values: np.ndarray) -> np.ndarray:
    """Whole numbers that keep the row's (rounded) total: cleanlab's round_preserving_sum."""
    values = np.asarray(values, dtype=np.float64)
    ints = values.round()
    target, total = np.round(values.sum()), np.round(ints.sum())
    while abs(total - target) > NUDGE:
        step = -1 if target - total < 0 else 1
        changes = min(int(abs(np.round(target - total))), len(values))
        order = np.argsort(values - ints)[::-step][:changes]
        ints[order] += step
        total = np.round(ints.sum())
    return ints


def label_health(cj: ConfidentJoint, classes: list[str], counts: np.ndarray) -> dict:
    """The dataset's label health score and each class's, worst first (cleanlab's two functions' figures)."""
    joint = cj.joint
    diagonal = np.diagonal(joint)
    given = joint.sum(axis=1)
    true = joint.sum(axis=0)
    given_noise = given - diagonal  # p(given = k, true != k)
    true_noise = true - diagonal  # p(given != k, true = k)
    noise = given_noise / np.clip(given, 1e-6, None)
    inverse = true_noise / np.clip(true, 1e-6, None)
    rows = [
        {
            "class": classes[i],
            "score": float(1 - noise[i]),
            "photos": int(counts[i]),
            "wrong_labels": int(np.rint(given_noise[i] * cj.photos)),
            "missing_labels": int(np.rint(true_noise[i] * cj.photos)),
            "noise": float(noise[i]),
            "inverse_noise": float(inverse[i]),
        }
        for i in range(len(classes))
    ]
    rows.sort(key=lambda r: (r["score"], r["class"]))
    score = 1 - cj.wrong_labels / cj.photos if cj.photos else 1.0
    return {"score": float(score), "wrong_labels": cj.wrong_labels, "photos": cj.photos, "classes": rows}


def symmetric_pairs(joint: np.ndarray, limit: int = MAX_PAIRS) -> list[tuple[int, int, float]]:
    """The pairs (a < b) with the largest joint[a, b] + joint[b, a], largest first (only pairs above zero)."""
    return _top_pairs(np.triu(joint, 1) + np.tril(joint, -1).T, limit)


def _top_pairs(matrix: np.ndarray, limit: int) -> list[tuple[int, int, float]]:
    """The `limit` largest cells above the diagonal that are above zero, largest first (ties: lower pair first)."""
    k = len(matrix)
    if k < 2:
        return []
    a, b = np.triu_indices(k, 1)
    values = matrix[a, b]
    keep = min(limit, int(np.sum(values > 0)))
    if keep == 0:
        return []
    top = np.argpartition(-values, keep - 1)[:keep]
    top = top[np.lexsort((a[top] * k + b[top], -values[top]))]
    return [(int(a[i]), int(b[i]), float(values[i])) for i in top]


def alikeness(probabilities, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K): how much probability the photos of each class give each other class, relative to their own,
    made symmetric (the geometric mean of a's photos towards b and b's towards a). About 1 for two classes the
    model treats as one (a class split in two at random), small for classes it keeps apart. One pass over the rows.
    """
    from scipy.sparse import csr_matrix  # heavy: scipy

    probabilities = _rows(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    given = np.zeros((num_classes, num_classes))
    for start in range(0, n, ROWS_AT_ONCE):
        y = labels[start : start + ROWS_AT_ONCE]
        onehot = csr_matrix((np.ones(len(y)), (y, np.arange(len(y)))), shape=(num_classes, len(y)))
        given += onehot @ np.asarray(probabilities[start : start + ROWS_AT_ONCE], dtype=np.float64)
    counts = np.bincount(labels, minlength=num_classes)
    mean = given / np.maximum(counts, 1)[:, None]  # mean[a, b]: the mean p(b) of photos labelled a
    towards = mean / np.clip(np.diagonal(mean), 1e-12, None)[:, None]
    out = np.sqrt(towards * towards.T)
    out[counts == 0, :] = 0.0
    out[:, counts == 0] = 0.0
    return out


def separability(probabilities, labels: np.ndarray, a: int, b: int) -> float | None:
    """Given a photo labelled a and one labelled b, how often the model gives the a-photo the larger share of
    p(a) / (p(a) + p(b)): 0.5 is a coin, 1 always right (the AUC). None when a class has no photos."""
    from sklearn.metrics import roc_auc_score  # heavy: sklearn

    probabilities = _rows(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.flatnonzero((labels == a) | (labels == b))
    if len(np.unique(labels[rows])) < 2:
        return None
    share = _share(probabilities, rows, a, b)
    return float(roc_auc_score(labels[rows] == a, share))


def _share(probabilities, rows: np.ndarray, a: int, b: int) -> np.ndarray:
    """p(a) / (p(a) + p(b)) of each row."""
    pa = np.asarray(probabilities[rows, np.full(len(rows), a)], dtype=np.float64)
    pb = np.asarray(probabilities[rows, np.full(len(rows), b)], dtype=np.float64)
    return pa / np.clip(pa + pb, 1e-12, None)


def overlapping_classes(
    probabilities, labels: np.ndarray, classes: list[str], paths: list[str], cj: ConfidentJoint
) -> list[dict]:
    """The pairs of classes photos sit between, each with its photos and a suggestion: first the pairs to merge
    (the model tells them apart under 60% of the time, or no better than a coin would by luck, and at least 10
    points worse than the typical candidate pair), then the rest by cleanlab's overlap (the share of all photos
    between the two).

    Candidates: cleanlab's MAX_PAIRS most overlapping pairs and the MAX_PAIRS the model treats most alike
    (`alikeness`), so a class split in two is found even when a weak model spreads every class over the others.
    """
    probabilities = _rows(probabilities)
    labels = np.asarray(labels, dtype=np.int64)
    k = len(classes)
    symmetric = np.triu(cj.joint, 1) + np.tril(cj.joint, -1).T
    candidates = {(a, b) for a, b, _ in _top_pairs(symmetric, MAX_PAIRS)}
    alike = alikeness(probabilities, labels, k)
    candidates |= {(a, b) for a, b, _ in _top_pairs(alike, MAX_PAIRS)}
    apart = {pair: separability(probabilities, labels, *pair) for pair in candidates}
    known = [value for value in apart.values() if value is not None]
    typical = float(np.median(known)) if known else None
    counts = np.bincount(labels, minlength=k)
    out = []
    for a, b in candidates:
        value = apart[(a, b)]
        chance = _better_than_a_coin(value, counts[a], counts[b])
        merge = (
            value is not None
            and typical is not None
            and value <= typical - MERGE_MARGIN
            and (value < MERGE_SEPARABILITY or chance >= COIN_ALPHA)
        )
        share = float(symmetric[a, b])
        if share <= 0 and not merge:
            continue
        out.append(
            {
                "classes": [classes[a], classes[b]],
                "score": share,
                "photos": int(np.rint(share * cj.photos)),
                "separability": value,
                "typical_separability": typical,
                "coin_p_value": chance,
                "alikeness": float(alike[a, b]),
                "suggestion": "merge" if merge else "clearer rule",
                "examples": _examples(probabilities, labels, classes, paths, cj, a, b),
            }
        )
    out.sort(
        key=lambda p: (
            p["suggestion"] != "merge",
            p["separability"] if p["suggestion"] == "merge" else 0.0,
            -p["score"],
            p["classes"],
        )
    )
    return out[:MAX_PAIRS]


def _better_than_a_coin(auc: float | None, n_a: int, n_b: int) -> float:
    """One-sided p-value of an AUC this high from a model that cannot tell the classes apart (Mann-Whitney's
    normal approximation): small when the pair is told apart better than a coin would by luck."""
    from scipy.stats import norm  # heavy: scipy

    if auc is None or n_a < 1 or n_b < 1:
        return 1.0
    spread = np.sqrt((n_a + n_b + 1) / (12.0 * n_a * n_b))
    return float(norm.sf((auc - 0.5) / spread))


def _examples(probabilities, labels, classes, paths, cj: ConfidentJoint, a: int, b: int) -> list[dict]:
    """The photos of a and b that look most like the other class (the model's share for the other one)."""
    rows = np.flatnonzero((labels == a) | (labels == b))
    if not len(rows):
        return []
    other = np.where(labels[rows] == a, b, a)
    towards_other = np.where(
        labels[rows] == a, 1 - _share(probabilities, rows, a, b), _share(probabilities, rows, a, b)
    )
    order = np.argsort(-towards_other, kind="stable")[:EXAMPLES]
    return [
        {
            "path": paths[rows[i]],
            "label": classes[labels[rows[i]]],
            "looks_like": classes[other[i]],
            "share": float(towards_other[i]),
            "confidently_other": bool(cj.guess[rows[i]] == other[i]),
        }
        for i in order
    ]
