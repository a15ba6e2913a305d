"""Data roots: the folders the app may read datasets from, and a folder scan that stops at its bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.data.datasets import DatasetError, ScanLimit, list_datasets, scan_dataset
from core.data.roots import ROOTS_ENV, OutsideDataRoots, check_inside, check_source, data_roots, inside
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
    with pytest.raises(OutsideDataRoots, match="linked is a link pointing outside") as folder:
        check_inside(data / "linked", roots)
    assert LINK_RULE in str(folder.value) and "Move or copy" in str(folder.value)
    assert str(outside) not in str(folder.value)  # where it leads is not said
    assert isinstance(folder.value, DatasetError)  # every "cannot use this dataset" message shows it (Train's too)


def test_a_dataset_folder_linked_in_from_outside_is_not_even_read(tmp_path):
    """Before (probe): `data/linkds -> /elsewhere` was listed in every picker of a shared Flora."""
    data = tmp_path / "data"
    make_image_dataset(data / "flowers", {"a": 2})
    make_image_dataset(data / "more", {"b": 2})
    outside = make_image_dataset(tmp_path / "outside", {"secret": 2})
    (data / "linkds").symlink_to(outside)
    (data / "alias").symlink_to(data / "more")  # a link inside the roots counts
    roots = [data.resolve()]
    seen = []

    def keep(folder):
        seen.append(folder.name)
        return inside(folder, roots)

    listed = [index.root for index in list_datasets(data, keep=keep)]  # roots resolved: alias reads as more
    assert listed == [(data / "more").resolve(), (data / "flowers").resolve(), (data / "more").resolve()]
    assert sorted(seen) == ["alias", "flowers", "linkds", "more"]  # asked of every folder, before any scan
    assert outside.resolve() in [index.root for index in list_datasets(data)]  # the command line's: every folder


def test_an_import_folder_outside_the_roots_reads_the_same_whether_it_exists_or_not(tmp_path):
    """Before (probe): the Oxford import of `/root/.ssh` said "missing imagelabels.mat", of `/root/nonexistent`
    "not found"."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "oxford-src").mkdir(parents=True)
    (outside / "ssh").mkdir(parents=True)
    (data / "escape").symlink_to(outside / "ssh")
    roots = [data.resolve()]
    said = {}
    for folder in (outside / "ssh", outside / "nothing", data / "escape", data / ".." / "outside" / "ssh"):
        with pytest.raises(OutsideDataRoots) as refused:
            check_source(folder, roots, base=data)
        said[folder] = str(refused.value).replace(str(folder), "FOLDER")
    assert len(set(said.values())) == 1, said
    assert (
        "is not a folder Flora may import from" in said[outside / "ssh"] and str(outside) not in said[data / "escape"]
    )
    assert check_source("oxford-src", roots, base=data) == (data / "oxford-src").resolve()  # a name: in data/
    assert check_source(data / "oxford-src", roots) == (data / "oxford-src").resolve()
    assert check_source(data / "not-yet", roots) == (data / "not-yet").resolve()  # inside: the import says more


def test_a_short_folder_is_read_from_the_data_folder_not_the_apps(tmp_path, monkeypatch):
    """Walk of issue 38, item 12: the hint named the data folder `data`, yet `data/flowers30` was taken from the
    folder the app started in and refused."""
    from core.data.roots import typed_folder

    data = tmp_path / "srv" / "data"
    make_image_dataset(data / "flowers", {"rose": 2, "tulip": 2})
    monkeypatch.chdir(tmp_path)
    assert typed_folder("data/flowers", data) == data / "flowers"
    assert typed_folder("flowers", data) == data / "flowers"
    assert typed_folder(str(data / "flowers"), data) == data / "flowers"
    assert typed_folder("~", data) == Path.home()
    assert check_inside(typed_folder("data/flowers", data), [data.resolve()]) == (data / "flowers").resolve()


def test_a_refusal_names_the_folder_as_typed_and_the_roots_as_shown(tmp_path):
    """Walk of issue 38, item 1: "/root is outside the folders ... (/tmp/walk38/data)" told a student that the server
    runs as root and where its data folder is."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "linkds").symlink_to(make_image_dataset(tmp_path / "elsewhere", {"a": 2, "b": 2}))

    def shown(path):
        return f"<{Path(path).name}>"

    with pytest.raises(OutsideDataRoots) as refused:
        check_inside(Path.home(), [data.resolve()], shown=shown, typed="~")
    said = str(refused.value)
    assert (
        said.startswith("~ is outside the folders Flora may read datasets from (<data>)") and str(tmp_path) not in said
    )
    assert str(Path.home()) not in said.replace("~", "")
    with pytest.raises(OutsideDataRoots) as link:
        check_inside(data / "linkds", [data.resolve()], shown=shown, typed="data/linkds")
    assert str(link.value).startswith("<linkds> is a link pointing outside") and str(tmp_path) not in str(link.value)
