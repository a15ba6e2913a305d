"""Out of distribution: a score per prediction saying how unlike the training photos an input is.

Two detectors, both fitted on a run's own data and both kept, so the choice rests on evidence:

- **energy** (Liu et al. 2020): E(x) = -logsumexp(logits). Photos like the training ones get
  large logits for some class, so low energy; anything else, higher energy.
- **mahalanobis** (Lee et al. 2018): the distance of the pooled backbone features to the nearest
  class mean, under one shared covariance (Ledoit-Wolf shrinkage, in a PCA space of the features).

Each threshold is the 95th percentile of the validation split's scores, so 95 % of in-distribution
photos pass. `fit` measures both detectors on the test split (share flagged, should be about 5 %)
and on foreign images (noise, drawings, other photos: share flagged, the higher the better) and
picks the one with the larger AUROC of test vs foreign.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import logsumexp
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

METHODS = ("energy", "mahalanobis")
IN_DISTRIBUTION_PASS = 0.95
PCA_DIMENSIONS = 128  # Mahalanobis space; the first DRIFT_DIMENSIONS also serve input drift
DRIFT_DIMENSIONS = 64
WEAK_BELOW = 0.5  # a method that flags fewer foreign images than this is called weak, in words
METHOD_NAMES = {
    "energy": "the energy of the logits (how strongly its raw scores favour any class at all)",
    "mahalanobis": "the distance of the ResNet features to the nearest class",
}
FOREIGN_NAMES = {"noise": "noise", "drawings": "drawings", "photos": "other photos"}


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """-T * logsumexp(logits / T) per row: higher means less like the training data."""
    logits = np.asarray(logits, dtype=np.float64)
    return -temperature * logsumexp(logits / temperature, axis=-1)


@dataclass
class Projection:
    """A PCA of pooled features: the mean and the top principal directions (rows)."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (K, D)

    @classmethod
    def fit(cls, features: np.ndarray, dimensions: int) -> Projection:
        features = np.asarray(features, dtype=np.float64)
        mean = features.mean(axis=0)
        k = int(min(dimensions, features.shape[0] - 1, features.shape[1]))
        _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
        return cls(mean.astype(np.float32), vt[: max(k, 1)].astype(np.float32))

    def __call__(self, features: np.ndarray, dimensions: int | None = None) -> np.ndarray:
        components = self.components if dimensions is None else self.components[:dimensions]
        return (np.asarray(features, dtype=np.float32) - self.mean) @ components.T


@dataclass
class Mahalanobis:
    """Class means and a shared precision matrix in a PCA space of the pooled features."""

    projection: Projection
    means: np.ndarray  # (C, K)
    precision: np.ndarray  # (K, K)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, projection: Projection) -> Mahalanobis:
        z = projection(features).astype(np.float64)
        labels = np.asarray(labels)
        classes = np.unique(labels)
        means = np.zeros((int(labels.max()) + 1, z.shape[1]))
        centred = np.empty_like(z)
        for c in classes:
            rows = labels == c
            means[c] = z[rows].mean(axis=0)
            centred[rows] = z[rows] - means[c]
        precision = LedoitWolf(assume_centered=True).fit(centred).precision_
        present = np.zeros(len(means), dtype=bool)
        present[classes] = True
        means[~present] = np.inf  # a class without training rows is never the nearest
        return cls(projection, means.astype(np.float32), precision.astype(np.float32))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Each row's squared Mahalanobis distance to its nearest class mean.

        Expanded as z'Pz - 2 z'P m + m'P m, so all classes are two matrix products (BLAS) instead of a loop of
        einsums over the classes: at 1,000 classes the loop made fitting a reference take 20-35 s.
        """
        z = np.asarray(self.projection(features), dtype=np.float64)
        present = np.all(np.isfinite(self.means), axis=1)
        if not len(z) or not present.any():
            return np.full(len(z), np.inf)
        means = self.means[present].astype(np.float64)
        precision = self.precision.astype(np.float64)
        zp = z @ precision
        own = np.einsum("ij,ij->i", zp, z)
        theirs = np.einsum("ij,ij->i", means @ precision, means)
        distances = own[:, None] - 2.0 * (zp @ means.T) + theirs[None, :]
        return np.maximum(distances.min(axis=1), 0.0)  # rounding can take a zero distance just below 0


@dataclass
class OODDetector:
    """Both detectors of a run, their thresholds and the evidence for the method in use."""

    method: str
    thresholds: dict[str, float]
    mahalanobis: Mahalanobis
    evidence: dict[str, Any] = field(default_factory=dict)

    def scores(self, logits: np.ndarray, features: np.ndarray) -> dict[str, np.ndarray]:
        return {"energy": energy_score(logits), "mahalanobis": self.mahalanobis(features)}

    def score(self, logits: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score, flagged) of the method in use, per row."""
        score = energy_score(logits) if self.method == "energy" else self.mahalanobis(features)
        return score, score > self.thresholds[self.method]

    @property
    def weak(self) -> bool:
        """Whether the method in use misses most foreign images (or was never measured on any)."""
        caught = self.evidence.get(self.method, {}).get("foreign_flagged_all")
        return caught is None or caught < WEAK_BELOW

    def summary(self) -> str:
        """How far to trust the flag, in words, from the evidence the method was picked on."""
        chosen = self.evidence.get(self.method)
        name = METHOD_NAMES[self.method]
        if not chosen or chosen.get("foreign_flagged_all") is None:
            return f"It uses {name}; how often it catches images from elsewhere was not measured."
        kinds = ", ".join(f"{FOREIGN_NAMES.get(k, k)} {v:.0%}" for k, v in chosen["foreign_flagged"].items())
        others = [m for m in METHODS if m != self.method and self.evidence.get(m, {}).get("auroc_test_vs_foreign")]
        picked = ""
        if others:
            other = others[0]
            ours, theirs = chosen["auroc_test_vs_foreign"], self.evidence[other]["auroc_test_vs_foreign"]
            how = "better" if round(ours, 2) > round(theirs, 2) else "as well"
            picked = (
                f", picked over {METHOD_NAMES[other]}: it tells the test photos from those images {how} (AUROC "
                f"{ours:.2f} against {theirs:.2f}; 1.00 is perfect, 0.50 a coin toss)"
            )
        text = (
            f"It caught {chosen['foreign_flagged_all']:.0%} of images from elsewhere that it was tried on "
            f"({kinds}), and wrongly flags {chosen['test_flagged']:.0%} of the run's test photos. How: {name}"
            f"{picked}."
        )
        if self.weak:
            text += (
                " It lets most of those images through: an unflagged photo may still be something this model never saw."
            )
        return text


def threshold_for(scores: np.ndarray, pass_share: float = IN_DISTRIBUTION_PASS) -> float:
    """The score below which `pass_share` of in-distribution inputs fall."""
    # "higher": on a small validation split the threshold never falls between two photos and fails more than 5 %
    return float(np.quantile(np.asarray(scores, dtype=np.float64), pass_share, method="higher"))


def fit(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    foreign: dict[str, tuple[np.ndarray, np.ndarray]],
    projection: Projection,
) -> OODDetector:
    """Fit both detectors and pick one from the evidence.

    Args:
        train: (pooled features, labels) of training photos, for Mahalanobis's means and covariance.
        val: (logits, pooled features) of the validation split: the thresholds.
        test: (logits, pooled features) of the test split: the in-distribution rates.
        foreign: {kind: (logits, pooled features)} of foreign images: the out-of-distribution rates.
        projection: the PCA of the pooled features (fitted on training photos).
    """
    mahalanobis = Mahalanobis.fit(train[0], train[1], projection)
    detector = OODDetector("energy", {}, mahalanobis)
    val_scores = detector.scores(*val)
    detector.thresholds = {m: threshold_for(val_scores[m]) for m in METHODS}
    test_scores = detector.scores(*test)
    foreign_scores = {kind: detector.scores(*pair) for kind, pair in foreign.items()}
    evidence: dict[str, Any] = {}
    for method in METHODS:
        threshold = detector.thresholds[method]
        rates = {kind: float(np.mean(s[method] > threshold)) for kind, s in foreign_scores.items()}
        all_foreign = np.concatenate([s[method] for s in foreign_scores.values()]) if foreign_scores else np.array([])
        auroc = None
        if len(all_foreign) and len(test_scores[method]):
            truth = np.r_[np.zeros(len(test_scores[method])), np.ones(len(all_foreign))]
            auroc = float(roc_auc_score(truth, np.r_[test_scores[method], all_foreign]))
        evidence[method] = {
            "threshold": threshold,
            "val_flagged": float(np.mean(val_scores[method] > threshold)),
            "test_flagged": float(np.mean(test_scores[method] > threshold)),
            "foreign_flagged": rates,
            "foreign_flagged_all": float(np.mean(all_foreign > threshold)) if len(all_foreign) else None,
            "auroc_test_vs_foreign": auroc,
        }
    aurocs = {m: evidence[m]["auroc_test_vs_foreign"] or 0.0 for m in METHODS}
    detector.method = max(METHODS, key=lambda m: (aurocs[m], m == "energy"))  # a tie keeps the cheaper one
    detector.evidence = evidence
    return detector
