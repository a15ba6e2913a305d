"""Datasets labelled by a table: links, not copies; ids with or without extensions, sub-folders, a split column;
every kind of bad table refused with the rows named and nothing half-made."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from core.cli import main as cli
from core.data.datasets import scan_dataset
from core.importers.common import ImportRejected
from core.importers.csv_labels import import_csv


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "train_images"
    (folder / "sub").mkdir(parents=True)
    for i in range(8):
        where = folder / "sub" if i % 2 else folder
        Image.new("RGB", (24, 20), (30 * i, 90, 200 - 20 * i)).save(where / f"img{i}.jpg")
    return folder


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_a_kaggle_style_table_becomes_a_linked_dataset(images, tmp_path):
    rows = ["id,breed,split"] + [
        f"{'sub/' if i % 2 else ''}img{i}{'' if i < 4 else '.jpg'},{'cat' if i < 4 else 'dog'},"
        f"{['train', 'val', 'test', 'Train'][i % 4]}"
        for i in range(8)
    ]
    labels = _write(tmp_path / "labels.csv", "\n".join(rows) + "\n")
    data = tmp_path / "data"
    result = import_csv(labels, images, "pets", data)
    index = scan_dataset(data / "pets")
    assert index.classes == ["cat", "dog"] and len(index.entries) == 8 and index.layout == "manifest"
    assert sorted(e.split for e in index.entries) == sorted(["train", "val", "test", "train"] * 2)
    linked = next((data / "pets" / "cat").iterdir())
    assert linked.is_symlink() and linked.resolve().parent in (images, images / "sub")  # not copied
    assert result.images == 8 and any("linked, not copied" in note for note in result.notes)


@pytest.mark.parametrize("multi", [False, True], ids=["single-label", "multi-label"])
def test_photos_linked_from_outside_the_app_s_data_roots_are_said_to_stay_closed_to_the_app(
    images, tmp_path, monkeypatch, multi
):
    """A newcomer's walk: a table imported from the command line linked photos from a folder the app does not open,
    and the Train page refused the dataset only at launch. The import now says so, with the setting that opens it."""
    from core.data import roots
    from core.data.roots import ROOTS_ENV, OutsideDataRoots, check_links

    kinds = ["daisy|rose", "rose"] if multi else ["cat", "dog"]
    rows = "".join(f"img{i * 2}.jpg,{kinds[i % 2]}\n" for i in range(4))
    labels = _write(tmp_path / "labels.csv", f"image,{'labels' if multi else 'label'}\n{rows}")
    data = tmp_path / "data"
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path / "elsewhere"))  # the app's roots: that folder and the data folder
    result = import_csv(labels, images, "outside", data)
    [said] = [note for note in result.notes if ROOTS_ENV in note]
    assert str(images) in said and "the app will not list or train it" in said
    with pytest.raises(OutsideDataRoots):  # as the app finds it: refused, as the note said
        check_links(data / "outside", scan_dataset(data / "outside").links, roots.data_roots(data, shared=False))
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))  # the photos' folder among the roots: nothing to say
    result = import_csv(labels, images, "inside", data)
    assert not [note for note in result.notes if ROOTS_ENV in note]
    assert any("linked, not copied" in note for note in result.notes)


def test_other_delimiters_and_encodings_are_detected_and_said(images, tmp_path):
    text = "image;label\nimg0.jpg;chat é\nimg2.jpg;chat é\nsub/img1.jpg;chien\nsub/img3.jpg;chien\n"
    labels = _write(tmp_path / "labels.csv", text, encoding="cp1252")
    result = import_csv(labels, images, "animaux", tmp_path / "data")
    assert sorted(scan_dataset(tmp_path / "data" / "animaux").classes) == ["chat é", "chien"]
    assert any("not UTF-8" in note for note in result.notes) and any("';'" in note for note in result.notes)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ("photo,kind\nimg0.jpg,cat\n", "which column holds the images"),
        ("image,label\nimg0.jpg,\nimg2.jpg,cat\n", "1 row(s) with no label: line 2 (img0.jpg)"),
        ("image,label,split\nimg0.jpg,cat,holdout\nimg2.jpg,dog,train\n", "other than train, val or test"),
        ("image,label\nimg0.jpg,cat\nimg0.jpg,dog\nimg2.jpg,dog\n", "listed twice with different labels"),
        ("image,label\nimg0.jpg,cat\nnope.jpg,dog\nghost,dog\n", "2 row(s) name images that are not in"),
        ("image,label\n../secret.jpg,cat\n", "1 row(s) name images that are not in"),
        ("image,label\n", "has no rows"),
    ],
)
def test_bad_tables_are_refused_and_leave_nothing(images, tmp_path, table, words):
    labels = _write(tmp_path / "labels.csv", table)
    data = tmp_path / "data"
    with pytest.raises(ImportRejected) as caught:
        import_csv(labels, images, "pets", data)
    assert words in str(caught.value)
    assert not (data / "pets").exists()
    if data.exists():
        assert not any(data.glob(".*"))  # no staging folder left


def test_skip_missing_imports_the_rest_and_lists_them(images, tmp_path, capsys):
    table = "image,label\nimg0.jpg,cat\nimg2.jpg,cat\nsub/img1.jpg,dog\nsub/img3.jpg,dog\nlost.jpg,dog\n"
    labels = _write(tmp_path / "labels.csv", table)
    args = ["data", "import", "csv", str(labels), str(images), "pets", "--data-dir", str(tmp_path / "data")]
    assert cli(args) == 1 and "lost.jpg" in capsys.readouterr().err
    assert cli([*args, "--skip-missing", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 4
    assert result["skipped"] == [{"path": "lost.jpg", "reason": "no such image in the folder"}]


def test_a_parquet_table_imports_like_a_csv_and_its_missing_labels_are_refused(images, tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {
            "image": [f"{'sub/' if i % 2 else ''}img{i}.jpg" for i in range(8)],
            "label": ["cat"] * 4 + ["dog"] * 4,
            "split": pd.Categorical(["train", "val", "test", "train"] * 2),
            "weight": [0.5, 1.0, None, 2.0, 1.0, 1.0, 1.0, 1.0],  # another column with a missing value: ignored
        }
    )
    table = tmp_path / "labels.parquet"
    frame.to_parquet(table)
    data = tmp_path / "data"
    result = import_csv(table, images, "pets", data)
    index = scan_dataset(data / "pets")
    assert result.images == 8 and index.classes == ["cat", "dog"]
    assert sorted(e.split for e in index.entries) == sorted(["train", "val", "test", "train"] * 2)
    frame.loc[3, "label"] = None
    frame.to_parquet(table)
    with pytest.raises(ImportRejected, match="with no label: line 5"):
        import_csv(table, images, "pets2", data)
    assert not (data / "pets2").exists()


def test_a_suggested_name_looks_past_generic_file_and_folder_names():
    from core.importers.csv_labels import suggest_name

    assert suggest_name("dog_breeds.csv", "/x/kaggle/train") == "dog_breeds"
    assert suggest_name("labels.csv", "/x/dog-breeds/train_images") == "dog-breeds"
    assert suggest_name("train.csv", "/x/plant net/images/train") == "plant_net"
    assert suggest_name("labels.csv", None) == "labels"  # nothing better known
