"""Out of distribution ("none of these"): a score per prediction saying how unlike the training photos an input is.

Four scores, all fitted on a run's own data and all kept, so the choice rests on evidence:

- **energy** (Liu et al. 2020): E(x) = -logsumexp(logits). Photos like the training ones get
  large logits for some class, so low energy; anything else, higher energy.
- **mahalanobis** (Lee et al. 2018): the distance of the pooled backbone features to the nearest
  class mean, under one shared covariance (Ledoit-Wolf shrinkage, in a PCA space of the features).
- **knn** (Sun et al. 2022, `knn_distance` beside it): the distance to the k-th nearest training photo's
  normalised features.
- **image statistics** (`image_stats` beside it): how far the picture's contrast, neighbouring pixels and flat
  areas are from the run's photos'.

and each feature score combined with the image statistics (flagged when either is far out). Each score is put in
units of its validation spread (0 at validation's median, 1 at its 95th percentile) and each threshold is the 95th
percentile of the validation split's scores, so 95 % of in-distribution photos pass. `ood_choice`
measures every method on the test split (share flagged, about 5 %) and on foreign images (noise, flat images,
drawings, other photos) and picks one on a set of foreign images apart from the one it reports on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
from scipy.special import logsumexp
from sklearn.covariance import LedoitWolf

from core.results.probabilities.image_stats import StatsCheck
from core.results.probabilities.knn_distance import KNNDistance

FEATURE_METHODS = ("energy", "mahalanobis", "knn")
STATS = "image statistics"
METHODS = (*FEATURE_METHODS, STATS, *(f"{m} + {STATS}" for m in FEATURE_METHODS))
IN_DISTRIBUTION_PASS = 0.95
# The threshold every figure of the check in use is counted at (Predict, Serve, the card's first line, the web page);
# the card's table compares the methods at another one, 5% false alarms on the test photos, and says so.
THRESHOLD_IN_USE = f"the threshold it uses (set so that {IN_DISTRIBUTION_PASS:.0%} of the validation photos pass)"
PCA_DIMENSIONS = 128  # Mahalanobis space; the first DRIFT_DIMENSIONS also serve input drift
DRIFT_DIMENSIONS = 64
WEAK_BELOW = 0.5  # a method that flags fewer foreign images than this is called weak, in words
METHOD_NAMES = {
    "energy": "the energy of the logits (how strongly its raw scores favour any class at all)",
    "mahalanobis": "the distance of the ResNet features to the nearest class",
    "knn": "the distance of the ResNet features to the nearest training photos",
    STATS: "how the picture looks (contrast, neighbouring pixels, flat areas) against the run's photos",
}
for _m in FEATURE_METHODS:  # either part far out flags the photo
    METHOD_NAMES[f"{_m} + {STATS}"] = f"{METHOD_NAMES[_m]}, plus a check of how the picture looks"
FOREIGN_NAMES = {"noise": "noise", "flat": "flat images", "drawings": "drawings", "photos": "other photos"}


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
        k = max(int(min(dimensions, features.shape[0] - 1, features.shape[1])), 1)
        return cls(mean.astype(np.float32), top_directions(features - mean, k).astype(np.float32))

    def __call__(self, features: np.ndarray, dimensions: int | None = None) -> np.ndarray:
        components = self.components if dimensions is None else self.components[:dimensions]
        return (np.asarray(features, dtype=np.float32) - self.mean) @ components.T


def top_directions(centred: np.ndarray, k: int) -> np.ndarray:
    """The `k` leading right singular vectors of `centred` (rows, largest first), as a full SVD gives them up to sign.

    From the eigenvectors of the smaller of its two Gram matrices, only the top `k` (LAPACK's subset driver): a full
    SVD of 3,000 x 2,048 features took 5-50 s on 2 cores (most of a warm rerun's time), this about 1-5 s.
    """
    rows, columns = centred.shape
    if rows >= columns:  # the D x D covariance: its eigenvectors are the directions themselves
        _, vectors = scipy.linalg.eigh(centred.T @ centred, subset_by_index=[columns - k, columns - 1])
        return vectors[:, ::-1].T
    values, vectors = scipy.linalg.eigh(centred @ centred.T, subset_by_index=[rows - k, rows - 1])
    values, vectors = values[::-1], vectors[:, ::-1]  # left singular vectors; map them to the right ones
    directions = (centred.T @ vectors) / np.sqrt(np.maximum(values, np.finfo(np.float64).tiny))
    return directions.T


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
    """The detectors of a run, their thresholds and the evidence for the method in use.

    `scales` (base score -> [validation median, validation 95th percentile]) puts every score in validation units;
    a detector without them (stored before knn and image statistics) uses energy's and Mahalanobis's raw scores."""

    method: str
    thresholds: dict[str, float]
    mahalanobis: Mahalanobis
    evidence: dict[str, Any] = field(default_factory=dict)
    knn: KNNDistance | None = None
    stats: StatsCheck | None = None
    scales: dict[str, list[float]] = field(default_factory=dict)

    def base_scores(
        self, logits: np.ndarray, features: np.ndarray, statistics: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Each detector's own score (higher: less like the training photos)."""
        out = {"energy": energy_score(logits), "mahalanobis": self.mahalanobis(features)}
        if self.knn is not None:
            out["knn"] = self.knn(features)
        if self.stats is not None and statistics is not None:
            out[STATS] = self.stats.scores(statistics)
        return out

    def scores(
        self, logits: np.ndarray, features: np.ndarray, statistics: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Every method's score: in validation units, the combinations the larger of their two parts."""
        base = self.base_scores(logits, features, statistics)
        if not self.scales:
            return base
        out = {m: (s - self.scales[m][0]) / self.scales[m][1] for m, s in base.items() if m in self.scales}
        if STATS in out:
            for m in FEATURE_METHODS:
                if m in out:
                    out[f"{m} + {STATS}"] = np.maximum(out[m], out[STATS])
        return out

    def score(
        self, logits: np.ndarray, features: np.ndarray, statistics: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(score, flagged) of the method in use, per row (without `statistics`, its feature part alone)."""
        scored = self.scores(logits, features, statistics)
        method = self.method if self.method in scored else self.method.split(" + ")[0]
        if method not in scored:  # the picture's statistics alone, and none given
            return np.zeros(len(logits)), np.zeros(len(logits), dtype=bool)
        score = scored[method]
        return score, score > self.thresholds[method]

    def why(self, statistics: np.ndarray | None) -> str | None:
        """For a flagged image: its most unusual picture statistic in words, where that part flags it."""
        if self.stats is None or statistics is None or STATS not in self.method or STATS not in self.scales:
            return None
        median, spread = self.scales[STATS]
        if (float(self.stats.scores(np.asarray(statistics)[None])[0]) - median) / spread <= self.thresholds[STATS]:
            return None
        return self.stats.why(statistics)

    @property
    def false_alarms(self) -> float | None:
        """The share of the run's own test photos the method in use flags (None: not measured)."""
        return self.evidence.get(self.method, {}).get("test_flagged")

    def flag_words(self) -> str:
        """Beside a flag: how often the check wrongly flags the run's own photos, so a real photo can trip it."""
        rate = self.false_alarms
        if rate is None:
            return "how often this check wrongly flags the run's own photos was not measured"
        return (
            f"this check also flags {rate:.0%} of the run's own test photos, so a photo of a known class can trip it"
            if rate > 0
            else "this check flagged none of the run's own test photos"
        )

    def let_through_words(self) -> str | None:
        """Beside a photo the check did not flag: the share of other photos (of kinds the run does not know) it let
        through when tested, in words; None where that was not measured (walk 51: a rose got a one-class set)."""
        caught = self.evidence.get(self.method, {}).get("foreign_flagged", {}).get("photos")
        if caught is None:
            return None
        return (
            f"the check for photos of other kinds lets through about {1 - caught:.0%} of other photos it was tested on"
        )

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
        if others and "selection_caught" in chosen:  # picked on a set of foreign images apart from the reported one
            other = max(others, key=lambda m: self.evidence[m].get("selection_caught") or 0.0)
            picked = (
                f"; picked over {len(others)} other ways on another set of such images, where it caught "
                f"{chosen['selection_caught']:.0%} and the next best ({METHOD_NAMES[other]}) "
                f"{self.evidence[other]['selection_caught']:.0%}"
            )
        elif others:
            other = max(others, key=lambda m: self.evidence[m]["auroc_test_vs_foreign"])
            ours, theirs = chosen["auroc_test_vs_foreign"], self.evidence[other]["auroc_test_vs_foreign"]
            how = "better" if round(ours, 2) > round(theirs, 2) else "as well"
            picked = (
                f", picked over {METHOD_NAMES[other]}: it tells the test photos from those images {how} (AUROC "
                f"{ours:.2f} against {theirs:.2f}; 1.00 is perfect, 0.50 a coin toss)"
            )
        text = (
            f"At {THRESHOLD_IN_USE} it caught {chosen['foreign_flagged_all']:.0%} of images from elsewhere that it "
            f"was tried on ({kinds}), and wrongly flags {chosen['test_flagged']:.0%} of the run's test photos (its "
            f"false alarms). How: {name}{picked}."
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
