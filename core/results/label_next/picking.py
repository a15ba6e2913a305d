"""Which unlabelled photos to label next: uncertain ones, and not twenty near-copies of one.

Flora's strategy ("margin-diverse") is diverse mini-batch active learning (Zhdanov 2019, "Diverse mini-batch
Active Learning"): the head (core.results.feature_head, on the reduced pooled features) scores every pending
photo; the PREFILTER x batch photos with the smallest *margin* (top probability minus the second: the model is
torn between two classes) are clustered into `batch` groups by k-means on their features, weighted by how
uncertain each is, and from each group the photo nearest its centre is picked. So a batch covers the kinds of
photos the model is unsure about, instead of one kind many times. "random" picks uniformly, for comparison
(core.results.label_next.simulation measures both on labels hidden on purpose).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

STRATEGY = "margin-diverse"
RANDOM = "random"
STRATEGIES = (STRATEGY, RANDOM)
PREFILTER = 10  # candidates per photo of the batch, among the least certain, before the diversity step
KMEANS_ITERATIONS = 20


@dataclass(frozen=True)
class Pick:
    """One photo to label: where it is, the model's top guesses, and why it was picked."""

    path: str
    guesses: list[tuple[str, float]]  # (class, probability), the three likeliest
    margin: float  # top probability minus the second (0: torn, 1: sure)
    group: int  # photos in its group of similar uncertain photos (1 for random picks)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["guesses"] = [{"class": c, "probability": round(p, 4)} for c, p in self.guesses]
        return out


def margins(probabilities: np.ndarray) -> np.ndarray:
    """Top probability minus the second, per row (1 when there is a single class)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape[1] < 2:
        return np.ones(len(p))
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]


def pick_margin_diverse(
    x: np.ndarray, probabilities: np.ndarray, batch: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `x` to label next by margin and diversity (see the module), and each pick's group size."""
    n = len(x)
    batch = min(batch, n)
    if batch <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    m = margins(probabilities)
    candidates = np.argsort(m, kind="stable")[: min(n, PREFILTER * batch)]
    if len(candidates) <= batch:
        return candidates, np.ones(len(candidates), dtype=np.int64)
    from sklearn.cluster import KMeans  # heavy: sklearn

    weights = 1.0 - m[candidates] + 1e-3  # the least certain pull the centres most
    points = np.asarray(x[candidates], dtype=np.float64)
    kmeans = KMeans(batch, n_init=1, max_iter=KMEANS_ITERATIONS, random_state=seed).fit(points, sample_weight=weights)
    picked, sizes = [], []
    for group in range(batch):
        members = np.flatnonzero(kmeans.labels_ == group)
        if not len(members):
            continue
        distance = np.square(points[members] - kmeans.cluster_centers_[group]).sum(axis=1)
        picked.append(candidates[members[np.argmin(distance)]])
        sizes.append(len(members))
    picked, sizes = np.asarray(picked, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
    order = np.argsort(m[picked], kind="stable")  # the most torn first
    return picked[order], sizes[order]


def pick_random(n: int, batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)[: min(batch, n)]


def pick(strategy: str, x: np.ndarray, probabilities: np.ndarray, batch: int, seed: int = 0) -> np.ndarray:
    """Rows to label next by `strategy` (STRATEGIES)."""
    if strategy == STRATEGY:
        return pick_margin_diverse(x, probabilities, batch, seed)[0]
    if strategy == RANDOM:
        return pick_random(len(x), batch, seed)
    raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={strategy!r}")


def explain(probabilities: np.ndarray, classes: list[str], group: int) -> tuple[list[tuple[str, float]], float, str]:
    """A pick's three likeliest classes, its margin, and why it was picked, in words."""
    p = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-p)[:3]
    guesses = [(classes[i], float(p[i])) for i in order]
    margin = float(p[order[0]] - p[order[1]]) if len(order) > 1 else 1.0
    if len(guesses) > 1 and margin < 0.15:
        why = (
            f"the model is torn between {guesses[0][0]} ({guesses[0][1]:.0%}) and {guesses[1][0]} ({guesses[1][1]:.0%})"
        )
    elif guesses[0][1] < 0.6:
        why = f"the model is unsure: its best guess, {guesses[0][0]}, has only {guesses[0][1]:.0%}"
    else:
        why = f"the model leans to {guesses[0][0]} ({guesses[0][1]:.0%}), among the least sure of the waiting photos"
    if group > 1:
        why += f"; it stands for {group} similar uncertain photos, so one label teaches about all of them"
    return guesses, margin, why


def next_batch(
    labelled_x: np.ndarray,
    labelled_y: np.ndarray,
    pending_x: np.ndarray,
    pending_paths: list[str],
    classes: list[str],
    batch: int = 10,
    seed: int = 0,
) -> list[Pick]:
    """The head retrained on the labelled rows, then the next `batch` pending photos to label, most torn first.

    Features are the reduced ones (core.results.labels.out_of_sample.reduce over labelled and pending together).
    """
    from core.results.feature_head import fit_head  # heavy: sklearn

    if not len(pending_paths):
        return []
    head = fit_head(labelled_x, labelled_y, len(classes), seed=seed)
    probabilities = head.probabilities(pending_x)
    rows, sizes = pick_margin_diverse(pending_x, probabilities, batch, seed)
    picks = []
    for row, size in zip(rows, sizes, strict=True):
        guesses, margin, why = explain(probabilities[row], classes, int(size))
        picks.append(Pick(pending_paths[row], guesses, margin, int(size), why))
    return picks
