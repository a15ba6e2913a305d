"""The classifier builder, unfreeze, starting weights and the ImageNet download path, on the real ResNet-50."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import re
import threading

import keras
import numpy as np
import pytest

from core.network import backbones
from core.network.model import (
    WeightsError,
    backbone_of,
    build_classifier,
    head_of,
    imagenet_weights_path,
    load_classifier,
    unfreeze,
)
from core.paths import IMAGENET_WEIGHTS_FILE

SIZE = 32
pytestmark = pytest.mark.usefixtures("resnet50")  # the network itself is the subject here


@pytest.fixture(scope="module")
def classifier():
    return build_classifier(3, SIZE, "none", head=(16,), dropout=0.1, seed=0, backbone=backbones.RESNET50)


@pytest.fixture(scope="module")
def unfreezable():
    """A classifier the unfreeze tests open and close in turn (apart from `classifier`, whose flags stay as built)."""
    return build_classifier(2, SIZE, "none", head=(4,))


@pytest.mark.backend_agnostic
def test_outputs_are_probabilities_from_raw_pixels(classifier):
    x = np.random.default_rng(0).integers(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    out = np.asarray(classifier.predict(x, verbose=0))
    assert out.shape == (4, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert classifier.output.dtype == "float32"
    names = [layer.name for layer in classifier.layers]
    assert names == ["image", "resnet_preprocess", "resnet50", "avg_pool", "head"]


@pytest.mark.backend_agnostic
def test_preprocessing_inside_is_resnet_caffe_mode(classifier):
    x = np.random.default_rng(1).integers(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    layer = classifier.get_layer("resnet_preprocess")
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-4)
    # caffe mode: BGR order and no scaling to [0, 1]
    assert expected.max() > 100


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes must be at least 2. Received: num_classes=1"),
        ({"image_size": 16}, "image_size must be at least 32. Received: image_size=16"),
        ({"head": (0,)}, "head units must be positive"),
        ({"dropout": 1.5}, "dropout must be in"),
    ],
)
def test_builder_checks_its_arguments(kwargs, message):
    args = {"num_classes": 3, "image_size": SIZE, "weights": "none", **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_classifier(**args)


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    "stages, prefixes", [(0, ()), (1, ("conv5",)), (2, ("conv4", "conv5")), (4, ("conv2", "conv3", "conv4", "conv5"))]
)
def test_unfreeze_top_stages_keeps_batchnorm_frozen(unfreezable, stages, prefixes):
    model = unfreezable  # one model for the four: each call sets every layer, whatever the one before opened
    unfreeze(model, stages)
    backbone = backbone_of(model)
    trainable = [layer for layer in backbone.layers if layer.trainable and layer.weights]
    assert {layer.name.split("_")[0] for layer in trainable} == set(prefixes)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    assert not any(layer.name.startswith("conv1") for layer in trainable)
    assert all(w.trainable for w in head_of(model).trainable_weights)


def test_unfreeze_rejects_out_of_range(classifier):
    with pytest.raises(
        ValueError, match=re.escape("unfreeze_stages must be between 0 and 4. Received: unfreeze_stages=7")
    ):
        unfreeze(classifier, 7)


@pytest.mark.backend_agnostic
def test_save_and_load_keep_predictions(classifier, tmp_path):
    from core.train.training import save_model

    x = np.random.default_rng(2).integers(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    save_model(classifier, tmp_path / "model.keras")
    loaded = load_classifier(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), classifier.predict(x, verbose=0), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_start_from_an_earlier_run_or_weights_file(classifier, tmp_path):
    from core.train.training import save_model

    run_dir = tmp_path / "models" / "run123"
    run_dir.mkdir(parents=True)
    save_model(classifier, run_dir / "model.keras")
    expected = backbone_of(classifier).get_weights()
    for weights in ("run:run123", str(run_dir)):
        started = build_classifier(2, 48, weights, head=(4,), models_dir=tmp_path / "models")
        for got, want in zip(backbone_of(started).get_weights(), expected, strict=True):
            np.testing.assert_array_equal(got, want)
    weights_file = tmp_path / "backbone.weights.h5"
    backbone_of(classifier).save_weights(weights_file)
    started = build_classifier(2, SIZE, str(weights_file), head=(4,))
    np.testing.assert_array_equal(backbone_of(started).get_weights()[0], expected[0])


@pytest.mark.parametrize(
    "weights, message",
    [("run:nope", "no such run"), ("/no/such/file.h5", "no such file"), ("run:x", "needs the run store")],
)
def test_bad_weights_say_what_to_do(tmp_path, weights, message):
    models_dir = None if weights == "run:x" else tmp_path
    with pytest.raises(WeightsError, match=message):
        build_classifier(2, SIZE, weights, models_dir=models_dir)


def test_imagenet_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("FLORA_IMAGENET_WEIGHTS_URL", "http://127.0.0.1:9/resnet50_notop.h5")  # nothing listens
    with pytest.raises(WeightsError) as info:
        build_classifier(2, SIZE, "imagenet")
    message = str(info.value)
    assert "could not be downloaded" in message and "weights 'none'" in message
    assert str(tmp_path / "keras" / "models") in message


@pytest.mark.slow
def test_imagenet_weights_download_from_a_mirror(tmp_path, monkeypatch):
    """The real download path (keras get_file + hash check) against a local HTTP server."""
    import hashlib

    from keras.src.legacy.saving import legacy_h5_format

    served = tmp_path / "served"
    served.mkdir()
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    source.set_weights([w + 0.01 for w in source.get_weights()])
    import h5py

    with h5py.File(served / IMAGENET_WEIGHTS_FILE, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    digest = hashlib.md5((served / IMAGENET_WEIGHTS_FILE).read_bytes()).hexdigest()

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        monkeypatch.setenv(
            "FLORA_IMAGENET_WEIGHTS_URL", f"http://127.0.0.1:{server.server_port}/{IMAGENET_WEIGHTS_FILE}"
        )
        entry = backbones.BACKBONES[backbones.RESNET50]
        published = dataclasses.replace(entry.imagenet, md5=digest)
        monkeypatch.setitem(backbones.BACKBONES, entry.name, dataclasses.replace(entry, imagenet=published))
        model = build_classifier(2, SIZE, "imagenet", head=(4,))
        np.testing.assert_allclose(backbone_of(model).get_weights()[0], source.get_weights()[0])
        assert (tmp_path / "keras" / "models" / IMAGENET_WEIGHTS_FILE).exists()
        # a corrupt mirror fails the hash check with the same clear error
        corrupt = dataclasses.replace(published, md5="0" * 32)
        monkeypatch.setitem(backbones.BACKBONES, entry.name, dataclasses.replace(entry, imagenet=corrupt))
        (tmp_path / "keras" / "models" / IMAGENET_WEIGHTS_FILE).unlink()
        with pytest.raises(WeightsError, match="could not be downloaded"):
            imagenet_weights_path()
    finally:
        server.shutdown()
