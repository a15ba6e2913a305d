"""The decoded cache is read in batches, never whole: reading all of it barely moves a process's RSS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.data.datasets import scan_dataset
from core.data.ingest import ingest
from tests.conftest import PROJECT_ROOT, make_image_dataset

SIZE = 448  # big rows (602 KB each) from small photos: a cache of ~150 MB from a few seconds of decoding

# In a fresh process: read every row through ImageBatches (the training path) and through a
# FeatureCache-style sequential pass, then, as a control, through a whole-file memory map. The
# control proves the measurement sees a cache held in memory.
_READ_ALL = """
import json, sys
import numpy as np
from core.data.ingest import load_cache
from core.train.batches import ImageBatches

def rss():  # resident now (the high-water mark would still hold the framework's start-up peak)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

cache = load_cache(sys.argv[1])
start = rss()
growth = 0
batches = ImageBatches(cache, np.arange(len(cache)), len(cache.classes), 384, batch_size=8, shuffle=True)
for epoch in range(2):
    for i in range(len(batches)):
        x, y = batches[i]
        assert x.dtype == np.uint8 and x.shape[1:] == (384, 384, 3)
        growth = max(growth, rss() - start)
    batches.on_epoch_end()
for first in range(0, len(cache), 16):
    cache.read(np.arange(first, min(len(cache), first + 16)))
    growth = max(growth, rss() - start)
whole = np.load(cache.directory / "images.npy", mmap_mode="r")
rows = sum(1 for i in range(len(whole)) if whole[i].sum(dtype=np.uint64) >= 0)  # touches every page
print(json.dumps({"batched": growth, "mapped": rss() - start, "rows": rows}))
"""


@pytest.mark.slow
@pytest.mark.backend_agnostic
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_reading_the_whole_cache_in_batches_keeps_rss_far_below_its_size(tmp_path):
    dataset = make_image_dataset(tmp_path / "d", {"a": 150, "b": 150}, size=(24, 20))
    cache = ingest(scan_dataset(dataset), SIZE, tmp_path / "cache", workers=2)
    cache_bytes = len(cache) * cache.row_bytes
    assert cache_bytes > 150e6
    out = subprocess.run(
        [sys.executable, "-c", _READ_ALL, str(cache.directory)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == len(cache)
    # a batch of 8 rows is ~5 MB; the whole cache would be 30 times that
    assert result["batched"] < 0.15 * cache_bytes, result
    # the control: touching every row of a memory map does show up, so the bound above means something
    assert result["mapped"] > 0.8 * cache_bytes, result
