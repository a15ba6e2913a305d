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


def test_a_log_on_a_shared_flora_shows_no_server_path(tmp_path):
    """Walk of issue 38, item 1: a run's log read "150 images in 5 classes from /tmp/walk38/data/flowers30" and
    "decoding ... into /tmp/walk38/data/.cache/291a..." to every student."""
    from core.paths import hide_server_paths

    data = tmp_path / "data"
    log = (
        f"run 1: 150 images in 5 classes from {data}/flowers30\n"
        f"decoding 150 photos at 224 px into {data}/.cache/291a (3 MB)\n"
        '  File "/opt/flora/core/train/training.py", line 5, in fit\n'
        f"the weights from https://storage.googleapis.com/keras/w.h5 into {tmp_path}/keras/models\n"
    )
    shown = hide_server_paths(log, data)
    assert "from data/flowers30" in shown and "into data/.cache/291a (3 MB)" in shown
    assert 'File "…/training.py"' in shown and "https://storage.googleapis.com/keras/w.h5" in shown
    assert str(tmp_path) not in shown and "/opt/" not in shown and "into …/models" in shown
