"""The embedding map: PCA and t-SNE of the stored features, cached in the run; nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from core.results.evaluation import embedding
from core.runs.analysis import RunAnalysis, SplitArrays

pytestmark = pytest.mark.backend_agnostic


def _analysis(n: int = 60) -> RunAnalysis:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    centres = rng.normal(0, 5, size=(3, 2048))
    parts = []
    for split in ("val", "test"):
        feats = (centres[labels] + rng.normal(0, 1, size=(n, 2048))).astype(np.float16)
        logits = rng.normal(size=(n, 3)).astype(np.float32)
        parts.append(SplitArrays(logits, feats, labels, [f"{split}/{i}.png" for i in range(n)], np.arange(n)))
    return RunAnalysis(["a", "b", "c"], *parts)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_maps_separate_the_clusters_and_are_cached_with_their_image_keys(tmp_path, method):
    analysis = _analysis()
    analysis.save(tmp_path)
    points = embedding.run_map(tmp_path, method)
    assert points.xy.shape == (120, 2) and points.keys[0] == "val:0" and points.keys[-1] == "test:59"
    labels = np.concatenate([analysis.val.labels, analysis.test.labels])
    centroids = np.stack([points.xy[labels == k].mean(axis=0) for k in range(3)])
    spread = max(points.xy[labels == k].std(axis=0).max() for k in range(3))
    gaps = [np.linalg.norm(centroids[i] - centroids[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread
    again = embedding.load_map(tmp_path, method)
    assert np.array_equal(again.xy, points.xy) and again.split == points.split
    other = "tsne" if method == "pca" else "pca"
    assert embedding.load_map(tmp_path, other) is None  # each method computed on its own, kept beside the other
    embedding.run_map(tmp_path, other)
    assert embedding.load_map(tmp_path, method) is not None


def test_nearest_neighbours_by_cosine_similarity():
    pool = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    rows, similarity = embedding.nearest(np.array([2.0, 0.1]), pool, k=3)
    assert rows.tolist() == [0, 2, 1]
    assert similarity[0] == pytest.approx(2 / np.hypot(2, 0.1))


def test_the_map_table_names_each_point_by_its_image_and_what_the_model_said():
    analysis = _analysis(6)
    points = embedding.compute_map(analysis, "pca")
    frame = embedding.map_frame(analysis, points)
    assert frame["key"].tolist() == points.keys
    row = frame.set_index("key").loc["test:4"]
    logits = analysis.test.logits[4]
    assert row["path"] == "test/4.png" and row["given"] == "abc"[analysis.test.labels[4]]
    assert row["predicted"] == "abc"[int(logits.argmax())]
    assert row["correct"] == (int(logits.argmax()) == analysis.test.labels[4])
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert row["confidence"] == pytest.approx(p.max(), rel=1e-5)
    hotter = embedding.map_frame(analysis, points, temperature=3.0).set_index("key").loc["test:4"]
    assert hotter["confidence"] < row["confidence"] and hotter["predicted"] == row["predicted"]
    assert np.array_equal(embedding.features_of(analysis, "val:2"), analysis.val.features[2].astype(np.float32))
    for bad in ("test:6", "train:0", "test:x"):
        with pytest.raises(KeyError):
            embedding.features_of(analysis, bad)


def test_beyond_the_limit_t_sne_maps_a_seeded_sample_and_pca_every_photo(tmp_path, monkeypatch):
    monkeypatch.setattr(embedding, "TSNE_MAX_POINTS", 50)
    analysis = _analysis()
    analysis.save(tmp_path)
    tsne = embedding.run_map(tmp_path, "tsne")
    assert len(tsne.xy) == 50 and len(set(tsne.keys)) == 50
    assert embedding.tsne_sample(120, limit=50).tolist() == sorted(embedding.tsne_sample(120, limit=50).tolist())
    assert len(embedding.run_map(tmp_path, "pca").xy) == 120
    frame = embedding.map_frame(analysis, tsne)
    assert len(frame) == 50 and set(frame["key"]) == set(tsne.keys)
