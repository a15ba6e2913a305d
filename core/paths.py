"""Where the run store and the datasets live: flags, then FLORA_* variables, then defaults."""

from __future__ import annotations

import os
from pathlib import Path

from core.network.backbones import BACKBONES, RESNET50

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_ENV = "FLORA_MODELS_DIR"
DATA_ENV = "FLORA_DATA_DIR"
CACHE_DIRNAME = ".cache"


def models_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The run store: `explicit`, else $FLORA_MODELS_DIR, else the project's `models/`."""
    return _resolve(explicit, MODELS_ENV, PROJECT_ROOT / "models")


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The datasets folder: `explicit`, else $FLORA_DATA_DIR, else the project's `data/`."""
    return _resolve(explicit, DATA_ENV, PROJECT_ROOT / "data")


def cache_dir(data_root: str | os.PathLike | None = None) -> Path:
    """Decoded images and backbone features: `<data>/.cache/`."""
    return data_dir(data_root) / CACHE_DIRNAME


def _resolve(explicit, env_name: str, default: Path) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    from_env = os.environ.get(env_name)
    if from_env:
        return Path(from_env).expanduser().resolve()
    return default


# Keras's own published file for ResNet-50 without its top, cached where Keras caches it.
IMAGENET_WEIGHTS_FILE = BACKBONES[RESNET50].imagenet.file


def keras_home() -> Path:
    """Where Keras keeps downloads: $KERAS_HOME, else ~/.keras."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def imagenet_weights_file() -> Path:
    return keras_home() / "models" / IMAGENET_WEIGHTS_FILE


def imagenet_weights_cached() -> bool:
    """True when the ImageNet weights are already on this machine (no download needed)."""
    return imagenet_weights_file().is_file()
