"""Grad-CAM for one label of a multi-label model: each label's map is its own logit's (the input of its sigmoid), so a
photo with two labels gets two maps pointing at two places; a run's explainer gives each label's logit and a map that
differs per label."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import copy_run
from tests.results.evaluation.test_explain import tiny_split

COLOURS = np.array([[230, 30, 30], [30, 200, 30], [30, 30, 230]])  # label 0 red, 1 green, 2 blue
QUADRANTS = [(0, 0), (0, 16), (16, 0), (16, 16)]


def _patches(n: int, rng):
    """Grey noise photos with a 12 x 12 patch of each label present (each label with chance 1/2), each patch in a
    quadrant of its own: (images, 0/1 targets (n, 3), corners (n, 3, 2), -1 for a label absent)."""
    images = rng.normal(128, 30, size=(n, 32, 32, 3)).clip(0, 255)
    targets = (rng.random((n, 3)) < 0.5).astype(np.float32)
    corners = np.full((n, 3, 2), -1)
    for i in range(n):
        quadrants = rng.permutation(4)
        for j in np.flatnonzero(targets[i]):
            qy, qx = QUADRANTS[quadrants[j]]
            y, x = qy + rng.integers(0, 5), qx + rng.integers(0, 5)
            images[i, y : y + 12, x : x + 12] = COLOURS[j] + rng.normal(0, 10, size=(12, 12, 3))
            corners[i, j] = (y, x)
    return images.astype("float32"), targets, corners


def _peak(cam: np.ndarray) -> tuple[int, int]:
    from core.results.evaluation.explain import upsample

    return np.unravel_index(np.argmax(upsample(np.maximum(cam, 0), 32)), (32, 32))


def _inside(point, corner) -> bool:
    (py, px), (top, left) = point, corner
    return top - 2 <= py < top + 14 and left - 2 <= px < left + 14


def _pointing_game(seed: int, x, y, test_x, test_y, corners) -> tuple[float, float, float]:
    """Train the small split model with a sigmoid per label from `seed`; its per-label test accuracy, the share of
    (photo, label present) maps whose peak falls in that label's patch, and the share in another label's patch."""
    import keras

    from core.results.evaluation.explain import Target, grad_cam, logit_gradients

    features, head = tiny_split(seed=seed)
    image = keras.Input((32, 32, 3))
    model = keras.Model(image, head(features(image)))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    logits = np.asarray(model.predict_on_batch(test_x))
    accuracy = float(((logits > 0) == (test_y > 0)).mean())
    feature_map = np.asarray(features.predict_on_batch(test_x))
    own, other = [], []
    for j in range(3):  # label j's map on every photo that has it: e_j, the single-label path's class index
        rows = np.flatnonzero(test_y[:, j])
        grads, scores = logit_gradients(head, feature_map[rows], np.stack([Target(j).weights(3)] * len(rows)))
        assert np.allclose(scores, logits[rows, j], atol=1e-3)  # the explained score is label j's logit
        for row, cam in zip(rows, grad_cam(feature_map[rows], grads), strict=True):
            peak = _peak(cam)
            own.append(_inside(peak, corners[row, j]))
            others = [k for k in np.flatnonzero(test_y[row]) if k != j]
            if others:
                other.append(any(_inside(peak, corners[row, k]) for k in others))
    return accuracy, float(np.mean(own)), float(np.mean(other))


@pytest.mark.backend_agnostic
def test_each_labels_map_points_at_that_labels_patch():
    """On photos with up to three coloured patches, label j's Grad-CAM peak falls in label j's patch, not in the
    other labels' patches of the same photo: the map is of that label, not of the photo's labels together. Over
    seeds, as the single-label pointing game (one model's map hinges on the CPU's floating point)."""
    x, y, _ = _patches(600, np.random.default_rng(0))
    test_x, test_y, corners = _patches(60, np.random.default_rng(1))
    results = []
    for seed in range(6):
        accuracy, own, other = _pointing_game(seed, x, y, test_x, test_y, corners)
        if accuracy >= 0.9:  # a seed whose model did not learn the patches says nothing of Grad-CAM
            results.append((own, other))
        if len(results) == 3:
            break
    assert len(results) == 3, f"fewer than 3 of 6 seeds learned the patches: {results}"
    own, other = np.array(results).T
    assert np.median(own) >= 0.85 and min(own) >= 0.6, results
    assert np.median(other) <= 0.25, results  # another label's patch: where that label's map points, not this one's


def test_a_multilabel_runs_explainer_explains_each_labels_logit(multilabel_run, tmp_path):
    from core.network.model import load_classifier
    from core.results.evaluation.explain import Explainer, Target, label_probability
    from core.results.evaluation.multilabel import MultilabelEvaluation
    from core.runs.store import RunStore

    copy_run(multilabel_run["store"].run_dir(multilabel_run["run_id"]), tmp_path / multilabel_run["run_id"])
    run = RunStore(tmp_path).get(multilabel_run["run_id"])
    shutil.rmtree(run.directory / "heatmaps", ignore_errors=True)
    explainer = Explainer(run)
    assert explainer.multilabel and explainer.classes == run.classes
    evaluation = MultilabelEvaluation.of_run(run.directory)
    index = int(np.argmax(evaluation.truth.sum(axis=1)))  # a photo with the most labels
    image = explainer.load(multilabel_run["dataset"] / evaluation.paths[index])
    sigmoids = np.asarray(load_classifier(run.path("model.keras")).predict_on_batch(image[None].astype("float32")))[0]
    labels = len(run.classes)
    maps = explainer.explain(image, [Target(j) for j in range(labels)])
    for j, heatmap in enumerate(maps):
        assert label_probability(heatmap.score) == pytest.approx(float(sigmoids[j]), abs=1e-4)
        assert label_probability(heatmap.score) == pytest.approx(float(evaluation.probabilities[index, j]), abs=0.02)
    assert np.allclose(explainer.logits(image), [m.score for m in maps], atol=1e-4)
    # a map per label, not one map of the photo: no two labels' maps alike
    for a in range(labels):
        for b in range(a + 1, labels):
            assert not np.allclose(maps[a].cam, maps[b].cam, atol=1e-6), (a, b)
    assert len(list(explainer.cache_dir.iterdir())) == labels
