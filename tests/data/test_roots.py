"""Data roots: the folders the app may read datasets from, and a folder scan that stops at its bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.data.datasets import ScanLimit, scan_dataset
from core.data.roots import ROOTS_ENV, OutsideDataRoots, check_inside, data_roots, inside
from tests.conftest import make_image_dataset


def test_roots_local_shared_and_configured(tmp_path, monkeypatch):
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    data = tmp_path / "data"
    local = data_roots(data, shared=False)
    assert local[0] == data.resolve() and Path.home().resolve() in local
    assert data_roots(data, shared=True) == [data.resolve()]  # shared: the data folder alone
    monkeypatch.setenv(ROOTS_ENV, os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert data_roots(data, shared=True) == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve(), data.resolve()]


def test_inside_resolves_links_and_dot_dots(tmp_path):
    root = tmp_path / "root"
    (root / "ds").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret")
    roots = [root.resolve()]
    assert inside(root / "ds", roots) and inside(root, roots)
    assert not inside(root / "link", roots)  # a link out of the root is outside
    assert not inside(root / ".." / "secret", roots)
    assert not inside("/", roots)
    with pytest.raises(OutsideDataRoots, match="FLORA_DATA_ROOTS"):
        check_inside("/usr/share/icons", roots)


def test_a_scan_stops_at_its_bound_and_says_so(tmp_path):
    dataset = make_image_dataset(tmp_path / "ds", {"a": 30, "b": 30})
    assert len(scan_dataset(dataset).entries) == 60  # unbounded: everything
    with pytest.raises(ScanLimit, match="after 10 file names"):
        scan_dataset(dataset, max_files=10)
    with pytest.raises(ScanLimit, match="file names so far"):
        scan_dataset(dataset, max_seconds=-1)
