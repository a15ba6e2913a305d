"""core.paths: where things live, and how a shared Flora names them to the people using it."""

from __future__ import annotations

from core.paths import relative_to_data


def test_paths_are_shown_from_the_data_folder_on(tmp_path):
    data = tmp_path / "data"
    (data / "flowers").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (data / "linked").symlink_to(tmp_path / "outside")
    assert relative_to_data(data / "flowers", data) == "data/flowers"
    assert relative_to_data(data / "flowers", data, named=False) == "flowers"
    assert relative_to_data(data, data) == "data"
    assert relative_to_data(data / ".flora" / "x.json", data) == "data/.flora/x.json"
    assert relative_to_data(data / "linked" / "a.png", data) == "data/linked/a.png"  # as it lies in the data folder
    assert relative_to_data(tmp_path / "outside" / "secret.png", data) == "…/secret.png"
