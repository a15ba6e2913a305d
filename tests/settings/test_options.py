"""One table of TrainConfig options: CLI flags, and the command that reproduces a run."""

from __future__ import annotations

import argparse
import dataclasses
import shlex

import pytest

from core.settings.config import AUGMENT_PRESETS, AugmentConfig, ConfigError, TrainConfig
from core.settings.options import (
    BY_FIELD,
    OPTIONS,
    add_train_flags,
    config_from_flags,
    format_augment,
    parse_augment,
    parse_head,
    resolve_weights,
    train_arguments,
    train_command,
)

pytestmark = pytest.mark.backend_agnostic


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    add_train_flags(parser)
    return parser.parse_args(argv)


def test_every_config_field_has_exactly_one_option():
    assert sorted(BY_FIELD) == sorted(f.name for f in dataclasses.fields(TrainConfig))
    assert len({o.flag for o in OPTIONS}) == len(OPTIONS)


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(),
        TrainConfig(image_size=64, weights="none", epochs=3, head=(), augment=AugmentConfig()),
        TrainConfig(
            head=(512, 128),
            learning_rate=5e-4,  # not one of the form's slider stops
            fine_tune_epochs=2,
            unfreeze_stages=2,
            fine_tune_learning_rate=5e-6,
            augment=AugmentConfig(rotation=15, horizontal_flip=True),
            feature_cache=False,
            class_weighting="balanced",
            label_smoothing=0.1,
            lr_schedule="cosine",
            seed=7,
        ),
        TrainConfig(seed=8, split_seed=7),  # another start on seed 7's split
        TrainConfig(task="multilabel", threshold_precision=0.9),  # a multi-label run's, thresholds at a precision
    ],
)
def test_the_command_of_a_config_gives_the_same_config_back(config):
    command = train_command("/data/my flowers", config)
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "core", "train"] and argv[4] == "/data/my flowers"
    assert config_from_flags(_parse(argv[4:])) == config


def test_defaults_make_a_bare_command():
    assert train_arguments("flowers", TrainConfig()) == ["flowers"]


def test_text_forms():
    assert parse_head("512, 128") == (512, 128) and parse_head("") == ()
    with pytest.raises(ConfigError, match="whole numbers"):
        parse_head("256,abc")
    with pytest.raises(ConfigError, match="positive"):
        parse_head("0")
    assert format_augment(AUGMENT_PRESETS["strong"]) == "strong"
    assert parse_augment('{"rotation": 15}') == AugmentConfig(rotation=15)
    assert parse_augment("mine", saved={"mine": AugmentConfig(zoom=0.1)}) == AugmentConfig(zoom=0.1)
    with pytest.raises(ConfigError, match="preset"):
        parse_augment("wobbly")
    assert resolve_weights("ImageNet") == "imagenet" and resolve_weights("run:abc") == "run:abc"
    with pytest.raises(ConfigError, match="weights"):
        resolve_weights("/no/such/file.h5")


def test_bad_flags_say_what_they_take():
    with pytest.raises(SystemExit):
        _parse(["flowers", "--head", "big"])
    with pytest.raises(SystemExit):
        _parse(["flowers", "--class-weights", "sometimes"])
    with pytest.raises(SystemExit):
        _parse(["flowers", "--lr-schedule", "linear"])


def test_split_seed_is_an_optional_flag_left_out_when_unset():
    assert _parse(["flowers", "--split-seed", "7"]).split_seed == 7
    assert config_from_flags(_parse(["flowers", "--seed", "8", "--split-seed", "7"])) == TrainConfig(
        seed=8, split_seed=7
    )
    assert config_from_flags(_parse(["flowers", "--seed", "8"])).split_seed is None
    assert "--split-seed" not in train_arguments("flowers", TrainConfig(seed=8))
    assert train_arguments("flowers", TrainConfig(split_seed=3)) == ["flowers", "--split-seed", "3"]
    with pytest.raises(SystemExit):
        _parse(["flowers", "--split-seed", "one"])
    with pytest.raises(ConfigError, match="split_seed must be 0"):
        config_from_flags(_parse(["flowers", "--split-seed", "-1"]))
