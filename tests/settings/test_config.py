"""TrainConfig / AugmentConfig: validation messages, canonical JSON and run ids."""

from __future__ import annotations

import pytest

from core.settings.config import (
    AUGMENT_PRESETS,
    AugmentConfig,
    ConfigError,
    TrainConfig,
    cache_size_for,
    canonical_json,
    run_id_for,
)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"image_size": 16}, "image_size must be between 32 and 1024. Received: image_size=16"),
        ({"unfreeze_stages": 7}, "unfreeze_stages must be between 0 and 4. Received: unfreeze_stages=7"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"epochs": 0, "fine_tune_epochs": 0}, "at least one epoch"),
        ({"fine_tune_epochs": 2, "unfreeze_stages": 0}, "nothing to fine-tune"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"class_weighting": "sometimes"}, "class_weighting must be one of"),
        ({"val_fraction": 0.6}, "val_fraction"),
        ({"head": (0,)}, "head units must be positive"),
        ({"augmented_views": 99}, "augmented_views"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of ('constant', 'cosine', 'plateau')"),
        (
            {"split_seed": -1},
            "split_seed must be 0 to 2**31-1, or unset (the seed draws the split). Received: split_seed=-1",
        ),
    ],
)
def test_train_config_rejects_bad_values_with_a_message(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        TrainConfig(**changes)


@pytest.mark.parametrize("changes", [{"rotation": 200}, {"zoom": 1.5}, {"brightness": -0.1}, {"shear": 80}], ids=str)
def test_augment_config_rejects_bad_values(changes):
    with pytest.raises(ConfigError, match="Received"):
        AugmentConfig(**changes)


def test_defaults_and_presets():
    assert not AugmentConfig().enabled
    assert all(p.enabled for name, p in AUGMENT_PRESETS.items() if name != "none")
    config = TrainConfig()
    assert config.image_size == 224 and config.weights == "imagenet" and config.cache_size == 256
    assert cache_size_for(64) == 73


def test_round_trip_through_json_and_unknown_keys():
    config = TrainConfig(head=(128, 64), augment=AUGMENT_PRESETS["standard"], epochs=3)
    data = config.to_dict()
    data["a_future_setting"] = True
    data["augment"]["a_future_transform"] = 0.3
    assert TrainConfig.from_dict(data) == config


def test_run_id_is_stable_and_depends_on_config_and_data():
    config = TrainConfig(epochs=3)
    assert run_id_for(config, "abc") == run_id_for(TrainConfig(epochs=3), "abc")
    assert run_id_for(config, "abc") != run_id_for(config, "abd")
    assert run_id_for(config, "abc") != run_id_for(config.replace(learning_rate=0.01), "abc")
    assert len(run_id_for(config, "abc")) == 12
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_a_config_without_split_seed_keeps_the_run_id_it_had_before_the_field():
    # ids computed by the code before split_seed existed: every existing run, cache key and folder stays the same
    resnet = TrainConfig(backbone="resnet50")
    assert run_id_for(resnet, "abc") == "6cff684667d7"
    small = TrainConfig(epochs=3, seed=7, image_size=64, weights="none", backbone="tiny")
    assert run_id_for(small, "f00d") == "fc68486f9a2f"
    assert "split_seed" not in small.to_dict() and small.split_draw_seed == 7


def test_a_split_seed_draws_the_split_and_names_another_run():
    config = TrainConfig(epochs=3, seed=7, split_seed=42)
    assert config.split_draw_seed == 42 and config.to_dict()["split_seed"] == 42
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert run_id_for(config, "abc") != run_id_for(config.replace(split_seed=None), "abc")
    assert run_id_for(config, "abc") != run_id_for(config.replace(seed=8), "abc")  # another start, its own run
    with pytest.raises(ConfigError, match="split_seed is 'x', not"):
        TrainConfig.from_dict({"split_seed": "x"})


def test_a_single_label_config_keeps_the_run_id_it_had_before_the_task():
    # the same ids as before multi-label training existed (see the split seed's test above): no single-label run,
    # cache key or folder moves
    resnet = TrainConfig(backbone="resnet50")
    assert run_id_for(resnet, "abc") == "6cff684667d7"
    small = TrainConfig(epochs=3, seed=7, image_size=64, weights="none", backbone="tiny")
    assert run_id_for(small, "f00d") == "fc68486f9a2f"
    assert "task" not in small.to_dict() and "threshold_precision" not in small.to_dict()
    assert TrainConfig.from_dict(small.to_dict()).task == "single" and not small.multilabel


def test_a_multilabel_config_names_its_task_and_its_thresholds_rule():
    config = TrainConfig(epochs=3, task="multilabel")
    assert config.multilabel and config.to_dict()["task"] == "multilabel"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert run_id_for(config, "abc") != run_id_for(TrainConfig(epochs=3), "abc")
    precise = config.replace(threshold_precision=0.9)
    assert precise.to_dict()["threshold_precision"] == 0.9 and run_id_for(precise, "a") != run_id_for(config, "a")
    with pytest.raises(ConfigError, match="task must be one of"):
        TrainConfig(task="detection")
    with pytest.raises(ConfigError, match=r"threshold_precision must be in \(0, 1\]"):
        TrainConfig(task="multilabel", threshold_precision=1.5)
