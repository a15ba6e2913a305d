"""Training and augmentation settings: frozen dataclasses whose canonical JSON names a run.

Nothing here imports Keras, so the pages can build and validate configs cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from core.data.tasks import MULTI_LABEL, SINGLE_LABEL, TASKS
from core.errors import InvalidInput
from core.field_types import FieldTypeError, check_field_types
from core.network import backbones

WEIGHTS_IMAGENET = "imagenet"
WEIGHTS_NONE = "none"
CLASS_WEIGHTING_CHOICES = ("auto", "balanced", "none")
# How the learning rate moves within a phase: constant; cosine decay to zero over the phase's steps;
# divided by a factor when validation loss stops improving ("reduce on plateau").
LR_SCHEDULES = ("constant", "cosine", "plateau")
MAX_UNFREEZE_STAGES = 4  # ResNet-50 has four residual stages (conv2..conv5) above its stem.
MIN_IMAGE_SIZE = 32  # ResNet-50's five stride-2 stages need at least 32 px.
# "auto" class weighting turns on when the largest class has more than this many times the images
# of the smallest; the Dataset page and the health check flag imbalance at the same ratio.
IMBALANCE_RATIO = 1.5
# The decoded cache keeps a square this much larger than the model input (256 for 224), the
# usual "resize 256, centre-crop 224" evaluation recipe.
CACHE_RATIO = 8 / 7


class ConfigError(InvalidInput):
    """A setting is out of range; the message names it and the value received."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_types(cls: type, values: dict[str, Any], what: str) -> None:
    """A stored or hand-written config with a value of the wrong kind fails here, naming the field."""
    try:
        check_field_types(cls, values, what)
    except FieldTypeError as e:
        raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class AugmentConfig:
    """Random transforms applied during training only. Every field is off by default.

    Ranges are symmetric: `rotation=15` draws an angle in [-15, 15] degrees, `zoom=0.2` a
    zoom in [-20%, +20%], `brightness=0.1` a shift of up to 10% of the pixel range.
    """

    rotation: float = 0.0  # degrees
    width_shift: float = 0.0  # fraction of the width
    height_shift: float = 0.0  # fraction of the height
    shear: float = 0.0  # degrees
    zoom: float = 0.0  # fraction
    horizontal_flip: bool = False
    vertical_flip: bool = False
    brightness: float = 0.0  # fraction of the 0-255 range
    contrast: float = 0.0  # fraction

    def __post_init__(self) -> None:
        _check(
            0 <= self.rotation <= 180,
            f"rotation must be 0-180 degrees. Received: rotation={self.rotation}",
        )
        for name in ("width_shift", "height_shift", "zoom", "brightness", "contrast"):
            value = getattr(self, name)
            _check(0 <= value < 1, f"{name} must be in [0, 1). Received: {name}={value}")
        _check(0 <= self.shear < 60, f"shear must be 0-60 degrees. Received: shear={self.shear}")

    @property
    def enabled(self) -> bool:
        """True when at least one transform is on."""
        return self != AugmentConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def orientation_caveat(self) -> str | None:
        """What a vertical flip (or a large rotation) claims about the photos, when this config has one."""
        if self.vertical_flip:
            return (
                "Vertical flip is on: it trains on photos upside down. Right for subjects with no up or down "
                "(flowers seen from above, cells, satellite images); wrong for cats, cars, faces or text, which the "
                "model will never be shown upside down."
            )
        if self.rotation > 45:
            return (
                f"Rotation up to {self.rotation:g} degrees: photos lie on their side. Right only if your subjects "
                "have no up and down."
            )
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AugmentConfig:
        """Build from a dict, ignoring keys this version does not know (older or newer runs)."""
        if not data:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"augment must be an object of settings. Received: {data!r:.60}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        _check_types(cls, values, "augment")
        return cls(**values)


# What each transform does, in a sentence, for the Augmentation page and the docs.
AUGMENT_EXPLANATIONS = {
    "rotation": "Turns the photo by a random angle up to this many degrees either way; corners are mirrored in.",
    "width_shift": "Slides the photo left or right by up to this fraction of its width.",
    "height_shift": "Slides the photo up or down by up to this fraction of its height.",
    "shear": "Slants the photo (a parallelogram distortion) by up to this many degrees.",
    "zoom": "Zooms in or out by up to this fraction, keeping the aspect ratio.",
    "horizontal_flip": "Mirrors the photo left-right half of the time: right where a mirrored photo keeps its class "
    "(most objects and scenes), wrong for text, digits or signs.",
    "vertical_flip": "Mirrors the photo top-bottom half of the time; useful for photos taken from above.",
    "brightness": "Lightens or darkens by up to this fraction of the 0-255 range.",
    "contrast": "Raises or lowers the contrast by up to this fraction around the mean.",
}

DEFAULT_AUGMENT_PRESET = "standard"
AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    "light": AugmentConfig(rotation=10, zoom=0.1, horizontal_flip=True),
    "standard": AugmentConfig(
        rotation=20,
        width_shift=0.1,
        height_shift=0.1,
        zoom=0.15,
        horizontal_flip=True,
        brightness=0.1,
        contrast=0.1,
    ),
    "strong": AugmentConfig(
        rotation=40,
        width_shift=0.2,
        height_shift=0.2,
        shear=10,
        zoom=0.25,
        horizontal_flip=True,
        vertical_flip=True,
        brightness=0.2,
        contrast=0.2,
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run learns. Its canonical JSON names the run.

    The defaults are the Train page's and the CLI's. `weights` is "imagenet", "none", a weights file, or
    "run:<run_id>" to start from an earlier run's backbone. `backbone` names an entry of core.network.backbones:
    ResNet-50, the only one users pick (the test suite's tiny one while FLORA_TEST_BACKBONE selects it).
    A ResNet-50 config's JSON leaves `backbone` out, so runs keep the ids they had before it existed.

    `seed` starts the weights, the augmentation and the order of the photos; it draws the split too unless
    `split_seed` is set, which then draws the split alone: the same split seed with another seed is another random
    start on the very same training, validation and test photos. A config without `split_seed` leaves it out of its
    JSON, so its run id is the one it had before the field existed.

    `task` is the dataset's kind (core.data.tasks: "single", one class a photo, or "multilabel"), set from the
    dataset when a run is made (core.train.jobs.submit), never chosen: a multi-label run trains sigmoid outputs with
    binary cross-entropy and keeps a threshold per label, tuned on validation for the best F1, or, with
    `threshold_precision`, the lowest reaching that precision. Both are left out of the JSON at their defaults, so a
    single-label run's id is the one it always had.
    """

    image_size: int = 224
    weights: str = WEIGHTS_IMAGENET
    head: tuple[int, ...] = (256,)
    dropout: float = 0.2
    epochs: int = 10
    fine_tune_epochs: int = 0
    unfreeze_stages: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-5
    lr_schedule: str = "constant"  # both phases follow it: constant, cosine or plateau
    label_smoothing: float = 0.0
    early_stopping_patience: int = 3  # 0 turns early stopping off
    class_weighting: str = "auto"  # auto: balanced when the largest class is >1.5x the smallest
    # The app's default and the CLI's alike: the same settings are the same run wherever typed.
    augment: AugmentConfig = field(default_factory=lambda: AUGMENT_PRESETS[DEFAULT_AUGMENT_PRESET])
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42
    split_seed: int | None = None  # None: the split is drawn with `seed`
    feature_cache: bool = True  # frozen phase trains the head on cached backbone features
    augmented_views: int = 2  # cached augmented views per training image (plus the clean one)
    backbone: str = field(default_factory=backbones.default_backbone)
    task: str = SINGLE_LABEL  # the dataset's kind: core.train.jobs.submit sets it
    threshold_precision: float | None = None  # multi-label: each label's threshold reaches this validation precision

    def __post_init__(self) -> None:
        object.__setattr__(self, "head", tuple(int(u) for u in self.head))
        # Any registered backbone reads (a stored run of the test suite's too); building one is only possible
        # where it is offered (core.network.backbones.get), and only offered ones are a flag or a default.
        _check(
            self.backbone in backbones.BACKBONES,
            f"backbone must be one of {backbones.choices()}. Received: backbone={self.backbone!r}",
        )
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig.from_dict(self.augment))
        _check(
            MIN_IMAGE_SIZE <= self.image_size <= 1024,
            f"image_size must be between {MIN_IMAGE_SIZE} and 1024. Received: image_size={self.image_size}",
        )
        _check(
            bool(self.weights),
            "weights must be 'imagenet', 'none', a file or 'run:<id>'. Received: ''",
        )
        _check(
            all(u > 0 for u in self.head),
            f"head units must be positive. Received: head={self.head}",
        )
        _check(0 <= self.dropout < 1, f"dropout must be in [0, 1). Received: dropout={self.dropout}")
        _check(self.epochs >= 0, f"epochs must be >= 0. Received: epochs={self.epochs}")
        _check(
            self.fine_tune_epochs >= 0,
            f"fine_tune_epochs must be >= 0. Received: fine_tune_epochs={self.fine_tune_epochs}",
        )
        _check(
            self.epochs + self.fine_tune_epochs > 0,
            "at least one epoch is needed: epochs and fine_tune_epochs are both 0",
        )
        _check(
            0 <= self.unfreeze_stages <= MAX_UNFREEZE_STAGES,
            f"unfreeze_stages must be between 0 and {MAX_UNFREEZE_STAGES}. "
            f"Received: unfreeze_stages={self.unfreeze_stages}",
        )
        _check(
            not (self.fine_tune_epochs > 0 and self.unfreeze_stages == 0),
            "fine_tune_epochs > 0 needs unfreeze_stages >= 1 (there is nothing to fine-tune)",
        )
        _check(
            1 <= self.batch_size <= 4096,
            f"batch_size must be 1-4096. Received: batch_size={self.batch_size}",
        )
        _check(
            0 < self.learning_rate < 1,
            f"learning_rate must be in (0, 1). Received: learning_rate={self.learning_rate}",
        )
        _check(
            0 < self.fine_tune_learning_rate < 1,
            "fine_tune_learning_rate must be in (0, 1). "
            f"Received: fine_tune_learning_rate={self.fine_tune_learning_rate}",
        )
        _check(
            self.lr_schedule in LR_SCHEDULES,
            f"lr_schedule must be one of {LR_SCHEDULES}. Received: lr_schedule={self.lr_schedule!r}",
        )
        _check(
            0 <= self.label_smoothing < 1,
            f"label_smoothing must be in [0, 1). Received: label_smoothing={self.label_smoothing}",
        )
        _check(self.early_stopping_patience >= 0, "early_stopping_patience must be >= 0")
        _check(
            self.class_weighting in CLASS_WEIGHTING_CHOICES,
            f"class_weighting must be one of {CLASS_WEIGHTING_CHOICES}. "
            f"Received: class_weighting={self.class_weighting!r}",
        )
        _check(
            0 < self.val_fraction < 0.5,
            f"val_fraction must be in (0, 0.5). Received: val_fraction={self.val_fraction}",
        )
        _check(
            0 < self.test_fraction < 0.5,
            f"test_fraction must be in (0, 0.5). Received: test_fraction={self.test_fraction}",
        )
        _check(
            self.val_fraction + self.test_fraction < 0.8,
            "val_fraction + test_fraction must leave room for training",
        )
        _check(
            self.split_seed is None or 0 <= self.split_seed < 2**31,
            "split_seed must be 0 to 2**31-1, or unset (the seed draws the split). "
            f"Received: split_seed={self.split_seed}",
        )
        _check(self.task in TASKS, f"task must be one of {TASKS}. Received: task={self.task!r}")
        _check(
            self.threshold_precision is None or 0 < self.threshold_precision <= 1,
            "threshold_precision must be in (0, 1], or unset (each label's threshold gives its best F1). "
            f"Received: threshold_precision={self.threshold_precision}",
        )
        _check(
            0 <= self.augmented_views <= 16,
            f"augmented_views must be 0-16. Received: augmented_views={self.augmented_views}",
        )

    @property
    def cache_size(self) -> int:
        """Side of the decoded square kept in the cache (a little larger than the input)."""
        return cache_size_for(self.image_size)

    @property
    def split_draw_seed(self) -> int:
        """The seed the split is drawn with: `split_seed` when set, else `seed`."""
        return self.seed if self.split_seed is None else self.split_seed

    def for_dataset(self, index) -> TrainConfig:
        """These settings for a dataset (a DatasetIndex): its kind decides `task`, whatever these said."""
        return self if self.task == index.task else self.replace(task=index.task)

    @property
    def multilabel(self) -> bool:
        """Several labels a photo: sigmoid outputs, binary cross-entropy, validation mAP, a threshold per label."""
        return self.task == MULTI_LABEL

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.fine_tune_epochs

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["head"] = list(self.head)
        if self.backbone == backbones.DEFAULT_BACKBONE:
            del data["backbone"]  # the JSON (and so the run id) of a ResNet-50 run is what it was before the seam
        if self.split_seed is None:
            del data["split_seed"]  # likewise a run whose seed draws its split: its id is the one it always had
        if self.task == SINGLE_LABEL:
            del data["task"]  # and a single-label run's: the kind every run was before multi-label
        if self.threshold_precision is None:
            del data["threshold_precision"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys so older and newer run folders still load.

        A dict without `backbone` is a ResNet-50 config (to_dict leaves the default out).
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a training config is an object of settings. Received: {data!r:.60}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        _check_types(cls, values, "config")
        values.setdefault("backbone", backbones.DEFAULT_BACKBONE)
        if "augment" in values:
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        if "head" in values:
            values["head"] = tuple(values["head"])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def cache_size_for(image_size: int) -> int:
    """Side of the cached square for a model input of `image_size` pixels."""
    return round(image_size * CACHE_RATIO)


def canonical_json(data: Any) -> str:
    """Key-sorted, whitespace-free JSON: equal settings give equal strings."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def run_id_for(config: TrainConfig, dataset_fingerprint: str) -> str:
    """Short hash naming the run: the same config on the same data finds the same run."""
    payload = canonical_json({"config": config.to_dict(), "dataset": dataset_fingerprint})
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
