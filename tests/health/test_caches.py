"""The data folder's caches: listed with their sizes and why the stale ones are stale; only those removed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.data.cache_disk import INDEX_FILE
from core.data.datasets import scan_dataset
from core.data.ingest import ingest
from core.health import caches as cache_inventory
from core.health.caches import DATASET_CHANGED, DATASET_GONE, IN_USE, OLD_FORMAT, UNFINISHED
from core.health.table import CACHE_VERSION as HEALTH_VERSION
from tests.conftest import make_image_dataset


def fingerprints(*folders) -> dict[str, str]:
    """{fingerprint: folder} of the datasets as they are now: what the Dataset page's Disk tab hands `inventory`."""
    return {index.fingerprint: str(index.root) for index in map(scan_dataset, folders)}


@pytest.fixture
def caches(tmp_path):
    cache = tmp_path / "data" / ".cache"
    kept = make_image_dataset(tmp_path / "data" / "kept", {"a": 4, "b": 4})
    edited = make_image_dataset(tmp_path / "data" / "edited", {"a": 4, "b": 4})
    gone = make_image_dataset(tmp_path / "data" / "gone", {"a": 4, "b": 4}, seed=3)
    for root in (kept, edited, gone):
        ingest(scan_dataset(root), 24, cache, workers=1)
    before_edit = scan_dataset(edited).fingerprint
    shutil.copy(edited / "a" / "img_000.png", edited / "a" / "added.png")  # a new version of the dataset
    ingest(scan_dataset(edited), 24, cache, workers=1)
    shutil.rmtree(gone)
    old = cache / f"{scan_dataset(kept).fingerprint}-30"
    ingest(scan_dataset(kept), 30, cache, workers=1)
    index = json.loads((old / INDEX_FILE).read_text())
    (old / INDEX_FILE).write_text(json.dumps({**index, "version": 1}))
    (cache / ".abcdef0123456789-24.123.456.tmp").mkdir()
    (cache / ".abcdef0123456789-24.123.456.tmp" / "images.npy").write_bytes(b"\0" * 5000)
    (cache / f"{before_edit}-table-v{HEALTH_VERSION}.parquet").write_bytes(b"x" * 100)
    (cache / f"{before_edit}-report-224-v{HEALTH_VERSION}.json").write_bytes(b"{}")  # a saved health report
    current = fingerprints(kept, edited)
    return cache, current, {"kept": kept, "edited": edited, "gone": gone, "before_edit": before_edit}


def test_every_cache_is_listed_with_its_size_and_state(caches):
    cache, current, roots = caches
    entries = cache_inventory.inventory(cache, current)
    by_state = {}
    for entry in entries:
        by_state.setdefault(entry.state, []).append(entry)
        assert entry.bytes > 0, entry
    in_use = {(e.dataset, e.size) for e in by_state[IN_USE]}
    assert in_use == {(str(roots["kept"]), 24), (str(roots["edited"]), 24)}
    assert [(e.dataset, e.kind) for e in by_state[DATASET_GONE]] == [(str(roots["gone"]), "decoded photos")]
    changed = {(e.fingerprint, e.kind) for e in by_state[DATASET_CHANGED]}
    assert changed == {(roots["before_edit"], "decoded photos"), (roots["before_edit"], "health check")}
    assert len(by_state[DATASET_CHANGED]) == 3  # the decoded photos, the health table and its report
    assert [e.size for e in by_state[OLD_FORMAT]] == [30]
    assert len(by_state[UNFINISHED]) == 1
    assert not any(e.state == IN_USE for e in entries[: len(entries) - len(by_state[IN_USE])])  # stale ones first


def test_removing_frees_the_stale_ones_and_never_one_in_use(caches):
    cache, current, _ = caches
    entries = cache_inventory.inventory(cache, current)
    stale = [e for e in entries if e.removable]
    freed = cache_inventory.remove(entries, cache)  # even handed every entry, it removes only the stale
    assert freed == sum(e.bytes for e in stale)
    left = cache_inventory.inventory(cache, current)
    assert {e.state for e in left} == {IN_USE} and len(left) == 2
    for entry in left:
        assert ingest(scan_dataset(entry.dataset), entry.size, cache, workers=1).hit


def test_a_path_outside_the_cache_folder_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    entry = cache_inventory.CacheEntry(outside, "decoded photos", 1, "ab", "", 24, DATASET_GONE)
    with pytest.raises(ValueError, match="not under the cache folder"):
        cache_inventory.remove([entry], tmp_path / "cache")
    assert outside.exists()


def test_a_compact_cache_is_listed_as_jpeg_and_in_use(tmp_path):
    root = make_image_dataset(tmp_path / "data" / "kept", {"a": 3, "b": 3})
    cache = tmp_path / "data" / ".cache"
    ingest(scan_dataset(root), 28, cache, workers=1, format="jpeg")
    (entry,) = cache_inventory.inventory(cache, fingerprints(root))
    assert (entry.kind, entry.size, entry.state, entry.dataset) == ("decoded photos (JPEG)", 28, IN_USE, str(root))


def test_the_runtimes_graphs_are_listed_and_removable(tmp_path):
    from core.health.caches import REWRITTEN
    from core.paths import runtimes_dir

    cache = tmp_path / ".cache"
    graphs = runtimes_dir(cache)
    graphs.mkdir(parents=True)
    (graphs / "0123abcd.onnx").write_bytes(b"\0" * 8192)
    (entry,) = cache_inventory.inventory(cache, {})
    assert entry.kind == "runtime graphs (ONNX)" and entry.state == REWRITTEN and entry.removable
    assert cache_inventory.remove([entry], cache) >= 8192 and not graphs.exists()


def test_the_foreign_images_features_are_listed_and_removable(tmp_path):
    """Kept per backbone for the OOD reference, whatever the dataset: listed, removable, written again when needed."""
    from core.health.caches import FOREIGN_REWRITTEN
    from core.results.probabilities.foreign_features import foreign_features_path, keep_foreign_features

    cache = tmp_path / ".cache"
    path = foreign_features_path(cache, "0123abcd", 32, 37, 0)
    keep_foreign_features(path, {"noise": (np.zeros((2, 8), np.float32), np.zeros((2, 3)))})
    (entry,) = cache_inventory.inventory(cache, {})
    assert entry.path == path.parent and entry.state == FOREIGN_REWRITTEN and entry.removable
    assert "foreign images" in entry.kind
    assert cache_inventory.remove([entry], cache) > 0 and not path.exists()
