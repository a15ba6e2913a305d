"""The decoded-image cache: bad files skipped with reasons, a hit the second time, batch reads."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data import cache_disk, decode_pool
from core.data.datasets import scan_dataset
from core.data.decode_pool import IngestCancelled, decode_chunk
from core.data.imaging import load_square
from core.data.ingest import cache_folder, ingest, load_cache
from tests.conftest import make_image_dataset


@pytest.fixture
def messy_dataset(tmp_path):
    root = make_image_dataset(tmp_path / "messy", {"a": 5, "b": 5})
    (root / "a" / "zero.jpg").write_bytes(b"")
    (root / "a" / "text.jpg").write_text("hello")
    good = root / "b" / "img_000.png"
    cut = root / "b" / "cut.png"
    cut.write_bytes(good.read_bytes()[:60])
    Image.new("CMYK", (30, 20), (0, 200, 0, 0)).save(root / "b" / "cmyk photo é.jpg")
    return root


def test_ingest_skips_unreadable_files_and_lists_reasons(messy_dataset, tmp_path):
    index = scan_dataset(messy_dataset)
    calls = []
    cache = ingest(index, 20, tmp_path / "cache", progress=lambda d, t: calls.append((d, t)), workers=1)
    assert len(index.entries) == 14 and len(cache) == 11
    reasons = {f["path"]: f["reason"] for f in cache.failures}
    assert set(reasons) == {"a/zero.jpg", "a/text.jpg", "b/cut.png"}
    assert "not an image" in reasons["a/text.jpg"]
    assert "truncated" in reasons["b/cut.png"] or "corrupt" in reasons["b/cut.png"]
    assert "b/cmyk photo é.jpg" in cache.paths
    assert calls[0] == (0, 14) and calls[-1] == (14, 14)
    assert not cache.hit


def test_second_ingest_is_a_cache_hit(tiny_dataset, tmp_path):
    index = scan_dataset(tiny_dataset)
    first = ingest(index, 16, tmp_path / "cache", workers=1)
    images = first.directory / "images.npy"
    stamp = images.stat().st_mtime_ns
    second = ingest(index, 16, tmp_path / "cache", workers=1)
    assert second.hit and images.stat().st_mtime_ns == stamp
    assert second.paths == first.paths
    # another size is another cache
    assert not ingest(index, 20, tmp_path / "cache", workers=1).hit


def test_cached_rows_equal_direct_decoding_and_parallel_equals_serial(tmp_path):
    root = make_image_dataset(tmp_path / "many", {"a": 60, "b": 60}, size=(50, 30))
    index = scan_dataset(root)
    serial = ingest(index, 24, tmp_path / "serial", workers=1)
    parallel = ingest(index, 24, tmp_path / "parallel", workers=2)
    positions = np.array([0, 7, 119, 64])
    batch = serial.read(positions)
    np.testing.assert_array_equal(batch, parallel.read(positions))
    for row, position in zip(batch, positions, strict=True):
        np.testing.assert_array_equal(row, load_square(root / serial.paths[position], 24))
    np.testing.assert_array_equal(serial.labels, index.labels)


def test_cache_survives_pickling_and_reload(tiny_dataset, tmp_path):
    import pickle

    index = scan_dataset(tiny_dataset)
    cache = ingest(index, 16, tmp_path / "cache", workers=1)
    clone = pickle.loads(pickle.dumps(cache))
    np.testing.assert_array_equal(clone.read([1, 2]), cache.read([1, 2]))
    loaded = load_cache(cache_folder(tmp_path / "cache", index.fingerprint, 16))
    assert loaded is not None and loaded.paths == cache.paths


def test_partial_or_foreign_cache_is_ignored(tiny_dataset, tmp_path):
    index = scan_dataset(tiny_dataset)
    folder = cache_folder(tmp_path / "cache", index.fingerprint, 16)
    folder.mkdir(parents=True)
    (folder / "index.json").write_text('{"version": 0}')
    assert load_cache(folder) is None
    assert not ingest(index, 16, tmp_path / "cache", workers=1).hit


def test_ingest_can_be_cancelled_and_leaves_nothing_behind(tmp_path):
    root = make_image_dataset(tmp_path / "many", {"a": 120, "b": 120})
    index = scan_dataset(root)
    with pytest.raises(IngestCancelled):
        ingest(index, 16, tmp_path / "cache", workers=1, should_stop=lambda: True)
    assert list((tmp_path / "cache").iterdir()) == []


_REAL_DECODE_CHUNK = decode_chunk  # imported before any test patches it (worker processes import afresh)


def _decode_and_sign(images_path, offset, size, items):
    """decode_chunk that leaves a file named after the process that ran it (and is slow in the test's own)."""
    import os
    import time
    from pathlib import Path

    signs = Path(os.environ["FLORA_TEST_SIGNS"])
    if str(os.getpid()) == os.environ["FLORA_TEST_PARENT"]:
        # The test's process lags until a worker has signed (at most 2 s a chunk, 13 chunks: ~26 s),
        # so a worker that starts slowly on a loaded machine still gets chunks; no lag once one has.
        parent, deadline = os.environ["FLORA_TEST_PARENT"], time.monotonic() + 2.0
        while time.monotonic() < deadline and all(p.name == parent for p in signs.iterdir()):
            time.sleep(0.05)
    Path(signs, str(os.getpid())).touch()
    return _REAL_DECODE_CHUNK(images_path, offset, size, items)


def test_worker_processes_and_this_one_decode_together(tmp_path, monkeypatch):
    import os

    root = make_image_dataset(tmp_path / "many", {"a": 100, "b": 100}, size=(50, 30))
    signs = tmp_path / "signs"
    signs.mkdir()
    monkeypatch.setenv("FLORA_TEST_PARENT", str(os.getpid()))
    monkeypatch.setenv("FLORA_TEST_SIGNS", str(signs))
    monkeypatch.setattr(decode_pool, "decode_chunk", _decode_and_sign)
    index = scan_dataset(root)
    cache = ingest(index, 24, tmp_path / "cache", workers=3)
    pids = {p.name for p in signs.iterdir()}
    assert str(os.getpid()) in pids and len(pids) >= 2  # this process and at least one worker
    assert len(cache) == 200 and not cache.failures
    for position in (0, 57, 123, 199):
        np.testing.assert_array_equal(cache.read([position])[0], load_square(root / cache.paths[position], 24))


def test_a_broken_worker_pool_leaves_the_decoding_to_this_process(tmp_path, monkeypatch):
    import concurrent.futures.process

    class BrokenPool(concurrent.futures.ProcessPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            future = concurrent.futures.Future()
            future.set_exception(concurrent.futures.process.BrokenProcessPool("a worker died"))
            return future

    monkeypatch.setattr(decode_pool.concurrent.futures, "ProcessPoolExecutor", BrokenPool)
    root = make_image_dataset(tmp_path / "many", {"a": 60, "b": 60})
    cache = ingest(scan_dataset(root), 16, tmp_path / "cache", workers=2)
    assert len(cache) == 120 and not cache.failures
    np.testing.assert_array_equal(cache.read([119])[0], load_square(root / cache.paths[119], 16))


def test_a_disk_without_room_is_said_before_decoding_and_nothing_is_written(tiny_dataset, tmp_path, monkeypatch):
    import collections
    import shutil

    index = scan_dataset(tiny_dataset)
    need = cache_disk.cache_bytes(len(index.entries), 64)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - need, need))  # no margin left
    with pytest.raises(cache_disk.NotEnoughDisk) as refused:
        ingest(index, 64, tmp_path / "cache", workers=1)
    message = str(refused.value)
    assert (
        f"{len(index.entries):,} photos at 64 px" in message and "free" in message and "Nothing was written" in message
    )
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 0, 10**12))
    assert len(ingest(index, 64, tmp_path / "cache", workers=1)) == len(index.entries)


def test_cache_bytes_are_the_squares_it_holds():
    from core.data.cache_disk import cache_bytes, human_bytes

    assert cache_bytes(300_000, 224) == 300_000 * 224 * 224 * 3
    assert human_bytes(cache_bytes(300_000, 224)) == "45.2 GB"
    assert human_bytes(512) == "512 bytes"


def test_the_compact_cache_holds_jpegs_that_read_back_close_to_the_raw_squares(messy_dataset, tmp_path):
    from core.data.cache_disk import COMPACT, JPEGS_FILE, RAW

    index = scan_dataset(messy_dataset)
    raw = ingest(index, 32, tmp_path / "raw", workers=1, format=RAW)
    compact = ingest(index, 32, tmp_path / "compact", workers=2, format=COMPACT)
    assert compact.format == COMPACT and compact.directory.name.endswith("-32-jpeg")
    assert compact.paths == raw.paths and {f["path"] for f in compact.failures} == {f["path"] for f in raw.failures}
    assert (compact.directory / JPEGS_FILE).stat().st_size < (raw.directory / "images.npy").stat().st_size
    a, b = raw.read(range(len(raw))).astype(int), compact.read(range(len(compact))).astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() < 4  # q95 JPEG: a few levels of 255 on average
    assert compact.content_key == f"{index.fingerprint}-jpeg" and raw.content_key == index.fingerprint
    again = ingest(index, 32, tmp_path / "compact", workers=1)  # either format is a hit, whatever the default
    assert again.hit and again.format == COMPACT
    reloaded = load_cache(compact.directory)
    assert np.array_equal(reloaded.read([3, 0]), compact.read([3, 0]))


def test_the_format_follows_the_environment_else_the_disk(tiny_dataset, tmp_path, monkeypatch):
    import collections
    import shutil

    from core.data import ingest as ingest_module

    index = scan_dataset(tiny_dataset)
    monkeypatch.setenv("FLORA_CACHE_FORMAT", "jpeg")
    assert ingest(index, 24, tmp_path / "a", workers=1).format == "jpeg"
    monkeypatch.setenv("FLORA_CACHE_FORMAT", "bmp")
    with pytest.raises(ValueError, match="FLORA_CACHE_FORMAT must be raw, jpeg or auto"):
        ingest(index, 24, tmp_path / "b", workers=1)
    monkeypatch.delenv("FLORA_CACHE_FORMAT")
    assert ingest(index, 24, tmp_path / "c", workers=1).format == "raw"  # room enough: the raw squares
    raw_need = cache_disk.cache_bytes(len(index.entries), 24)
    usage = collections.namedtuple("usage", "total used free")
    free = cache_disk.DISK_MARGIN_BYTES + raw_need // 2  # the JPEGs fit, the raw squares do not
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - free, free))
    plan = ingest_module.disk_plan(tmp_path / "d", index.fingerprint, len(index.entries), 24)
    assert plan.format == "jpeg" and plan.fits and "as JPEGs" in plan.sentence(len(index.entries), 24)
    assert ingest(index, 24, tmp_path / "d", workers=1).format == "jpeg"
