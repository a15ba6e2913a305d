"""Grad-CAM: the same map on TensorFlow and JAX, gradients that match finite differences, a pointing
game on photos whose class is a coloured patch, no NaN from a flat map, and signed contrast maps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, copy_run

GRID = 8  # the small split model's feature map is 8 x 8 on 32 px photos


def tiny_split(seed: int = 0, dtype: str = "float32", classes: int = 3):
    """A small conv net split like Flora's: photo -> feature map (8 x 8 x 16), and map -> GAP -> logits."""
    import keras

    keras.utils.set_random_seed(seed)
    image = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0, dtype=dtype)(image)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", dtype=dtype)(x)
    x = keras.layers.MaxPooling2D(dtype=dtype)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", dtype=dtype)(x)
    x = keras.layers.MaxPooling2D(dtype=dtype)(x)
    features = keras.Model(image, x)
    grid = keras.Input((GRID, GRID, 16), dtype=dtype)
    pooled = keras.layers.GlobalAveragePooling2D(dtype=dtype)(grid)
    hidden = keras.layers.Dense(12, activation="relu", dtype=dtype)(pooled)
    logits = keras.layers.Dense(classes, dtype=dtype)(hidden)
    return features, keras.Model(grid, logits)


def tiny_maps(weights: list[np.ndarray] | None, images: np.ndarray, target: tuple[int, int | None]):
    """Grad-CAM maps of `target` with the tiny model (given weights, else seeded ones)."""
    from core.results.evaluation.explain import Target, grad_cam, logit_gradients

    features, head = tiny_split()
    if weights is not None:
        features.set_weights(weights[: len(features.weights)])
        head.set_weights(weights[len(features.weights) :])
    feature_map = np.asarray(features.predict_on_batch(images))
    w = np.stack([Target(*target).weights(3)] * len(images))
    grads, scores = logit_gradients(head, feature_map, w)
    return grad_cam(feature_map, grads), scores


@pytest.mark.slow
def test_tensorflow_and_jax_give_the_same_map(tmp_path):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("compares TensorFlow (this process) with JAX (a subprocess)")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(3, 32, 32, 3)).astype("float32")
    features, head = tiny_split()
    weights = [np.asarray(w) for w in features.get_weights() + head.get_weights()]
    np.savez(tmp_path / "w.npz", *weights, images=images)
    ours, _ = tiny_maps(weights, images, (1, None))
    contrast, _ = tiny_maps(weights, images, (1, 2))
    code = (
        "import json, numpy as np\n"
        "from tests.results.evaluation.test_explain import tiny_maps\n"
        f"d = np.load({str(tmp_path / 'w.npz')!r})\n"
        "w = [d[f'arr_{i}'] for i in range(len(d.files) - 1)]\n"
        "a, _ = tiny_maps(w, d['images'], (1, None))\n"
        "b, _ = tiny_maps(w, d['images'], (1, 2))\n"
        "print(json.dumps([a.tolist(), b.tolist()]))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    jax_map, jax_contrast = (np.array(m) for m in json.loads(out.stdout.strip().splitlines()[-1]))
    scale = np.abs(ours).max()
    assert np.abs(jax_map - ours).max() <= 1e-4 * max(1.0, scale)
    assert np.abs(jax_contrast - contrast).max() <= 1e-4 * max(1.0, np.abs(contrast).max())


@pytest.mark.backend_agnostic
def test_the_gradient_agrees_with_finite_differences():
    from core.results.evaluation.explain import Target, logit_gradients

    _features, head = tiny_split(seed=3, dtype="float64")
    rng = np.random.default_rng(1)
    feature_map = np.abs(rng.normal(size=(1, GRID, GRID, 16)))
    w = Target(2, 0).weights(3)[None].astype(np.float64)
    grads, score = logit_gradients(head, feature_map, w)

    def f(a):
        import keras

        return float((keras.ops.convert_to_numpy(head(a, training=False)) * w).sum())

    assert score[0] == pytest.approx(f(feature_map))
    import keras

    # JAX computes in float32 unless x64 is switched on for the whole process: there a step of 1e-6 is lost
    # in rounding, so it takes a larger step and a looser tolerance (the head is piecewise linear, so the
    # central difference stays exact unless the step crosses a ReLU's kink, which 1e-2 / 64 per pooled value does not)
    exact = keras.ops.convert_to_numpy(head(feature_map, training=False)).dtype == np.float64
    eps, rel, abs_ = (1e-6, 1e-5, 1e-8) if exact else (1e-2, 1e-2, 1e-5)
    for index in [(0, 0, 0, 0), (0, 3, 5, 7), (0, 7, 7, 15), (0, 2, 6, 1)]:
        up, down = feature_map.copy(), feature_map.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (f(up) - f(down)) / (2 * eps)
        assert grads[index] == pytest.approx(numeric, rel=rel, abs=abs_)
        assert abs(numeric) > 10 * abs_  # a gradient of zero cannot pass


@pytest.mark.backend_agnostic
def test_swapping_the_contrast_classes_flips_the_sign():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, size=(2, 32, 32, 3)).astype("float32")
    ab, score_ab = tiny_maps(None, images, (0, 2))
    ba, score_ba = tiny_maps(None, images, (2, 0))
    assert np.allclose(ab, -ba, atol=1e-6) and np.allclose(score_ab, -score_ba, atol=1e-5)
    assert np.abs(ab).max() > 0


@pytest.mark.backend_agnostic
def test_a_flat_map_gives_zeros_not_nan():
    from core.results.evaluation.explain import Heatmap, Target, grad_cam, normalise, overlay

    flat = np.zeros((1, 2, 2, 4))
    cam = grad_cam(flat, np.ones_like(flat))
    for signed in (False, True):
        values = normalise(cam[0], signed)
        assert np.isfinite(values).all() and not values.any()
    negative = normalise(np.full((2, 2), -3.0), signed=False)  # no evidence for the class anywhere
    assert np.isfinite(negative).all() and not negative.any()
    assert np.isfinite(normalise(np.full((2, 2), 5.0), signed=False)).all()
    photo = np.full((16, 16, 3), 100, dtype=np.uint8)
    assert (overlay(photo, Heatmap(Target(0), np.zeros((2, 2), np.float32), 0.0).values) == photo).all()


def _patch_photos(n: int, rng):
    """Grey noise photos with one 12 x 12 patch: red (class 0), green (1) or blue (2) decides the class."""
    colours = np.array([[230, 30, 30], [30, 200, 30], [30, 30, 230]])
    images = rng.normal(128, 30, size=(n, 32, 32, 3)).clip(0, 255)
    labels = rng.integers(0, 3, size=n)
    corners = rng.integers(0, 32 - 12, size=(n, 2))
    for i, (y, x) in enumerate(corners):
        images[i, y : y + 12, x : x + 12] = colours[labels[i]] + rng.normal(0, 10, size=(12, 12, 3))
    return images.astype("float32"), labels, corners


def _pointing_game(seed: int, x, y, test_x, test_y, corners) -> tuple[float, float]:
    """Train the small split model from `seed` on patch photos; its test accuracy and the share of Grad-CAM peaks
    that fall inside the patch (a 2-pixel margin: the map is upsampled 4x)."""
    import keras

    from core.results.evaluation.explain import Target, grad_cam, logit_gradients, upsample

    features, head = tiny_split(seed=seed)
    image = keras.Input((32, 32, 3))
    model = keras.Model(image, head(features(image)))
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    accuracy = float(model.evaluate(test_x, test_y, verbose=0)[1])
    feature_map = np.asarray(features.predict_on_batch(test_x))
    weights = np.stack([Target(int(c)).weights(3) for c in test_y])
    grads, _ = logit_gradients(head, feature_map, weights)
    peaks = [
        np.unravel_index(np.argmax(upsample(np.maximum(cam, 0), 32)), (32, 32)) for cam in grad_cam(feature_map, grads)
    ]
    return accuracy, _inside(peaks, corners)


def _inside(points, corners) -> float:
    return float(
        np.mean(
            [
                top - 2 <= py < top + 14 and left - 2 <= px < left + 14
                for (py, px), (top, left) in zip(points, corners, strict=True)
            ]
        )
    )


@pytest.mark.backend_agnostic
def test_pointing_game_the_peak_falls_inside_the_patch():
    """Grad-CAM points at the patch on models that learned it, far above a random point (~0.22). One training run's
    map hinges on the CPU's floating point (one seed gave 47 of 60 on an AMD EPYC under JAX, 60 of 60 on an Intel
    Xeon), so the claim is over several seeds: the median model points right >= 90% of the time, none below 60%."""
    rng = np.random.default_rng(0)
    x, y, _ = _patch_photos(600, rng)
    test_x, test_y, corners = _patch_photos(60, np.random.default_rng(1))
    chance = _inside(np.random.default_rng(2).integers(0, 32, size=(len(corners), 2)), corners)
    assert chance < 0.4
    rates: list[float] = []
    for seed in range(6):  # a seed whose model did not learn the patch (about 1 in 20) says nothing of Grad-CAM
        accuracy, rate = _pointing_game(seed, x, y, test_x, test_y, corners)
        if accuracy >= 0.9:
            rates.append(rate)
        if len(rates) == 3:
            break
    assert len(rates) == 3, f"fewer than 3 of 6 seeds learned the patch: {rates}"
    assert np.median(rates) >= 0.9 and min(rates) >= 0.6, (rates, chance)


def test_a_runs_explainer_matches_its_logits_and_caches_maps(trained_run, tmp_path):
    from core.data.imaging import ImageError
    from core.network.graph import features_and_logits_model
    from core.network.model import load_classifier
    from core.results.evaluation.explain import Explainer, Target
    from core.runs.store import RunStore

    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), tmp_path / trained_run["run_id"])
    run = RunStore(tmp_path).get(trained_run["run_id"])  # a copy: other tests cache maps in the shared run
    shutil.rmtree(run.directory / "heatmaps", ignore_errors=True)
    explainer = Explainer(run)
    photo = next(iter(sorted(trained_run["dataset"].rglob("*.png"))))
    image = explainer.load(photo)
    _, logits = features_and_logits_model(load_classifier(run.path("model.keras"))).predict_on_batch(
        image[None].astype("float32")
    )
    assert np.allclose(explainer.logits(image), np.asarray(logits)[0], atol=1e-4)
    targets = [Target(0), Target(1), Target(0, 1), Target(1, 0)]
    maps = explainer.explain(image, targets)
    assert [m.target for m in maps] == targets
    assert np.allclose(maps[2].cam, -maps[3].cam, atol=1e-6)
    assert maps[0].score == pytest.approx(float(np.asarray(logits)[0][0]), abs=1e-4)
    cached = sorted(p.name for p in explainer.cache_dir.iterdir())
    assert len(cached) == 4
    again = explainer.explain(image, targets[:1])  # read back from the run folder
    assert np.array_equal(again[0].cam, maps[0].cam)
    with pytest.raises(ImageError):
        explainer.load(b"not an image")


@pytest.mark.backend_agnostic
def test_a_coarse_class_map_is_drawn_over_its_own_range_in_blocks():
    from core.results.evaluation.explain import normalise, overlay, upsample

    coarse = np.array([[1.0, 2.0], [1.5, 1.8]])  # every cell argued a little for the class
    values = normalise(coarse, signed=False)
    assert values.min() == 0.0 and values.max() == 1.0 and values[1, 0] == pytest.approx(0.5)
    big = upsample(values, 64)
    assert sorted(np.unique(big).tolist()) == sorted(values.ravel().tolist())  # four blocks, nothing blurred
    assert (big[:32, :32] == values[0, 0]).all() and (big[32:, 32:] == values[1, 1]).all()
    fine = upsample(np.random.default_rng(0).random((8, 8)), 64)
    assert len(np.unique(fine)) > 64  # from 4 cells a side up, smoothly
    photo = np.full((64, 64, 3), 120, dtype=np.uint8)
    painted = overlay(photo, values).astype(int)
    # dark where the area counted least, bright where it counted most: readable on any photo
    assert painted[:32, :32].mean() < 60 and painted[:32, 32:].mean() > 180
    assert painted[32:, :32].mean() < painted[32:, 32:].mean() < painted[:32, 32:].mean()
    assert (overlay(photo, np.zeros((2, 2), np.float32)) == photo).all()  # nothing argued for it: the photo
    signed = normalise(np.array([[2.0, -1.0], [0.0, 1.0]]), signed=True)
    assert signed.tolist() == [[1.0, -0.5], [0.0, 0.5]]  # a contrast keeps its zero


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    ("grid", "size", "says"),
    [
        ((7, 7), 224, ["7×7 grid at 224 px", "32×32 px", "coarse regions"]),
        ((2, 2), 64, ["2×2 grid at 64 px", "32×32 px", "which part of the photo counted most"]),
        ((1, 1), 32, ["1×1 grid at 32 px", "one cell can say nothing about where"]),
    ],
)
def test_the_grid_note_says_the_real_grid_at_the_runs_size(grid, size, says):
    from core.results.evaluation.explain import grid_note

    note = grid_note(grid, size)
    assert all(part in note for part in says), note


def test_a_small_run_offers_the_finer_block_and_its_gradient_is_right(trained_run):

    from core.results.evaluation.explain import Explainer, Target

    run = trained_run["store"].get(trained_run["run_id"])
    assert run.train_config.image_size == 32
    explainer = Explainer(run)
    last, before = explainer.layers
    assert explainer.grid(last) == (1, 1) and explainer.grid(before) == (2, 2)
    assert explainer.default_layer == before
    assert "2×2 grid at 32 px" in explainer.grid_note(before) and "block before" in explainer.grid_note(before)
    image = explainer.load(next(iter(sorted(trained_run["dataset"].rglob("*.png")))))
    assert np.allclose(explainer.logits(image, before), explainer.logits(image), atol=1e-4)  # the same logits
    [heatmap] = explainer.explain(image, [Target(1, 0)], layer=before)
    assert heatmap.cam.shape == (2, 2)
    assert heatmap.score == pytest.approx(float(explainer.logits(image)[1] - explainer.logits(image)[0]), abs=1e-4)

    features, head = explainer._split(before)
    feature_map = np.asarray(features.predict_on_batch(image[None].astype("float32")), dtype=np.float32)
    _check_gradient(head, feature_map, Target(1, 0).weights(len(run.classes))[None], smallest=1e-3)


def _check_gradient(head, feature_map: np.ndarray, w: np.ndarray, smallest: float) -> None:
    """The 4 largest entries of the head's gradient against central differences (float32): the median of steps of
    3e-2, 1e-2 and 3e-3, within 3%. One step alone is off by up to 3% on some CPUs (float32 rounding through three
    residual blocks: 0.00364 at 1e-2 against 0.00353 at 3e-2 and 0.00351 at 3e-3 for a gradient of 0.00354); a
    wrong path for the gradient is off by far more."""
    import keras

    from core.results.evaluation.explain import logit_gradients

    grads, _ = logit_gradients(head, feature_map, w)

    def f(a):
        return float((keras.ops.convert_to_numpy(head(a, training=False)) * w).sum())

    def central(where, eps: float) -> float:
        up, down = feature_map.copy(), feature_map.copy()
        up[where] += eps
        down[where] -= eps
        return (f(up) - f(down)) / (2 * eps)

    for index in np.argsort(-np.abs(grads).ravel())[:4]:
        where = np.unravel_index(index, grads.shape)
        estimate = float(np.median([central(where, eps) for eps in (3e-2, 1e-2, 3e-3)]))
        assert grads[where] == pytest.approx(estimate, rel=3e-2, abs=smallest / 10)
        assert abs(grads[where]) > smallest  # a gradient of zero cannot pass


def test_the_gradient_through_resnet50s_last_stage_agrees_with_finite_differences(resnet50):
    """The finer map's gradient passes through ResNet-50's conv5 stage (residual adds, frozen BatchNorm)."""
    import keras

    from core.network.model import build_classifier
    from core.results.evaluation.explain import Target, split_classifier

    keras.utils.set_random_seed(0)
    classifier = build_classifier(3, 64, "none", head=(8,), seed=0, backbone=resnet50)
    features, head = split_classifier(classifier, "conv4_block6_out")
    image = np.random.default_rng(0).uniform(0, 255, size=(1, 64, 64, 3)).astype("float32")
    feature_map = np.asarray(features.predict_on_batch(image), dtype=np.float32)
    assert feature_map.shape == (1, 4, 4, 1024)
    _check_gradient(head, feature_map, Target(2, 0).weights(3)[None], smallest=1e-4)
