"""Out-of-distribution by the distance to the k-th nearest training photo in normalised feature space (Sun, Ming, Zhu
& Li 2022, "Out-of-distribution detection with deep nearest neighbors").

Each pooled feature vector is scaled to unit length; an input's score is its Euclidean distance to its k-th nearest
neighbour among the (normalised) features of a sample of the run's training photos. No class means, no covariance:
it assumes nothing about the shape of the classes. The paper takes k as about 0.1% of the training photos (k = 50 of
CIFAR-10's 50,000; k = 1,000 of ImageNet's 1.28 million); Flora does the same on its sample, at least 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

K_SHARE = 0.001
CHUNK = 512  # queries at a time against the bank


def normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


@dataclass
class KNNDistance:
    """Normalised training features (the bank) and k."""

    bank: np.ndarray  # (M, D) float32, unit rows
    k: int

    @classmethod
    def fit(cls, train_features: np.ndarray) -> KNNDistance:
        bank = normalised(train_features)
        return cls(bank, int(max(1, round(K_SHARE * len(bank)))))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(N,) distance of each input to its k-th nearest training photo (0-2; higher: less like them)."""
        queries = normalised(features)
        if not len(queries) or not len(self.bank):
            return np.full(len(queries), np.inf)
        k = min(self.k, len(self.bank))
        out = np.empty(len(queries))
        for start in range(0, len(queries), CHUNK):
            similarity = queries[start : start + CHUNK] @ self.bank.T  # unit vectors: |a - b|^2 = 2 - 2 a.b
            kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1]
            out[start : start + CHUNK] = np.sqrt(np.maximum(2.0 - 2.0 * kth, 0.0))
        return out
