"""The backbone seam: the tiny test backbone keeps ResNet-50's contract, only tests can pick it, and another
keras.applications backbone is one registry entry away."""

from __future__ import annotations

import argparse

import keras
import numpy as np
import pytest

from core.network import backbones
from core.network import layer_names as names
from core.network.model import backbone_of, build_classifier, head_of, unfreeze
from core.settings.config import ConfigError, TrainConfig, run_id_for

pytestmark = pytest.mark.backend_agnostic


def _contract(name: str, size: int) -> dict:
    model = build_classifier(3, size, "none", head=(8,), backbone=name, seed=0)
    network = backbone_of(model)
    stages = {backbones.BACKBONES[name].stage_of(layer.name) for layer in network.layers} - {None}
    batch_norms = {
        backbones.BACKBONES[name].stage_of(layer.name)
        for layer in network.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    return {
        "layers": [layer.name for layer in model.layers][:2] + [layer.name for layer in model.layers][3:],
        "output_layer": network.layers[-1].name,
        "grid": tuple(network.output_shape[1:]),
        "stages": sorted(stages),
        "stages_with_batch_norm": sorted(batch_norms - {None}),
        "preprocess": type(model.get_layer(names.PREPROCESS)).__name__,
        "head_input": tuple(head_of(model).input_shape[1:]),
    }


@pytest.mark.parametrize("size", [32, 64, 96])
def test_the_tiny_backbone_has_resnet50s_contract(size):
    assert _contract("tiny", size) == _contract(backbones.RESNET50, size)


def test_the_tiny_backbone_preprocesses_as_resnet50():
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    ours = build_classifier(2, 32, "none", head=(4,), backbone="tiny").get_layer(names.PREPROCESS)
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(pixels)), expected, rtol=1e-6, atol=1e-4)


def test_unfreezing_opens_the_same_stages_of_both():
    for name in ("tiny", backbones.RESNET50):
        model = build_classifier(2, 32, "none", head=(4,), backbone=name)
        entry = backbones.BACKBONES[name]
        unfreeze(model, 2)
        open_stages = {entry.stage_of(layer.name) for layer in backbone_of(model).layers if layer.trainable_weights}
        assert open_stages == {3, 4}, name
        assert not any(
            layer.trainable for layer in backbone_of(model).layers if isinstance(layer, keras.layers.BatchNormalization)
        )


def test_only_the_test_suite_can_pick_the_tiny_backbone(monkeypatch):
    assert TrainConfig().backbone == "tiny"  # tests/conftest.py selects it
    monkeypatch.delenv(backbones.TEST_BACKBONE_ENV)
    assert TrainConfig().backbone == backbones.RESNET50
    assert backbones.choices() == (backbones.RESNET50,)
    with pytest.raises(ValueError, match=r"backbone must be one of \('resnet50',\)\. Received: backbone='tiny'"):
        build_classifier(2, 32, "none", backbone="tiny")
    with pytest.raises(ConfigError, match="backbone must be one of"):
        TrainConfig(backbone="efficientnet")
    assert TrainConfig(backbone="tiny").backbone == "tiny"  # a stored run of the test suite still reads
    from core.settings.options import add_train_flags

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_train_flags(parser)
    assert parser.parse_args(["--backbone", "resnet50"]).backbone == "resnet50"
    with pytest.raises(argparse.ArgumentError, match="backbone must be one of resnet50"):
        parser.parse_args(["--backbone", "tiny"])


def test_a_resnet50_run_keeps_the_id_it_had_before_the_seam(monkeypatch):
    from core.settings.config import AugmentConfig

    monkeypatch.delenv(backbones.TEST_BACKBONE_ENV)
    assert "backbone" not in TrainConfig().to_dict()
    assert TrainConfig.from_dict({}).backbone == backbones.RESNET50
    # computed by the code before core.network.backbones existed
    assert run_id_for(TrainConfig(), "fingerprint") == "9e2654a0c7cc"
    small = TrainConfig(image_size=64, weights="none", epochs=2, augment=AugmentConfig())
    assert run_id_for(small, "abc") == "a348883265dc"
    monkeypatch.setenv(backbones.TEST_BACKBONE_ENV, "tiny")
    assert TrainConfig.from_dict(small.to_dict()).backbone == backbones.RESNET50  # a stored ResNet-50 run
    assert TrainConfig.from_dict(TrainConfig().to_dict()).backbone == "tiny"


def test_imagenet_weights_for_a_backbone_without_them_say_so():
    from core.network.model import WeightsError

    with pytest.raises(WeightsError, match="has no ImageNet weights"):
        build_classifier(2, 32, "imagenet", backbone="tiny")


def _mobilenet(input_shape, weights, name):
    return keras.applications.MobileNet(
        include_top=False, weights=weights, input_shape=input_shape, alpha=0.25, name=name
    )


def test_another_keras_application_is_one_registry_entry(monkeypatch, tmp_path):
    """MobileNet (another width, output layer and preprocessing) through every part that reads the backbone."""
    from core.network.graph import features_and_logits_model, inference_model, run_outputs
    from core.results.evaluation.explain import grad_cam, logit_gradients, split_classifier
    from core.train.features import build_extractor

    entry = backbones.Backbone(
        name="mobilenet",
        title="MobileNet (0.25)",
        build=_mobilenet,
        preprocess=lambda layer: keras.layers.Rescaling(1 / 127.5, offset=-1, name=layer),
        stages=("conv_pw_3", "conv_pw_6", "conv_pw_12", "conv_pw_13"),
        feature_map="conv_pw_13_relu",
        feature_dim=256,
        test_only=True,
    )
    monkeypatch.setitem(backbones.BACKBONES, entry.name, entry)
    monkeypatch.setenv(backbones.TEST_BACKBONE_ENV, entry.name)
    assert TrainConfig().backbone == entry.name

    model = build_classifier(3, 32, "none", head=(8,), seed=0)
    assert backbone_of(model).name == entry.name and head_of(model).input_shape == (None, 256)
    pixels = np.random.default_rng(1).uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
    expected = model.predict(pixels, verbose=0)

    pooled = build_extractor(model).predict(pixels, verbose=0)
    assert pooled.shape == (4, 256)
    _, logits = features_and_logits_model(model).predict(pixels, verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)), expected, atol=1e-5)
    served = run_outputs(inference_model(model), pixels)
    np.testing.assert_allclose(served[names.PROBABILITIES], expected, atol=1e-5)

    to_map, from_map = split_classifier(model)
    feature_map = np.asarray(to_map.predict(pixels, verbose=0))
    gradients, _ = logit_gradients(from_map, feature_map, np.eye(3, dtype="float32")[[0, 1, 2, 0]])
    assert grad_cam(feature_map, gradients).shape == feature_map.shape[:3]

    unfreeze(model, 1)
    assert backbone_of(model).trainable_weights  # conv_pw_13's kernel
    path = tmp_path / "model.keras"
    model.save(path)
    started = build_classifier(3, 32, str(path), head=(8,))
    np.testing.assert_array_equal(backbone_of(started).get_weights()[0], backbone_of(model).get_weights()[0])
