"""What the data folder's caches hold, which are still used, and removing the rest.

`data/.cache` keeps, per dataset fingerprint (a dataset's files and their times: an edited dataset
gets a new one), the decoded squares (`<fingerprint>-<size>/`), ResNet-50 features
(`features/<fingerprint>-<size>-<backbone>/`) and the health check's tables
(`<fingerprint>-<what>-v<N>.<ext>`), and the backbones and runs written as ONNX for the faster runtimes
(`runtimes/`, core.runtimes), and the out-of-distribution reference's foreign images' features per backbone
(`foreign/`). Nothing ever removed them: a dataset deleted or edited left its
caches behind, 45 GB for 300k photos at 224 px. Here each is listed with its size and why it is
stale (the dataset is gone, it changed since, or the cache is of an older format), and the stale
ones can be removed. A cache of a dataset in use is never listed as removable.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.data.cache_disk import CACHE_VERSION, INDEX_FILE
from core.fileio import read_json
from core.health.table import CACHE_VERSION as HEALTH_VERSION
from core.paths import DECODED_CACHE, FEATURES_CACHE, HEALTH_CACHE, features_dir, foreign_dir, runtimes_dir

IN_USE = "in use"
DATASET_GONE = "its dataset is gone"
DATASET_CHANGED = "its dataset changed since (an older version)"
OLD_FORMAT = "an older cache format"
UNFINISHED = "left unfinished by a stopped decode"
UNKNOWN = "no dataset here has its fingerprint"
REWRITTEN = "written again when needed (about a second a graph)"
FOREIGN_REWRITTEN = "written again when needed (a pass of 192 images when a run fits its reference)"


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    kind: str  # "decoded photos", "features", "health check"
    bytes: int
    fingerprint: str
    dataset: str  # the dataset folder it was made from, where known
    size: int | None  # the square's side, px
    state: str

    @property
    def removable(self) -> bool:
        return self.state != IN_USE


def inventory(cache_root: str | os.PathLike, current: dict[str, str]) -> list[CacheEntry]:
    """Every cache under `cache_root`, largest first. `current` maps the fingerprints of the datasets
    as they are now to their folders (from a scan of each); a cache of another fingerprint is stale."""

    root = Path(cache_root)
    if not root.is_dir():
        return []
    roots: dict[str, str] = {}  # fingerprint -> dataset folder, as the decoded caches recorded it
    entries: list[CacheEntry] = []
    for path in sorted(root.iterdir()):
        if path.is_dir() and path.name.startswith(".") and path.name.endswith(".tmp"):
            entries.append(CacheEntry(path, "decoded photos", folder_bytes(path), "", "", None, UNFINISHED))
            continue
        match = DECODED_CACHE.match(path.name)
        if path.is_dir() and match:
            index = _read_index(path / INDEX_FILE)
            dataset = str(index.get("dataset_root", "")) if index else ""
            fingerprint = match["fingerprint"]
            if dataset:
                roots[fingerprint] = dataset
            if index is None or index.get("version") != CACHE_VERSION:
                state = OLD_FORMAT if index is not None else UNFINISHED
            else:
                state = _state(fingerprint, dataset, current)
            size = folder_bytes(path)
            kind = "decoded photos (JPEG)" if match["jpeg"] else "decoded photos"
            entries.append(CacheEntry(path, kind, size, fingerprint, dataset, int(match["size"]), state))
    features = features_dir(root)
    derived = (
        [(p, FEATURES_CACHE, "features") for p in sorted(features.iterdir()) if p.is_dir()] if features.is_dir() else []
    )
    derived += [(p, HEALTH_CACHE, "health check") for p in sorted(root.iterdir()) if p.is_file()]
    for path, pattern, kind in derived:  # made from a dataset's photos: known by fingerprint only
        match = pattern.match(path.name)
        if not match:
            continue
        fingerprint = match["fingerprint"]
        dataset = current.get(fingerprint) or roots.get(fingerprint, "")
        older = kind == "health check" and int(match["version"]) != HEALTH_VERSION
        state = OLD_FORMAT if older else _state(fingerprint, dataset, current)
        size = int(match["size"]) if kind == "features" else None
        entries.append(CacheEntry(path, kind, folder_bytes(path), fingerprint, dataset, size, state))
    foreign = foreign_dir(root)
    if foreign.is_dir() and any(foreign.iterdir()):
        kind = "foreign images' features (the out-of-distribution reference's)"
        entries.append(CacheEntry(foreign, kind, folder_bytes(foreign), "", "", None, FOREIGN_REWRITTEN))
    graphs = runtimes_dir(root)
    if graphs.is_dir() and any(graphs.iterdir()):
        entries.append(CacheEntry(graphs, "runtime graphs (ONNX)", folder_bytes(graphs), "", "", None, REWRITTEN))
    return sorted(entries, key=lambda e: (e.state == IN_USE, -e.bytes))


def _state(fingerprint: str, dataset: str, current: dict[str, str]) -> str:
    if fingerprint in current:
        return IN_USE
    if dataset and not Path(dataset).is_dir():
        return DATASET_GONE
    if dataset and dataset in current.values():
        return DATASET_CHANGED
    return UNKNOWN if not dataset else DATASET_CHANGED


def _read_index(path: Path) -> dict | None:
    try:
        index = read_json(path)
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) else None


def remove(entries: list[CacheEntry], cache_root: str | os.PathLike) -> int:
    """Remove the removable `entries` (never one in use, never a path outside `cache_root`); return the bytes freed."""
    root = Path(cache_root).resolve()
    freed = 0
    for entry in entries:
        if not entry.removable:
            continue
        path = entry.path.resolve()
        if root not in path.parents:
            raise ValueError(f"{entry.path} is not under the cache folder {root}")
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        freed += entry.bytes
    return freed


def folder_bytes(folder: Path) -> int:
    """Disk used by the files under `folder`, or by `folder` if it is a file (allocated blocks: a sparse file
    counts what it holds)."""
    if os.path.isfile(folder):
        return os.lstat(folder).st_blocks * 512
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total
