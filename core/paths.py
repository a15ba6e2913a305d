"""Where the run store and the datasets live: flags, then FLORA_* variables, then defaults."""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.network.backbones import BACKBONES, RESNET50

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_ENV = "FLORA_MODELS_DIR"
DATA_ENV = "FLORA_DATA_DIR"
CACHE_DIRNAME = ".cache"
FLORA_DIRNAME = ".flora"  # Flora's own files beside the datasets: workspace, presets, corrections, feedback, tasks


def flora_dir(data_root: str | os.PathLike) -> Path:
    """`<data>/.flora/`: what Flora keeps beside the datasets (never inside one): the workspace, presets, label
    corrections, feedback photos, dataset tasks, and a shared Flora's sign-in files."""
    return Path(data_root) / FLORA_DIRNAME


def models_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The run store: `explicit`, else $FLORA_MODELS_DIR, else the project's `models/`."""
    return _resolve(explicit, MODELS_ENV, PROJECT_ROOT / "models")


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The datasets folder: `explicit`, else $FLORA_DATA_DIR, else the project's `data/`."""
    return _resolve(explicit, DATA_ENV, PROJECT_ROOT / "data")


def cache_dir(data_root: str | os.PathLike | None = None) -> Path:
    """Decoded images and backbone features: `<data>/.cache/`."""
    return data_dir(data_root) / CACHE_DIRNAME


# --- the cache's names: what core.data.ingest, core.train.features and core.health write, and what
# core.health.caches lists and removes. A name is spelled here once, with the pattern that reads it back.
FEATURES_DIRNAME = "features"  # <data>/.cache/features/<features cache>/: pooled backbone features per view
RUNTIMES_DIRNAME = "runtimes"  # <data>/.cache/runtimes/<graph hash>.onnx: backbones and runs for core.runtimes
FOREIGN_DIRNAME = "foreign"  # <data>/.cache/foreign/: the OOD reference's foreign images' features, per backbone
DECODED_CACHE = re.compile(r"^(?P<fingerprint>[0-9a-f]{8,64})-(?P<size>\d+)(?P<jpeg>-jpeg)?$")
FEATURES_CACHE = re.compile(r"^(?P<fingerprint>[0-9a-f]{8,64})(?:-jpeg)?-(?P<size>\d+)-(?P<backbone>.+)$")
HEALTH_CACHE = re.compile(r"^(?P<fingerprint>[0-9a-f]{8,64})-(?P<what>[a-z_]+(?:-\d+)?)-v(?P<version>\d+)\.\w+$")


def features_dir(cache_root: str | os.PathLike) -> Path:
    """`<data>/.cache/features/`: every dataset's cached backbone features."""
    return Path(cache_root) / FEATURES_DIRNAME


def foreign_dir(cache_root: str | os.PathLike) -> Path:
    """`<data>/.cache/foreign/`: the foreign images' pooled features and statistics per frozen backbone
    (core.results.probabilities.foreign_features), whatever the dataset."""
    return Path(cache_root) / FOREIGN_DIRNAME


def runtimes_dir(cache_root: str | os.PathLike) -> Path:
    """`<data>/.cache/runtimes/`: backbones and runs written as ONNX graphs for the faster runtimes (core.runtimes),
    and whether each gave Keras's answers."""
    return Path(cache_root) / RUNTIMES_DIRNAME


def decoded_cache_name(fingerprint: str, size: int, format_suffix: str = "") -> str:
    """`<fingerprint>-<size>[-jpeg]`: a dataset's photos decoded into squares of `size` (DECODED_CACHE)."""
    return f"{fingerprint}-{size}{format_suffix}"


def features_cache_name(content_key: str, image_size: int, backbone_key: str) -> str:
    """`<content key>-<size>-<backbone hash>`: one backbone's features of a decoded cache (FEATURES_CACHE)."""
    return f"{content_key}-{image_size}-{backbone_key}"


def health_cache_name(fingerprint: str, what: str, version: int, suffix: str) -> str:
    """`<fingerprint>-<what>-v<version>.<suffix>`: a health check's table or report (HEALTH_CACHE)."""
    return f"{fingerprint}-{what}-v{version}.{suffix}"


def _resolve(explicit, env_name: str, default: Path) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    from_env = os.environ.get(env_name)
    if from_env:
        return Path(from_env).expanduser().resolve()
    return default


MACHINE_CACHE_ENV = "FLORA_MACHINE_CACHE"


def machine_cache_dir() -> Path:
    """What Flora measured about this machine (not about a dataset): $FLORA_MACHINE_CACHE, else
    `$XDG_CACHE_HOME/flora`, else `~/.cache/flora`. core.runtimes keeps its measured runtime choices there."""
    explicit = os.environ.get(MACHINE_CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "flora"


# Keras's own published file for ResNet-50 without its top, cached where Keras caches it.
IMAGENET_WEIGHTS_FILE = BACKBONES[RESNET50].imagenet.file


def relative_to_data(path: str | os.PathLike, data_root: str | os.PathLike, named: bool = True) -> str:
    """`path` as a shared Flora shows it to the people using it: from the data folder on (`data/flowers`,
    `data/.flora/corrections/x.json`; without the folder's own name when not `named`: `flowers`, what the command
    line takes for a dataset), else only its last part after `…/`. Nobody needs the server's own layout."""
    given, root = Path(path), Path(data_root)
    for candidate, base in ((given.absolute(), root.absolute()), (given.resolve(), root.resolve())):
        if candidate == base or candidate.is_relative_to(base):
            inner = candidate.relative_to(base).as_posix()
            return (root.name if inner == "." else f"{root.name}/{inner}") if named else inner
    return f"…/{given.name}"


# an absolute path's folders, where no word, scheme (https://) or name already cut (data/...) comes before it
_FOLDERS = re.compile(r"(?<![\w.:/~…-])/(?:[^\s/'\"(),:;]+/)+")


def hide_server_paths(text: str, data_root: str | os.PathLike) -> str:
    """`text` (a log a page shows) as a shared Flora shows it: paths in the data folder from the data folder on
    (`data/flowers`, as relative_to_data), every other absolute path cut to its last part (`…/training.py`)."""
    root = Path(data_root)
    for base in sorted({str(root.absolute()), str(root.resolve())}, key=len, reverse=True):
        text = re.sub(re.escape(base) + r"(?![^/\s'\"(),:;])", lambda _: root.name, text)
    return _FOLDERS.sub("…/", text)


def keras_home() -> Path:
    """Where Keras keeps downloads: $KERAS_HOME, else ~/.keras."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def imagenet_weights_file() -> Path:
    return keras_home() / "models" / IMAGENET_WEIGHTS_FILE


def imagenet_weights_cached() -> bool:
    """True when the ImageNet weights are already on this machine (no download needed)."""
    return imagenet_weights_file().is_file()
