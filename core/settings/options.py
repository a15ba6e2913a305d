"""Every TrainConfig field as a user sees it: its CLI flag, its widget, and how to write it back.

One table (`OPTIONS`) drives the `python -m core train` flags, the Train page's form (pages read
the widget fields: kind, label, choices, range, section) and `train_command`, which writes a run
back as the exact command that reproduces it. A new TrainConfig field is added here once.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.data.tasks import MULTI_LABEL, TASKS
from core.network import backbones
from core.settings.config import (
    AUGMENT_PRESETS,
    CLASS_WEIGHTING_CHOICES,
    LR_SCHEDULES,
    MAX_UNFREEZE_STAGES,
    WEIGHTS_IMAGENET,
    WEIGHTS_NONE,
    AugmentConfig,
    ConfigError,
    TrainConfig,
)

RUN_WEIGHTS_PREFIX = "run:"

# Widget kinds the Train page knows how to draw; FIXED fields have a CLI flag and no widget (the form
# keeps the value it was filled with).
SELECT_SLIDER, NUMBER, SLIDER, RADIO, TOGGLE, TEXT, PRESET, WEIGHTS, FIXED = (
    "select_slider",
    "number",
    "slider",
    "radio",
    "toggle",
    "text",
    "preset",
    "weights",
    "fixed",
)
# Where a widget goes on the form.
DATA, HEAD, FINE_TUNE, ADVANCED = "data", "head", "fine_tune", "advanced"


SEED_FIELD = {"minimum": 0, "maximum": 2**31 - 1, "step": 1, "parse": int}  # a seed and the split seed alike


def parse_head(text: str) -> tuple[int, ...]:
    """'512,128' -> (512, 128); '' -> () (no hidden layer).

    Raises:
        ConfigError: something other than positive whole numbers separated by commas.
    """
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        units = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"head must be whole numbers separated by commas, e.g. 256 or 512,128. Received: {text!r}"
        ) from None
    if any(u <= 0 for u in units):
        raise ConfigError(f"head units must be positive. Received: {text!r}")
    return units


def format_head(units: tuple[int, ...]) -> str:
    return ",".join(str(int(u)) for u in units)


def parse_augment(value: str, saved: dict[str, AugmentConfig] | None = None) -> AugmentConfig:
    """A preset name (built-in, or one of `saved`) or a JSON object of AugmentConfig fields."""
    presets = {**(saved or {}), **AUGMENT_PRESETS}
    if value in presets:
        return presets[value]
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        raise ConfigError(
            f"augment must be a preset ({', '.join(presets)}) or a JSON object of its fields. Received: {value!r}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f'augment JSON must be an object like {{"rotation": 15}}. Received: {value!r}')
    return AugmentConfig.from_dict(data)


def format_augment(config: AugmentConfig) -> str:
    """The built-in preset's name when it is one, else the JSON of the fields that are on."""
    for name, preset in AUGMENT_PRESETS.items():
        if preset == config:
            return name
    on = {k: v for k, v in config.to_dict().items() if v != getattr(AugmentConfig(), k)}
    return json.dumps(on, separators=(",", ":"))


def resolve_weights(value: str, store=None) -> str:
    """What the user typed for weights -> what TrainConfig stores.

    imagenet / none stay; a weights file or run folder becomes an absolute path; a run id (or a
    unique prefix, or "run:<id>") becomes "run:<id>" when `store` knows it.

    Raises:
        ConfigError: none of those.
    """
    if value.lower() in (WEIGHTS_IMAGENET, WEIGHTS_NONE):
        return value.lower()
    if value.startswith(RUN_WEIGHTS_PREFIX):
        value = value[len(RUN_WEIGHTS_PREFIX) :]
        if store is None:
            return RUN_WEIGHTS_PREFIX + value
    path = Path(value).expanduser()
    if path.exists():
        return str(path.resolve())
    if store is not None:
        try:
            return RUN_WEIGHTS_PREFIX + store.find(value).run_id
        except KeyError:
            pass
    raise ConfigError(
        f"weights must be 'imagenet', 'none', a weights file, a run folder or a run id. Received: weights={value!r}"
    )


def weights_run_id(weights: str) -> str | None:
    """The run id of "run:<id>" weights, else None."""
    return weights[len(RUN_WEIGHTS_PREFIX) :] if weights.startswith(RUN_WEIGHTS_PREFIX) else None


def describe_weights(weights: str) -> str:
    """'ImageNet', 'random start', 'from run 1a2b3c', or the weights file's name."""
    if weights == WEIGHTS_IMAGENET:
        return "ImageNet"
    if weights == WEIGHTS_NONE:
        return "random start"
    run_id = weights_run_id(weights)
    return f"from run {run_id[:6]}" if run_id else Path(weights).name


def parse_backbone(text: str) -> str:
    """A backbone name this installation offers (core.network.backbones).

    Raises:
        ConfigError: any other name.
    """
    if text not in backbones.choices():
        raise ConfigError(f"backbone must be one of {', '.join(backbones.choices())}. Received: {text!r}")
    return text


def _float_text(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class TrainOption:
    """One TrainConfig field: its flag, its widget, and its text form."""

    field: str
    flag: str
    label: str
    help: str
    kind: str  # a widget kind above
    section: str  # where the widget goes
    choices: tuple = ()  # options of a select slider or radio
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    parse: Callable[[str], Any] = str  # CLI text -> the field's value
    format: Callable[[Any], str] = str  # the field's value -> CLI text
    needs: str | None = None  # the widget is disabled while this field is 0 / off
    short: Callable[[Any], str] | None = None  # a few words for run names: "lr 0.003"

    @property
    def default(self) -> Any:
        return getattr(TrainConfig(), self.field)


OPTIONS: tuple[TrainOption, ...] = (
    TrainOption(
        "weights",
        "--weights",
        "Starting weights",
        "imagenet (pretrained: what makes transfer learning work), none (a random start: the backbone knows "
        "nothing), a weights file, or an earlier run's id (its backbone).",
        WEIGHTS,
        DATA,
        short=lambda v: describe_weights(v),
    ),
    TrainOption(
        "augment",
        "--augment",
        "Augmentation",
        f"A preset ({', '.join(AUGMENT_PRESETS)}, or one saved on the Augmentation page) or a JSON object of "
        'its fields, e.g. \'{"rotation": 15, "horizontal_flip": true}\'.',
        PRESET,
        DATA,
        parse=parse_augment,
        format=format_augment,
        short=lambda v: f"aug {format_augment(v) if format_augment(v) in AUGMENT_PRESETS else 'custom'}",
    ),
    TrainOption(
        "class_weighting",
        "--class-weights",
        "Class weights",
        "auto: weigh classes by inverse frequency when the largest has over 1.5x the images of the smallest; "
        "balanced: always; none: never.",
        RADIO,
        DATA,
        choices=CLASS_WEIGHTING_CHOICES,
        short=lambda v: f"class weights {v}",
    ),
    TrainOption(
        "image_size",
        "--image-size",
        "Image size (px)",
        "Photos are resized to this square. 224 is ResNet-50's native size; smaller is much faster.",
        SELECT_SLIDER,
        HEAD,
        choices=(32, 48, 64, 96, 128, 160, 192, 224, 256),
        parse=int,
        short=lambda v: f"{v} px",
    ),
    TrainOption(
        "batch_size",
        "--batch-size",
        "Batch size",
        "Photos per training step.",
        SELECT_SLIDER,
        HEAD,
        choices=(8, 16, 32, 64, 128, 256, 512, 1024),
        parse=int,
        short=lambda v: f"batch {v}",
    ),
    TrainOption(
        "epochs",
        "--epochs",
        "Head epochs (phase 1)",
        "Passes over the training photos while only the new head learns (ResNet-50 frozen).",
        NUMBER,
        HEAD,
        minimum=0,
        maximum=500,
        step=1,
        parse=int,
        short=lambda v: f"{v} epoch{'' if v == 1 else 's'}",
    ),
    TrainOption(
        "learning_rate",
        "--lr",
        "Learning rate",
        "Phase 1 learning rate (Adam).",
        SELECT_SLIDER,
        HEAD,
        choices=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        parse=float,
        format=_float_text,
        short=lambda v: f"lr {v:g}",
    ),
    TrainOption(
        "lr_schedule",
        "--lr-schedule",
        "Learning-rate schedule",
        "constant: the same rate all along; cosine: it decays smoothly to zero over the phase; plateau: it is "
        "divided by about 3 whenever validation loss (a multi-label run's: validation mAP) stops improving. Both "
        "phases follow it.",
        RADIO,
        HEAD,
        choices=LR_SCHEDULES,
        short=lambda v: f"lr {v}",
    ),
    TrainOption(
        "early_stopping_patience",
        "--patience",
        "Early stopping patience (0 = off)",
        "Stop a phase when validation loss (a multi-label run's: validation mAP) has not improved for this many "
        "epochs; the best weights are kept.",
        NUMBER,
        HEAD,
        minimum=0,
        maximum=50,
        step=1,
        parse=int,
        short=lambda v: f"patience {v}",
    ),
    TrainOption(
        "fine_tune_epochs",
        "--fine-tune-epochs",
        "Fine-tune epochs (phase 2)",
        "0 keeps the backbone frozen. Fine-tuning trains the top ResNet stages too; slow on a CPU.",
        NUMBER,
        FINE_TUNE,
        minimum=0,
        maximum=500,
        step=1,
        parse=int,
        short=lambda v: f"+{v} fine-tune",
    ),
    TrainOption(
        "unfreeze_stages",
        "--unfreeze-stages",
        "Stages to unfreeze",
        "ResNet-50 has four residual stages; 1 unfreezes the last (conv5). BatchNorm layers stay frozen.",
        SLIDER,
        FINE_TUNE,
        minimum=1,
        maximum=MAX_UNFREEZE_STAGES,
        step=1,
        parse=int,
        needs="fine_tune_epochs",
        short=lambda v: f"{v} stages",
    ),
    TrainOption(
        "fine_tune_learning_rate",
        "--fine-tune-lr",
        "Fine-tune learning rate",
        "Phase 2 learning rate: far lower than phase 1's, so the pretrained weights are only nudged.",
        SELECT_SLIDER,
        FINE_TUNE,
        choices=(1e-6, 5e-6, 1e-5, 5e-5, 1e-4),
        parse=float,
        format=_float_text,
        needs="fine_tune_epochs",
        short=lambda v: f"ft lr {v:g}",
    ),
    TrainOption(
        "head",
        "--head",
        "Head (Dense units)",
        "Dense+Dropout blocks between the pooled features and the softmax: 256, or 512,128; empty for none.",
        TEXT,
        FINE_TUNE,
        parse=parse_head,
        format=format_head,
        short=lambda v: f"head {format_head(v) or 'none'}",
    ),
    TrainOption(
        "dropout",
        "--dropout",
        "Dropout",
        "Share of the head's units switched off at random in each training step (against overfitting).",
        SLIDER,
        FINE_TUNE,
        minimum=0.0,
        maximum=0.8,
        step=0.05,
        parse=float,
        format=_float_text,
        short=lambda v: f"dropout {v:g}",
    ),
    TrainOption(
        "label_smoothing",
        "--label-smoothing",
        "Label smoothing",
        "Trains towards 0.9 instead of 1.0 for the right class (at 0.1): less over-confident predictions.",
        SLIDER,
        FINE_TUNE,
        minimum=0.0,
        maximum=0.3,
        step=0.05,
        parse=float,
        format=_float_text,
        short=lambda v: f"smoothing {v:g}",
    ),
    TrainOption(
        "feature_cache",
        "--no-feature-cache",
        "Frozen phase on cached features",
        "ResNet-50's output for each image is computed once and reused every epoch: the same training, many "
        "times faster. Augmented views are cached too. (The flag turns it off.)",
        TOGGLE,
        ADVANCED,
        short=lambda v: "feature cache" if v else "no feature cache",
    ),
    TrainOption(
        "augmented_views",
        "--augmented-views",
        "Augmented views per image",
        "How many augmented versions of each training photo are cached (besides the clean one). Each view is "
        "one more pass of the training photos through ResNet-50, and the random transforms run on the CPU: at "
        "224 px on a CPU an augmented view costs about 2.7x the clean one (docs/PERFORMANCE.md).",
        NUMBER,
        ADVANCED,
        minimum=0,
        maximum=16,
        step=1,
        parse=int,
        needs="feature_cache",
        short=lambda v: f"{v} views",
    ),
    TrainOption(
        "val_fraction",
        "--val-fraction",
        "Validation share",
        "Share of each class held out to choose the best epoch (never trained on).",
        SLIDER,
        ADVANCED,
        minimum=0.05,
        maximum=0.4,
        step=0.05,
        parse=float,
        format=_float_text,
        short=lambda v: f"val {v:.0%}",
    ),
    TrainOption(
        "test_fraction",
        "--test-fraction",
        "Test share",
        "Share of each class held out for the final, honest score (never trained on or chosen by).",
        SLIDER,
        ADVANCED,
        minimum=0.05,
        maximum=0.4,
        step=0.05,
        parse=float,
        format=_float_text,
        short=lambda v: f"test {v:.0%}",
    ),
    TrainOption(
        "seed",
        "--seed",
        "Seed",
        "Draws the weights' start, the augmentation and the photos' order, and the split too unless a split seed "
        "is set: the same seed, the same run.",
        NUMBER,
        ADVANCED,
        **SEED_FIELD,
        short=lambda v: f"seed {v}",
    ),
    TrainOption(
        "split_seed",
        "--split-seed",
        "Split seed",
        "Same as the seed unless set; set it to keep the split while changing the start. It alone then draws "
        "which photos train, validate and test: give it an earlier run's seed (or split seed) and another seed, "
        "and the two runs differ only by chance, on the very same photos, which Compare pairs them on.",
        NUMBER,
        ADVANCED,
        **SEED_FIELD,
        format=lambda v: "same as the seed" if v is None else str(v),  # (None, the default, is never a flag)
        short=lambda v: f"split seed {v}",
    ),
    TrainOption(
        "backbone",
        "--backbone",
        "Backbone",
        "The pretrained network under the head: resnet50 (ResNet-50), the one Flora offers today.",
        FIXED,
        ADVANCED,
        parse=parse_backbone,
        short=lambda v: backbones.BACKBONES[v].title if v in backbones.BACKBONES else str(v),
    ),
    TrainOption(
        "task",
        "--task",
        "Task",
        "What the dataset is, read from it (a flag that says otherwise is overridden): single, one class a photo, "
        "or multilabel, any number of labels a photo (sigmoid outputs, binary cross-entropy, validation mAP, a "
        "threshold per label).",
        FIXED,
        ADVANCED,
        choices=TASKS,
        short=lambda v: "multi-label" if v == MULTI_LABEL else "single-label",
    ),
    TrainOption(
        "threshold_precision",
        "--threshold-precision",
        "Threshold precision",
        "Multi-label only: each label's threshold is the lowest at which its validation precision reaches this "
        "(e.g. 0.9) instead of the one with the best F1; a label that never reaches it keeps its best-F1 threshold "
        "and is named.",
        FIXED,
        ADVANCED,
        parse=float,
        format=lambda v: "best F1" if v is None else _float_text(v),  # (None, the default, is never a flag)
        short=lambda v: f"thresholds at precision {v:g}",
    ),
)
BY_FIELD = {option.field: option for option in OPTIONS}


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (dest = the field's name, default None: not given)."""
    for option in OPTIONS:
        if option.kind == TOGGLE:  # a field on by default: the flag turns it off
            parser.add_argument(option.flag, dest=option.field, action="store_const", const=False, help=option.help)
        elif option.field == "weights":
            parser.add_argument(option.flag, dest=option.field, metavar="WEIGHTS", help=option.help)
        elif option.kind == FIXED:
            choices = backbones.choices() if option.field == "backbone" else option.choices
            metavar = "{" + ",".join(choices) + "}" if choices else {float: "X"}.get(option.parse, "VALUE")
            parser.add_argument(
                option.flag, dest=option.field, type=_cli_type(option), metavar=metavar, help=option.help
            )
        else:
            metavar = {int: "N", float: "X"}.get(option.parse, option.field.upper())
            if option.kind == RADIO:
                metavar = "{" + ",".join(option.choices) + "}"
            parser.add_argument(
                option.flag, dest=option.field, type=_cli_type(option), metavar=metavar, help=option.help
            )


def _cli_type(option: TrainOption) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = option.parse(text)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option.flag} takes a {option.parse.__name__}: {text!r}") from None
        if option.choices and option.kind in (RADIO, FIXED) and value not in option.choices:
            raise argparse.ArgumentTypeError(f"{option.flag} is one of {', '.join(map(str, option.choices))}")
        return value

    convert.__name__ = option.field
    return convert


def config_from_flags(args: argparse.Namespace, base: TrainConfig | None = None, store=None) -> TrainConfig:
    """`base` (default TrainConfig()) with every flag that was given.

    Raises:
        ConfigError: a value is out of range or the weights cannot be found.
    """
    base = base or TrainConfig()
    changes = {o.field: getattr(args, o.field) for o in OPTIONS if getattr(args, o.field, None) is not None}
    if "weights" in changes:
        changes["weights"] = resolve_weights(changes["weights"], store)
    return base.replace(**changes) if changes else base


def train_arguments(dataset: str, config: TrainConfig, corrections: str | None = None) -> list[str]:
    """The arguments of `python -m core train` that reproduce `config` on `dataset` (defaults left out).

    `corrections`: the --corrections value (None: the default, the corrections kept for the dataset).
    """
    defaults = TrainConfig()
    args = [str(dataset)]
    if corrections is not None:
        args += ["--corrections", corrections]
    for option in OPTIONS:
        value = getattr(config, option.field)
        if value == getattr(defaults, option.field):
            continue
        if option.kind == TOGGLE:
            args.append(option.flag)  # only the "off" flag exists
        else:
            args += [option.flag, option.format(value)]
    return args


def train_command(dataset: str, config: TrainConfig, python: str = "python", corrections: str | None = None) -> str:
    """`python -m core train DATASET --flag value ...`, quoted for a POSIX shell."""
    return shlex.join([python, "-m", "core", "train", *train_arguments(dataset, config, corrections)])


def run_command(run, python: str = "python", dataset: str | None = None) -> str:
    """The command that finds `run` again: its settings and exact corrections; `dataset` as written, else its path."""
    corrections = f"run:{run.run_id}" if run.corrections else "none"
    return train_command(dataset or run.dataset_path, run.train_config, python, corrections)


def describe_config(config: TrainConfig, always: tuple[str, ...] = ("image_size", "weights")) -> str:
    """A run's settings in a few words, what tells it from a default run: '64 px · random start · aug strong'.

    The `always` fields come first whatever their value; then every field that differs from the
    defaults, in the form's order.
    """
    defaults = TrainConfig()
    parts = [BY_FIELD[name].short(getattr(config, name)) for name in always]
    for option in OPTIONS:
        value = getattr(config, option.field)
        if option.field in always or option.short is None or value == getattr(defaults, option.field):
            continue
        if option.needs and not getattr(config, option.needs):
            continue  # e.g. the fine-tune rate of a run that does not fine-tune
        parts.append(option.short(value))
    return " · ".join(parts)
