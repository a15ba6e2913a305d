"""Underperforming groups: clusters of similar photos on which the model does much worse than on the rest.

cleanlab's Datalab clusters the photos' features and compares each cluster's label quality with the dataset's;
here the photos are clustered by k-means on their reduced features (about sqrt(n / 2) clusters, at most
MAX_GROUPS), and each cluster's out-of-sample accuracy is compared with the accuracy on every other photo. A
cluster is reported only when the difference would rarely arise by chance: a one-sided Fisher exact test, Holm's
correction over all the clusters tested (so a dataset with no weak spot reports none at the 5% level however many
clusters it has), and at least MIN_GAP lower accuracy (a real but negligible gap on 100k photos is not news).
Its score is cleanlab's: the cluster's accuracy divided by the rest's (1 = as good, 0.5 = half as often right).
"""

from __future__ import annotations

import numpy as np

MAX_GROUPS = 200
MIN_GROUP = 10  # photos: a smaller cluster is not tested
MIN_GAP = 0.10  # accuracy points below the rest
ALPHA = 0.05  # family-wise error rate over the clusters tested
FIT_ROWS = 50_000  # photos k-means is fitted on (a random sample of more; every photo is then assigned)
EXAMPLES = 12


def group_count(n: int) -> int:
    """About sqrt(n / 2) clusters: 10 for 200 photos, 46 for 4,300, MAX_GROUPS from 80k on."""
    return int(np.clip(round(np.sqrt(n / 2)), 2, MAX_GROUPS))


def clusters(x: np.ndarray, groups: int | None = None, seed: int = 0) -> np.ndarray:
    """A k-means cluster per row of `x` (mini-batch k-means fitted on at most FIT_ROWS rows)."""
    from sklearn.cluster import MiniBatchKMeans  # heavy: sklearn

    x = np.asarray(x, dtype=np.float32)
    groups = min(groups or group_count(len(x)), len(x))
    if groups < 2:
        return np.zeros(len(x), dtype=np.int64)
    rng = np.random.default_rng(seed)
    fit = x[np.sort(rng.choice(len(x), FIT_ROWS, replace=False))] if len(x) > FIT_ROWS else x
    model = MiniBatchKMeans(groups, random_state=seed, n_init=3, batch_size=4096).fit(fit)
    return model.predict(x).astype(np.int64)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if not m:
        return p
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def underperforming_groups(
    assignment: np.ndarray,
    correct: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    classes: list[str],
    paths: list[str],
) -> list[dict]:
    """The clusters whose accuracy is significantly and clearly below the rest's, worst first.

    Args:
        assignment: each photo's cluster.
        correct: whether each photo's out-of-sample top class is its label.
        labels, predicted: each photo's label and top class (for the group's description and examples).
    """
    from scipy.stats import fisher_exact  # heavy: scipy

    assignment = np.asarray(assignment, dtype=np.int64)
    correct = np.asarray(correct, dtype=bool)
    total, right = len(correct), int(correct.sum())
    tested = []
    for group in np.unique(assignment):
        members = assignment == group
        size = int(members.sum())
        if size < MIN_GROUP or size == total:
            continue
        inside = int(correct[members].sum())
        outside, others = right - inside, total - size
        _, p = fisher_exact([[inside, size - inside], [outside, others - outside]], alternative="less")
        tested.append((int(group), size, inside / size, outside / others, float(p)))
    if not tested:
        return []
    adjusted = holm(np.array([t[4] for t in tested]))
    out = []
    for (group, size, accuracy, rest, _), p in zip(tested, adjusted, strict=True):
        if p >= ALPHA or accuracy > rest - MIN_GAP:
            continue
        members = np.flatnonzero(assignment == group)
        counts = np.bincount(labels[members], minlength=len(classes))
        common = np.argsort(-counts, kind="stable")[:3]
        wrong_first = members[np.argsort(correct[members], kind="stable")][:EXAMPLES]
        out.append(
            {
                "group": group,
                "photos": size,
                "accuracy": accuracy,
                "rest_accuracy": rest,
                "score": accuracy / rest if rest > 0 else 1.0,
                "p_value": float(p),
                "classes": {classes[c]: int(counts[c]) for c in common if counts[c]},
                "examples": [
                    {
                        "path": paths[i],
                        "label": classes[labels[i]],
                        "predicted": classes[predicted[i]],
                        "correct": bool(correct[i]),
                    }
                    for i in wrong_first
                ],
            }
        )
    out.sort(key=lambda g: (g["score"], -g["photos"]))
    return out
