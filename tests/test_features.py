"""The feature cache: rows land where they belong, stops keep their work, augmented views repeat."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.datasets import scan_dataset
from core.data.imaging import center_crop
from core.data.ingest import ingest
from core.network.model import backbone_of, build_classifier
from core.settings.config import AUGMENT_PRESETS
from core.train.features import ExtractionStopped, FeatureCache, build_extractor, weights_hash

SIZE = 32


@pytest.fixture(scope="module")
def extractor():
    return build_extractor(build_classifier(3, SIZE, "none", head=(8,), seed=0))


@pytest.fixture
def images(tiny_dataset, tmp_path):
    return ingest(scan_dataset(tiny_dataset), 36, tmp_path / "cache", workers=1)


@pytest.mark.backend_agnostic
def test_each_row_is_the_feature_of_its_own_image(extractor, images, tmp_path, monkeypatch):
    # Keras runs the pass here, as `direct` below does: which runtime the cache would pick is measured per machine
    # and per load (ONNX Runtime or OpenVINO agree within 1e-4, tests/runtimes), and 2 ULP of float16 is Keras's own
    monkeypatch.setenv("FLORA_RUNTIME", "keras")
    store = FeatureCache(tmp_path, images, SIZE, "k")
    positions = np.array([5, 0, 33, 17, 2, 30, 9])  # out of order, not a whole batch
    features = store.get(extractor, positions, batch_size=4)
    direct = np.asarray(extractor.predict_on_batch(center_crop(images.read(positions), SIZE).astype("float32")))
    # stored as float16: the direct features within float16's rounding (a relative 2**-11) and the float32 sums a
    # batch of 4 adds in another order than a batch of 7 (which convolution a CPU's kernels pick, and over how many
    # threads, moves the last float32 bits). Counted in float16 ULP this failed at 3 (allowed 2) on one run of an AMD
    # EPYC: near zero one float16 ULP is 6e-8, below float32's noise there. A relative 1e-3 with an absolute 1e-5
    # holds on every CPU; a swapped row (below) is thousands of times further off.
    np.testing.assert_allclose(features.astype(np.float32), direct, rtol=1e-3, atol=1e-5)
    for i, j in ((0, 1), (2, 3), (4, 6)):  # and any two rows are far further apart: a swap cannot pass
        assert np.abs(features[i].astype(np.float32) - features[j].astype(np.float32)).max() > 0.05
    assert features.dtype == np.float16 and features.shape == (len(positions), 2048)


def test_a_stop_keeps_what_was_computed_and_the_rest_follows(extractor, images, tmp_path):
    everything = np.arange(len(images))
    reference = FeatureCache(tmp_path / "a", images, SIZE, "k").get(extractor, everything, batch_size=4)
    calls = []

    def stop_after_a_few():
        calls.append(1)
        return len(calls) >= 3

    store = FeatureCache(tmp_path / "b", images, SIZE, "k")
    with pytest.raises(ExtractionStopped):
        store.get(extractor, everything, batch_size=4, should_stop=stop_after_a_few)
    done = np.load(store.directory / "view0.done.npy")
    assert 0 < done.sum() < len(images)
    seen = []
    resumed = store.get(extractor, everything, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (len(images) - done.sum(), len(images) - done.sum())  # only the missing rows
    np.testing.assert_allclose(resumed.astype(np.float32), reference.astype(np.float32), atol=1e-2)


def test_augmented_views_repeat_for_a_seed_and_differ_between_views(extractor, images, tmp_path):
    augment = AUGMENT_PRESETS["strong"]
    everything = np.arange(len(images))
    first = FeatureCache(tmp_path / "a", images, SIZE, "k")
    views = [first.get(extractor, everything, view, augment, seed=7, batch_size=8) for view in (0, 1, 2)]
    again = FeatureCache(tmp_path / "b", images, SIZE, "k").get(extractor, everything, 1, augment, 7, batch_size=8)
    np.testing.assert_allclose(again.astype(np.float32), views[1].astype(np.float32), atol=1e-2)
    assert not np.allclose(views[1], views[0], atol=1e-2) and not np.allclose(views[1], views[2], atol=1e-2)
    assert len(first._augmenting) == 1  # one augmenting model (one compile) serves every view
    with pytest.raises(ValueError, match="augmentation config"):
        first.get(extractor, everything, 1, AUGMENT_PRESETS["none"])


def test_weights_hash_follows_the_weights():
    a = build_classifier(2, SIZE, "none", seed=0)
    b = build_classifier(2, SIZE, "none", seed=0)
    assert weights_hash(backbone_of(a)) == weights_hash(backbone_of(a))
    backbone_of(b).weights[0].assign(backbone_of(b).weights[0] + 1.0)
    assert weights_hash(backbone_of(a)) != weights_hash(backbone_of(b))


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_every_runtime_extracts_the_features_keras_does(extractor, images, tmp_path, runtime, monkeypatch):
    """Issue 44: the clean view and an augmented one (the same random streams, augmented in Keras first) through
    another runtime are Keras's features within float16's rounding; the store says which runtime ran and why."""
    monkeypatch.setenv("FLORA_MACHINE_CACHE", str(tmp_path / "machine"))
    augment = AUGMENT_PRESETS["strong"]
    everything = np.arange(len(images))
    keras_store = FeatureCache(tmp_path / "k", images, SIZE, "k", runtime="keras")
    other = FeatureCache(tmp_path / "o", images, SIZE, "k", runtime=runtime)
    for view in (0, 1):
        want = keras_store.get(extractor, everything, view, augment, seed=3, batch_size=8).astype(np.float32)
        got = other.get(extractor, everything, view, augment, seed=3, batch_size=8).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    assert keras_store.decision.runtime == "keras" and other.decision.runtime == runtime
    assert other.decision.text.startswith("forward pass: ")
