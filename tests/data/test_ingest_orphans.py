"""kill -9 while decoding: the worker processes end with their parent, and the next decode removes the
half-built staging folder it left (before: a worker and the resource tracker lived on, the folder forever)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.data.datasets import scan_dataset
from core.data.decode_pool import decode_chunk
from core.data.ingest import ingest, remove_stale_staging
from core.processes import process_alive
from tests.conftest import PROJECT_ROOT, make_image_dataset

_REAL_DECODE_CHUNK = decode_chunk  # bound before the parent script patches core.data.decode_pool's


def slow_signed_decode(images_path, offset, size, items):
    """decode_chunk, slowly, leaving a file named after the process that ran it (workers import this)."""
    Path(os.environ["FLORA_TEST_SIGNS"], str(os.getpid())).touch()
    time.sleep(0.5)
    return _REAL_DECODE_CHUNK(images_path, offset, size, items)


_PARENT = """
import sys
from core.data import decode_pool, ingest as module
from core.data.datasets import scan_dataset
from tests.data.test_ingest_orphans import slow_signed_decode
decode_pool.decode_chunk = slow_signed_decode
module.ingest(scan_dataset(sys.argv[1]), 16, sys.argv[2], workers=3)
"""


@pytest.mark.slow
def test_killed_decoder_leaves_no_process_and_its_staging_is_removed(tmp_path):
    root = make_image_dataset(tmp_path / "many", {"a": 300, "b": 300}, size=(24, 24))
    cache, signs = tmp_path / "cache", tmp_path / "signs"
    signs.mkdir()
    env = {**os.environ, "FLORA_TEST_SIGNS": str(signs), "PYTHONPATH": str(PROJECT_ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(root), str(cache)], cwd=PROJECT_ROOT, env=env)
    try:
        deadline = time.monotonic() + 90
        workers: set[int] = set()
        while time.monotonic() < deadline and not workers:
            workers = {int(p.name) for p in signs.iterdir()} - {parent.pid}
            assert parent.poll() is None, "the decoder ended before a worker started"
            time.sleep(0.1)
        assert workers, "no worker process started decoding"
        staging = [p for p in cache.iterdir() if p.name.endswith(".tmp")]
        assert staging, "decoding should be writing into a staging folder"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(process_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(process_alive(pid) for pid in workers), "a decoding worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
    assert remove_stale_staging(cache) == staging
    result = ingest(scan_dataset(root), 16, cache, workers=1)
    assert len(result) == 600 and [p.name for p in cache.iterdir()] == [result.directory.name]


def test_a_live_decoders_staging_folder_is_left_alone(tmp_path):
    live = tmp_path / f".abc-16.{os.getpid()}.123.tmp"
    parent = tmp_path / f".abc-16.{os.getppid()}.456.tmp"
    live.mkdir()
    parent.mkdir()
    (tmp_path / ".abc-16.notapid.1.tmp").mkdir()
    assert remove_stale_staging(tmp_path) == []
    assert live.exists() and parent.exists()


def test_another_machines_staging_folder_on_shared_storage_is_left_alone_while_it_changes(tmp_path):
    """Caches on storage several machines mount (a Ray cluster): a pid of another host means nothing here, so
    its half-built folder goes only once it has not changed for a day."""
    from core.data import ingest as module
    from core.processes import host_tag

    busy = tmp_path / f".abc-16.{os.getpid() + 999_999}@other-node.1.tmp"  # a pid not alive here
    (busy / "part").mkdir(parents=True)
    left = tmp_path / ".abc-16.12345@gone-node.2.tmp"
    left.mkdir()
    day_ago = time.time() - module.FOREIGN_STAGING_SECONDS - 60
    os.utime(left, (day_ago, day_ago))
    mine_dead = tmp_path / f".abc-16.{os.getpid() + 999_999}@{host_tag()}.3.tmp"
    mine_dead.mkdir()
    assert sorted(remove_stale_staging(tmp_path)) == sorted([left, mine_dead])
    assert busy.exists()
    staging = module._staging_name(tmp_path / "abc-16", "tmp")
    assert staging.split(".")[-3] == f"{os.getpid()}@{host_tag()}" and "." not in host_tag()
