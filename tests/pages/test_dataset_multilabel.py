"""Dataset page on a multi-label dataset: photos per label, labels per photo, co-occurrence, a grid filtered by label,
the split per label, the health check; a table of label lists previewed then imported."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np

from core.data.datasets import scan_dataset
from core.data.multilabel import NO_LABEL
from pages.ui.plain import md
from tests.data.test_multilabel import make_multilabel
from tests.pages.conftest import table_with, texts

LISTS = [["cat"], ["dog", "person"], [], ["cat", "dog", "person"], ["person"], ["cat", "person"]] * 5 + [[]] * 3
NAMES = ["cat", "dog", "person"]


def _open(app, folder):
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(folder)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _tab(at, name):
    at.session_state["dataset_tab"] = name
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _chart(at, key):
    return json.loads(next(c for c in at.get("plotly_chart") if key in c.proto.id).proto.spec)


def _values(array) -> list:
    """A Plotly figure's array as a list: numbers come base64-encoded ({"dtype", "bdata"[, "shape"]})."""
    if not isinstance(array, dict):
        return list(array)
    values = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    shape = array.get("shape")
    return values.reshape([int(n) for n in str(shape).split(",")] if shape else -1).tolist()


def test_labels_samples_and_split_of_a_multilabel_dataset(app, tmp_path):
    at = _open(app, make_multilabel(tmp_path / "scenes", LISTS, NAMES))
    shown = texts(at)
    assert "Labels: 3" in shown and "Images: 33" in shown and "Labels a photo: 1.36" in shown, shown
    assert "multi-label" in shown and "Classes:" not in shown
    assert "Split: seeded" in shown  # the name the run's settings give it too (walk 54: 'random' there)

    per_label = _chart(at, "dataset_ml_per_label")["data"][0]  # photos per label, most first
    assert _values(per_label["x"]) == ["person", "cat", "dog"] and _values(per_label["y"]) == [20, 15, 10]
    sizes = _chart(at, "dataset_ml_sizes")["data"][0]  # how many labels a photo has
    assert dict(zip(_values(sizes["x"]), _values(sizes["y"]), strict=True)) == {0: 8, 1: 10, 2: 10, 3: 5}
    assert "8 photo(s) with no label" in texts(at)
    heatmap = _chart(at, "dataset_ml_cooccurrence")["data"][0]  # photos having both labels
    assert _values(heatmap["z"]) == [[15, 5, 10], [5, 10, 10], [10, 10, 20]]
    pairs = table_with(at, "label", "with", "photos")
    assert pairs.iloc[0].tolist() == ["cat", "person", 10] or pairs.iloc[0].tolist() == ["dog", "person", 10]

    _tab(at, "Samples")
    assert at.multiselect(key="dataset_ml_sample_labels").value == ["cat", "dog"]
    assert "20 photos · page 1 of 1" in texts(at)  # cat or dog
    at.segmented_control(key="dataset_ml_sample_mode").set_value("all").run()
    assert "5 photos · page 1 of 1" in texts(at)  # cat and dog
    captions = [c for image in at.get("image") for c in image.captions]
    assert captions and all(c.startswith("cat, dog, person · 32×32") for c in captions), captions
    at.multiselect(key="dataset_ml_sample_labels").set_value([NO_LABEL]).run()
    assert "8 photos · page 1 of 1" in texts(at)
    assert all(c.startswith(f"{NO_LABEL} · ") for image in at.get("image") for c in image.captions)

    _tab(at, "Split")
    assert "iterative stratification with seed 42" in texts(at)
    table = table_with(at, "train", "val", "test")
    assert list(table.index) == NAMES and (table.to_numpy() > 0).all()  # every label in every split
    assert table.sum(axis=1).tolist() == [15, 10, 20]

    _tab(at, "Unlabelled")
    assert "single-label feature" in texts(at)


def test_samples_of_a_multilabel_dataset_show_the_persons_list_marks(app, workspace, tmp_path):
    """A photo whose label list was corrected in a label review says so under it, and the toggle keeps only those."""
    from core.data.corrections import Corrections, forget_dataset

    folder = make_multilabel(tmp_path / "scenes", LISTS, NAMES)
    photo = next(e.path for e in scan_dataset(folder).entries)  # its labels: cat
    kept = Corrections.load(workspace["data"], folder)
    kept.mark(photo, "relabel", labels=["cat", "dog"], classes=NAMES)
    kept.save()
    at = _tab(_open(app, folder), "Samples")
    assert "captions give each photo's labels, size, file name and your marks" in texts(at)
    at.toggle(key="dataset_ml_only_marked").set_value(True).run()
    assert "1 photo · page 1 of 1" in texts(at)
    captions = [c for image in at.get("image") for c in image.captions]
    assert captions == [md("cat · 32×32 · you relabelled it to cat, dog") + "\n" + md(Path(photo).name)], captions
    forget_dataset(workspace["data"], folder)


def test_the_health_check_of_a_multilabel_dataset(app, tmp_path):
    folder = make_multilabel(tmp_path / "scenes", LISTS + [["bird"]] * 2, [*NAMES, "bird", "boat"])
    shutil.copy(folder / "images" / "p000.png", folder / "images" / "p001.png")  # a copy under another list
    at = _tab(_open(app, folder), "Health check")
    at.button(key="dataset_health_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    titles = " | ".join(e.label for e in at.expander).replace("\\", "")  # Markdown escapes out
    assert "1 label that no readable photo has: boat" in titles, titles
    assert "on fewer than 10 readable photos: bird (2)" in titles, titles
    assert "photos with no label" in titles and "filed under two or more classes" in titles, titles
    captions = [c for image in at.get("image") for c in image.captions]
    assert any("dog|person" in c for c in captions) or any(md("dog|person") in c for c in captions), captions


def test_a_table_of_label_lists_is_previewed_then_imported(app, workspace, tmp_path):
    from PIL import Image

    images = tmp_path / "planet" / "train-jpg"
    images.mkdir(parents=True)
    tags = ["haze primary", "clear primary water", "clear primary", "cloudy", "clear primary road", ""]
    for i in range(len(tags)):
        Image.new("RGB", (32, 32), (40 * i, 80, 90)).save(images / f"train_{i}.jpg")
    table = "image_name,tags\n" + "".join(f"train_{i},{t}\n" for i, t in enumerate(tags))
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("Add a dataset").run()
    shown = texts(at)  # the tab says both multi-label forms before any upload (walk 54: single-label examples only)
    assert "a column of label lists (`image_name,tags`" in shown and "one 0/1 column per label (`image,cat" in shown
    at.file_uploader(key="dataset_table").set_value(("planet.csv", table.encode(), "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="dataset_table_path_column").value == "image_name"
    assert at.selectbox(key="dataset_table_label_column").value == "tags"
    shown = texts(at)
    assert "Several labels a photo" in shown and "separated by spaces" in shown, shown
    assert "6 labels: primary 4, clear 3" in shown and "1 photo(s) with no label: kept" in shown, shown
    at.text_input(key="dataset_table_images").set_value(str(images)).run()
    at.button(key="dataset_table_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "**planet** is ready: 6 labels (several a photo), 6 images." in texts(at), texts(at)
    try:
        assert (workspace["data"] / "planet" / "labels.csv").is_file()
        at.segmented_control(key="dataset_table_task").set_value("One").run()  # asked for one label a photo
        assert "classes by the label column" in texts(at)
    finally:
        shutil.rmtree(workspace["data"] / "planet")


def test_a_photo_folder_outside_the_roots_is_refused_as_typed_naming_the_allowed_ones(
    app, workspace, tmp_path, monkeypatch
):
    """Walk 54: the folder was refused only after Import, by a message naming FLORA_DATA_ROOTS but not the folders
    in force."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("FLORA_DATA_ROOTS", str(allowed))
    outside = tmp_path / "src" / "images"
    outside.mkdir(parents=True)
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("Add a dataset").run()
    at.text_input(key="dataset_table_images").set_value(str(outside)).run()  # no table yet: said already
    refused = [e.value for e in at.error]
    assert len(refused) == 1 and f"{md(str(outside))} is not a folder Flora may import from" in refused[0]
    data = workspace["data"].resolve()
    assert f"imports read only inside {md(str(allowed.resolve()))}, {md(str(data))}" in refused[0]
    assert "Copy or move the photos into one of them" in refused[0] and "FLORA\\_DATA\\_ROOTS" in refused[0]
    table = "image,tags\np0.png,a b\n"
    at.file_uploader(key="dataset_table").set_value(("tags.csv", table.encode(), "text/csv")).run()
    assert at.button(key="dataset_table_go").disabled  # nothing to import from there
    inside = allowed / "images"
    inside.mkdir()
    at.text_input(key="dataset_table_images").set_value(str(inside)).run()
    assert not at.error and not at.button(key="dataset_table_go").disabled
    at.text_input(key="dataset_table_images").set_value(str(allowed / "missing")).run()
    assert [e.value for e in at.error] == [
        f"{md(str(allowed / 'missing'))} is not a folder: nothing is there, or a file is."
    ]
