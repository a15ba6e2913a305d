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


def test_one_link_rule_at_every_depth(tmp_path):
    """Before (probe): `data/escape/stolen -> /outside/secretcls` was listed as class "stolen" while a dataset
    folder linked into data/ was refused with "Move or link the dataset into one of them"."""
    from core.data.roots import LINK_RULE, check_links

    data, outside = tmp_path / "data", tmp_path / "outside"
    make_image_dataset(outside / "secret", {"secretcls": 2})
    dataset = make_image_dataset(data / "escape", {"fine": 2})
    (dataset / "stolen").symlink_to(outside / "secret" / "secretcls")  # a class folder
    inside_link = make_image_dataset(data / "other", {"x": 2})
    (dataset / "fine" / "photo-link.png").symlink_to(next((inside_link / "x").iterdir()))  # a photo, inside
    roots = [data.resolve()]
    index = scan_dataset(dataset)
    assert sorted(index.links) == ["fine/photo-link.png", "stolen"]
    with pytest.raises(OutsideDataRoots, match="stolen -> ") as refused:
        check_links(index.root, index.links, roots)
    assert LINK_RULE in str(refused.value) and "fine/photo-link" not in str(refused.value)
    (dataset / "stolen").unlink()
    check_links(dataset, scan_dataset(dataset).links, roots)  # a link inside the roots counts
    (data / "linked").symlink_to(outside / "secret")  # the dataset folder itself
    with pytest.raises(OutsideDataRoots, match="is a link to it") as folder:
        check_inside(data / "linked", roots)
    assert LINK_RULE in str(folder.value) and "Move or copy" in str(folder.value)
