"""Multi-label datasets from a table: label lists in one delimited column (detected and said) or one 0/1 column per
label; photos with no label kept; every malformed or unknown row named; a single-label table imported as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from core.bench.mosaics import draw_mosaics, photos_by_kind, write_tables
from core.cli import main as cli
from core.data.datasets import scan_dataset
from core.data.multilabel import LABEL_FILE
from core.importers.common import ImportRejected
from core.importers.csv_labels import import_csv
from core.importers.multilabel_table import detect_delimiter
from tests.conftest import require_flowers

PLANET = {  # Planet's `image_name,tags`: labels separated by spaces, ids without the extension
    "train_0": "haze primary",
    "train_1": "agriculture clear primary water",
    "train_2": "clear primary",
    "train_3": "clear primary",
    "train_4": "agriculture clear habitation primary road",
    "train_5": "haze primary water",
    "train_6": "cloudy",
    "train_7": "",
}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(8):
        for suffix in (".jpg", ".png"):  # NIH ships PNGs
            Image.new("RGB", (32, 32), (30 * i, 90, 200 - 20 * i)).save(folder / f"train_{i}{suffix}")
    return folder


def _table(tmp_path, text, name="labels.csv"):
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path / name


def _lists(root):
    index = scan_dataset(root)
    return {e.path: [index.classes[j] for j in index.targets.labels_of(i)] for i, e in enumerate(index.entries)}


def test_a_planet_table_of_space_separated_tags_imports_with_its_lists(images, tmp_path):
    table = _table(tmp_path, "image_name,tags\n" + "".join(f"{k},{v}\n" for k, v in PLANET.items()))
    data = tmp_path / "data"
    result = import_csv(table, images, "planet", data)
    assert result.task == "multilabel" and result.images == 8
    assert result.classes == 8  # agriculture clear cloudy habitation haze primary road water
    assert any("holds lists of labels separated by spaces" in note for note in result.notes)
    assert any("1 photo(s) have no label: kept" in note for note in result.notes)
    lists = _lists(data / "planet")
    assert lists == {f"images/{k}.jpg": sorted(v.split()) for k, v in PLANET.items()}
    assert (data / "planet" / "images" / "train_1.jpg").is_symlink()  # linked, not copied
    meta = json.loads((data / "planet" / "flora.json").read_text())
    assert meta["task"] == "multilabel" and meta["label_shape"] == {"kind": "delimited", "column": "tags",
                                                                    "delimiter": " "}  # fmt: skip


@pytest.mark.parametrize("given", [None, "No Finding"])
def test_an_nih_table_with_pipes_and_a_no_finding_value_imports(images, tmp_path, given):
    """NIH chest X-ray's `Image Index,Finding Labels`: '|' between labels, 'No Finding' read as no label (found, as
    it never comes with another, or given)."""
    rows = ["Mass|Nodule", "No Finding", "Effusion", "Mass", "Effusion|Infiltration|Mass", "No Finding", "Nodule",
            "Infiltration"]  # fmt: skip
    text = "Image Index,Finding Labels,Patient ID\n" + "".join(f"train_{i}.png,{r},{i}\n" for i, r in enumerate(rows))
    data = tmp_path / "data"
    result = import_csv(_table(tmp_path, text), images, "xray", data, no_label=given)
    assert result.task == "multilabel" and result.classes == 4
    assert any("separated by '|'" in note and "'No Finding'" in note for note in result.notes), result.notes
    assert any("2 photo(s) have no label: kept" in note for note in result.notes)
    lists = _lists(data / "xray")
    assert lists["images/train_1.png"] == [] and lists["images/train_4.png"] == ["Effusion", "Infiltration", "Mass"]


def test_a_no_label_word_that_comes_with_other_labels_is_a_label(images, tmp_path):
    text = "image,labels\n" + "".join(
        f"train_{i}.jpg,{cell}\n" for i, cell in enumerate(["none|a", "none", "a|b", "b", "a", "b", "a", "none"])
    )
    data = tmp_path / "data"
    import_csv(_table(tmp_path, text), images, "words", data)
    assert scan_dataset(data / "words").classes == ["a", "b", "none"]


@pytest.mark.parametrize("delimiter", [" ", "|", ",", ";"])
def test_each_delimiter_is_detected(images, tmp_path, delimiter):
    lists = [["a"], ["a", "b"], ["b", "c"], ["c"], ["a", "b", "c"], [], ["b"], ["a", "c"]]
    cells = [delimiter.join(x) for x in lists]
    text = "image,labels\n" + "".join(f'train_{i}.jpg,"{cell}"\n' for i, cell in enumerate(cells))
    assert detect_delimiter(cells) == delimiter
    data = tmp_path / "data"
    import_csv(_table(tmp_path, text), images, "abc", data)
    assert list(_lists(data / "abc").values()) == lists


def test_celeba_style_columns_of_zero_one_or_minus_one_import_with_labels_named_by_the_header(images, tmp_path):
    flags = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 1], [1, 0, 0]])
    header = "image_id,Smiling,Eyeglasses,Bald\n"
    for name, (no, yes) in {"zeros": ("0", "1"), "signs": ("-1", "1")}.items():
        text = header + "".join(f"train_{i}.jpg," + ",".join(yes if f else no for f in row) + "\n"
                                for i, row in enumerate(flags))  # fmt: skip
        data = tmp_path / name
        result = import_csv(_table(tmp_path, text, f"{name}.csv"), images, "faces", data)
        assert any("3 columns of 0/1, one per label" in note for note in result.notes)
        index = scan_dataset(data / "faces")
        assert index.classes == ["Smiling", "Eyeglasses", "Bald"]  # the header's order
        assert index.targets.dense().tolist() == flags.tolist()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("image,a,b\ntrain_0.jpg,1,0\ntrain_1.jpg,2,1\ntrain_2.jpg,0,yes\ntrain_3.jpg,0,1\n",
         "1 malformed row(s): line 3: not 0 or 1: a='2'"),
        ("image,tags\ntrain_0.jpg,a b\ntrain_1.jpg,a b\nnope,b\nghost.jpg,a\n",
         "2 row(s) name images that are not in"),
        ("image,tags\ntrain_0.jpg,a b\ntrain_0.jpg,b\ntrain_1.jpg,a\n", "listed twice with different labels"),
        ("image,tags,split\ntrain_0.jpg,a b,train\ntrain_1.jpg,b,holdout\ntrain_2.jpg,a,test\n",
         "other than train, val or test: line 3"),
        ("image,tags\ntrain_0.jpg,a\ntrain_1.jpg,a\n", "needs at least 2 labels"),
    ],
)  # fmt: skip
def test_malformed_and_unknown_rows_are_named_and_nothing_is_imported(images, tmp_path, text, words):
    data = tmp_path / "data"
    with pytest.raises(ImportRejected) as caught:
        import_csv(_table(tmp_path, text), images, "bad", data, multi_label=True)
    assert words in str(caught.value), str(caught.value)
    assert not (data / "bad").exists()


def test_a_single_label_table_is_imported_as_before(images, tmp_path):
    text = "image,label\n" + "".join(f"train_{i}.jpg,{'sweet pea' if i < 4 else 'rose'}\n" for i in range(8))
    data = tmp_path / "data"
    result = import_csv(_table(tmp_path, text), images, "flowers", data)
    assert result.task == "single" and result.classes == 2
    index = scan_dataset(data / "flowers")
    assert not index.multilabel and index.classes == ["rose", "sweet pea"]
    assert (data / "flowers" / "sweet pea").is_dir() and not (data / "flowers" / LABEL_FILE).exists()
    with pytest.raises(ImportRejected, match="neither a column of label lists"):
        import_csv(_table(tmp_path, "image,kind\ntrain_0.jpg,x\n"), images, "x", data, multi_label=True)


def test_the_cli_imports_a_multilabel_table_and_says_how_it_read_it(images, tmp_path, capsys):
    table = _table(tmp_path, "image_name,tags\n" + "".join(f"{k},{v}\n" for k, v in PLANET.items()))
    data = tmp_path / "data"
    args = ["data", "import", "csv", str(table), str(images), "planet", "--data-dir", str(data)]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "planet: imported, 8 labels (multi-label), 8 images" in out, out
    assert "separated by spaces" in out
    assert cli(["data", "list", "--json", "--data-dir", str(data)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["name"], d["task"]) for d in listed] == [("planet", "multilabel")]


def test_mosaics_of_real_photos_import_the_same_from_a_delimited_table_and_from_zero_one_columns(tmp_path):
    """The issue's Done-when set, small: 2x2 mosaics of four kinds of flower, a label per kind present, some with
    none; both tables give the same dataset, its labels the kinds drawn."""
    kinds = ["daisy", "dandelion", "rose", "tulip"]
    made = draw_mosaics(photos_by_kind(require_flowers(), kinds), tmp_path / "mosaics", 60, cell=32)
    tables = write_tables(made, kinds, tmp_path / "tables")
    data = tmp_path / "data"
    for how, table in tables.items():
        result = import_csv(table, tmp_path / "mosaics", how, data)
        assert result.task == "multilabel" and result.images == 60 and result.classes == 4
    delimited, columns = scan_dataset(data / "delimited"), scan_dataset(data / "columns")
    assert delimited.classes == columns.classes == kinds
    expected = [[kinds.index(k) for k in labels] for _, labels in made]
    assert delimited.targets.lists() == columns.targets.lists() == expected
    assert delimited.fingerprint == columns.fingerprint  # the same photos, the same lists: the same content
    sizes = delimited.targets.sizes()
    assert (sizes == 0).any() and (sizes >= 2).any() and all(delimited.targets.positives() >= 10)
    with Image.open(data / "delimited" / delimited.entries[0].path) as first:
        assert first.size == (64, 64)
