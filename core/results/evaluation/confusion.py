"""Making a 102-class confusion matrix lead somewhere: an order that puts confused classes together,
and the sub-matrix of a few picked classes with everything else summed into "(other)".

The order clusters classes by how often they are mistaken for each other (average-linkage
hierarchical clustering on the symmetrised row-normalised confusions, leaves in optimal order):
classes a model mixes up end up side by side, so the mistakes gather in blocks near the diagonal
instead of being scattered over a 102 x 102 grid.
"""

from __future__ import annotations

import numpy as np

OTHER = "(other)"


def confusion_affinity(matrix: np.ndarray) -> np.ndarray:
    """How much two classes are confused with each other: row-normalised off-diagonal shares, symmetrised."""
    counts = np.asarray(matrix, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    np.fill_diagonal(shares, 0.0)
    return (shares + shares.T) / 2.0


def confused_together_order(matrix: np.ndarray) -> list[int]:
    """Class indices in an order that puts mutually confused classes next to each other.

    Classes confused with none come last, in their original order. Deterministic for a given matrix.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    affinity = confusion_affinity(matrix)
    n = len(affinity)
    involved = np.flatnonzero(affinity.sum(axis=1) > 0)
    alone = [int(i) for i in range(n) if i not in set(involved.tolist())]
    if len(involved) < 3:
        return [int(i) for i in involved] + alone
    sub = affinity[np.ix_(involved, involved)]
    distance = 1.0 - sub / sub.max()  # 0 for the most confused pair, 1 for never confused
    np.fill_diagonal(distance, 0.0)
    condensed = squareform(distance, checks=False)
    tree = optimal_leaf_ordering(linkage(condensed, method="average"), condensed)
    return [int(involved[i]) for i in leaves_list(tree)] + alone


def submatrix(matrix: np.ndarray, classes: list[str], picked: list[str]) -> tuple[np.ndarray, list[str]]:
    """The rows and columns of `picked` classes (in that order), the rest summed into a last "(other)" row/column.

    Totals are kept: the result sums to the same number of images as `matrix`.
    """
    counts = np.asarray(matrix)
    index = [classes.index(name) for name in picked]
    rest = [i for i in range(len(classes)) if i not in set(index)]
    if not rest:
        return counts[np.ix_(index, index)].copy(), list(picked)
    groups = [[i] for i in index] + [rest]
    out = np.zeros((len(groups), len(groups)), dtype=counts.dtype)
    for r, rows in enumerate(groups):
        for c, cols in enumerate(groups):
            out[r, c] = counts[np.ix_(rows, cols)].sum()
    return out, [*picked, OTHER]
