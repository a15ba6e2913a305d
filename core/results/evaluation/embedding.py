"""A 2-D map of the validation and test images from their stored pooled features, and their neighbours.

PCA is instant and computed on request; t-SNE (scikit-learn, PCA-initialised, seeded) takes seconds
to a minute, so it runs as a background task of the run (`core.results.tasks`) and is cached in the run
folder (embedding.npz). Points carry their image's key (split and row), never a plot's point index.
"Photos like this" ranks training images by cosine similarity of their pooled features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from core.errors import NotFound
from core.fileio import atomic_path
from core.runs.analysis import RunAnalysis, softmax
from core.runs.files import run_files

METHODS = ("pca", "tsne")
TSNE_PCA_DIMS = 50  # t-SNE runs on the top principal components: the usual practice, and much faster
TSNE_MAX_POINTS = 20_000  # beyond this many photos, t-SNE maps a seeded sample of them (about 1.5 min on 2 cores)
SEED = 0


@dataclass
class MapPoints:
    """One row per image of the map: where it lies and which image it is."""

    xy: np.ndarray  # (N, 2)
    split: list[str]  # "val" | "test"
    row: np.ndarray  # row within that split of the run's analysis arrays

    @property
    def keys(self) -> list[str]:
        """Stable ids for plot customdata: 'test:17'."""
        return [f"{s}:{int(r)}" for s, r in zip(self.split, self.row, strict=True)]


def map_rows(
    analysis: RunAnalysis, splits: tuple[str, ...] = ("val", "test")
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The stacked features of `splits`, with each row's split and row number."""
    features, names, rows = [], [], []
    for name in splits:
        part = analysis.split(name)
        features.append(part.features.astype(np.float32))
        names += [name] * len(part.labels)
        rows.append(np.arange(len(part.labels)))
    return np.concatenate(features), names, np.concatenate(rows)


def pca_map(features: np.ndarray, seed: int = SEED) -> np.ndarray:
    from sklearn.decomposition import PCA

    features = np.asarray(features, dtype=np.float32)
    if len(features) < 2:
        return np.zeros((len(features), 2), dtype=np.float32)
    return PCA(n_components=2, random_state=seed).fit_transform(features).astype(np.float32)


def tsne_map(features: np.ndarray, seed: int = SEED) -> np.ndarray:
    """t-SNE of the features (first reduced to TSNE_PCA_DIMS principal components), PCA-initialised."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float32)
    n = len(features)
    if n < 5:
        return pca_map(features, seed)
    dims = min(TSNE_PCA_DIMS, n - 1, features.shape[1])
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(features)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity, learning_rate="auto")
    return tsne.fit_transform(reduced).astype(np.float32)


def compute_map(analysis: RunAnalysis, method: str, seed: int = SEED) -> MapPoints:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}. Received: method={method!r}")
    features, names, rows = map_rows(analysis)
    if method == "pca":
        return MapPoints(pca_map(features, seed), names, rows)
    chosen = tsne_sample(len(features), seed)
    xy = tsne_map(features[chosen], seed)
    return MapPoints(xy, [names[i] for i in chosen], rows[chosen])


def tsne_sample(n: int, seed: int = SEED, limit: int | None = None) -> np.ndarray:
    """The rows t-SNE maps: all of them up to `limit`, else a seeded random `limit` of them (in order).

    Barnes-Hut t-SNE grows as n log n and keeps every neighbour list in memory: 20,000 photos take about a
    minute and a half on two cores, 60,000 (the test and validation photos of 300k) would take many. The
    Explore page says when its t-SNE map shows a sample; PCA always maps every photo."""
    limit = TSNE_MAX_POINTS if limit is None else limit
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def load_map(run_dir: str | os.PathLike, method: str) -> MapPoints | None:
    """A map stored in the run folder (embedding.npz), or None when it was not computed yet."""
    path = run_files(run_dir).embedding
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        if f"{method}_xy" not in data.files:
            return None
        return MapPoints(data[f"{method}_xy"], data[f"{method}_split"].tolist(), data[f"{method}_row"])


def save_map(run_dir: str | os.PathLike, method: str, points: MapPoints) -> None:
    """Add (or replace) one method's map in embedding.npz, keeping the others."""
    path = run_files(run_dir).embedding
    arrays: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if not name.startswith(f"{method}_")}
    arrays |= {
        f"{method}_xy": points.xy.astype(np.float32),
        f"{method}_split": np.array(points.split, dtype=str),
        f"{method}_row": np.asarray(points.row, dtype=np.int64),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def run_map(run_dir: str | os.PathLike, method: str) -> MapPoints:
    """The run's map by `method`: read from the run folder, or computed now and stored."""
    stored = load_map(run_dir, method)
    if stored is not None:
        return stored
    points = compute_map(RunAnalysis.load(run_dir), method)
    save_map(run_dir, method, points)
    return points


def nearest(query: np.ndarray, pool: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows of `pool` most similar to `query` by cosine similarity: (rows, similarities)."""
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    pool = np.asarray(pool, dtype=np.float32)
    if not len(pool):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    norms = np.linalg.norm(pool, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
    similarity = pool @ query / np.maximum(norms, 1e-12)
    k = min(k, len(pool))
    top = np.argpartition(-similarity, k - 1)[:k]
    top = top[np.argsort(-similarity[top], kind="stable")]
    return top, similarity[top]


def map_frame(analysis: RunAnalysis, points: MapPoints, temperature: float | None = None):
    """One row per map point: its key, place, photo, given and predicted class, and the model's confidence.

    Columns: key ("test:17"), split, row, x, y, path (relative to the dataset folder), given,
    predicted, confidence (probability of the predicted class), p_given, correct. Probabilities are
    softmax(logits / temperature): the run's calibrated ones when a temperature is given.
    """
    import pandas as pd

    probabilities = {name: softmax(analysis.split(name).logits, temperature or 1.0) for name in set(points.split)}
    rows = []
    for (x, y), name, row in zip(points.xy, points.split, points.row, strict=True):
        part, p = analysis.split(name), probabilities[name][int(row)]
        label, predicted = int(part.labels[row]), int(p.argmax())
        rows.append(
            {
                "key": f"{name}:{int(row)}",
                "split": name,
                "row": int(row),
                "x": float(x),
                "y": float(y),
                "path": part.paths[row],
                "given": analysis.classes[label],
                "predicted": analysis.classes[predicted],
                "confidence": float(p[predicted]),
                "p_given": float(p[label]),
                "correct": predicted == label,
            }
        )
    return pd.DataFrame(rows)


def features_of(analysis: RunAnalysis, key: str) -> np.ndarray:
    """The pooled features of the image with map key `key` ("test:17"). Raises KeyError for a bad key."""
    name, _, row = key.partition(":")
    if name not in ("val", "test") or not row.isdigit() or int(row) >= len(analysis.split(name).labels):
        raise NotFound(f"no image {key!r} in this run's analysis")
    return analysis.split(name).features[int(row)].astype(np.float32)
