"""Dataset page: classes, samples, image sizes, split, health; a folder by path; adding datasets."""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile

from PIL import Image

from core.fileio import write_json_atomic
from core.health.check import saved_report
from core.importers.tasks import STATUS_FILE, tasks_dir
from pages.ui import dataset_choice
from pages.ui.plain import md
from tests.conftest import make_image_dataset
from tests.pages.conftest import table_with, texts


def _tab(at, name):
    at.session_state["dataset_tab"] = name
    return at.run()


def test_classes_samples_sizes_and_split(app):
    at = app("dataset")
    shown = texts(at)
    assert "Classes: 4" in shown and "Images: 56" in shown and "Balanced enough" in shown
    counts = json.loads(
        next(c for c in at.get("plotly_chart") if c.proto.id and "dataset_counts" in c.proto.id).proto.spec
    )
    assert all(trace["hovertemplate"] == "%{x}: %{y} images<extra></extra>" for trace in counts["data"])

    _tab(at, "Samples")
    captions = [c for image in at.get("image") for c in image.captions]
    # the class, the size, the file name (as Explore and Evaluate name a photo)
    lines = [c.split("\n") for c in captions]
    assert lines and all(size.endswith("48×40") for size, _ in lines), captions[:3]
    assert all(name.startswith(md("img_")) and name.endswith(md(".png")) for _, name in lines), captions[:3]
    assert "56 photos · page 1 of 3" in texts(at)  # all four classes, 24 per page
    at.multiselect(key="dataset_sample_classes").set_value(["red"]).run()
    assert "14 photos · page 1 of 1" in texts(at)

    _tab(at, "Image sizes")
    shown = texts(at)
    assert "Median size: 48×40" in shown and "Every file's header reads as an image" in shown

    _tab(at, "Split")
    assert "The next run with the Train page's defaults uses a stratified split drawn with seed 42" in texts(at)
    assert table_with(at, "train", "val", "test").loc["red"].tolist() == [10, 2, 2]


def test_samples_show_the_persons_marks_and_only_those_when_asked(app, kept_corrections):
    """A photo relabelled or excluded in a label review says so under it on the Dataset page, and a toggle shows
    only the marked photos (the walk of session 11: the Dataset page showed a photo's folder label only); a class
    filter that leaves none of them keeps the toggle and says so (session 12's walk: it vanished and was lost)."""
    at = _tab(app("dataset"), "Samples")
    assert "captions give each photo's size, file name and your marks" in texts(at)
    captions = [c for image in at.get("image") for c in image.captions]
    assert sum(md("you ") in c for c in captions) <= 2  # only the marked photos say it
    at.toggle(key="dataset_only_marked").set_value(True).run()
    assert "2 photos · page 1 of 1" in texts(at)
    assert at.toggle(key="dataset_only_marked").label == "Only the photos you marked (2)"
    captions = sorted(c for image in at.get("image") for c in image.captions)
    assert [c.split("\n")[0] for c in captions] == [
        md("blue · 48×40 · you excluded it"),
        md("red · 48×40 · you relabelled it to crimson"),
    ]
    assert [c.split("\n")[1] for c in captions] == [md("img_001.png"), md("img_000.png")]  # the file names
    at.multiselect(key="dataset_sample_classes").set_value(["red", "green"]).run()
    assert at.toggle(key="dataset_only_marked").label == "Only the photos you marked (1 of your 2 in these classes)"
    assert "1 photo · page 1 of 1" in texts(at)
    at.multiselect(key="dataset_sample_classes").set_value(["green"]).run()  # no marked photo among them
    toggle = at.toggle(key="dataset_only_marked")
    assert toggle.value and toggle.label == "Only the photos you marked (0 of your 2 in these classes)"
    assert "None of the 2 photo(s) you marked is among these classes' photos" in texts(at)
    assert not at.get("image") and "Pick at least one class." not in texts(at)
    at.multiselect(key="dataset_sample_classes").set_value(["green", "blue"]).run()  # still on
    assert [c.split("\n")[0] for image in at.get("image") for c in image.captions] == [
        md("blue · 48×40 · you excluded it")
    ]


def test_a_folder_by_path_with_imbalance_unreadable_files_and_synthetic_banner(app, tmp_path):
    folder = make_image_dataset(tmp_path / "mine", {"big": 12, "small": 4})
    (folder / "big" / "broken.jpg").write_text("not a photo")
    (folder / "flora.json").write_text(json.dumps({"synthetic": True, "description": "drawn by a test"}))
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(folder)).run()
    shown = texts(at)
    assert "Classes: 2" in shown and "synthetic" in shown and "drawn by a test" in shown
    assert "Imbalanced: the largest class has 3.2x" in shown
    _tab(at, "Image sizes")
    assert "1 file(s) cannot be read" in texts(at)
    assert table_with(at, "path", "reason")["path"].tolist() == ["big/broken.jpg"]
    at.text_input(key="dataset_folder").set_value(str(tmp_path / "nope")).run()
    assert "No folder at" in texts(at)


def test_a_folder_picked_by_path_is_still_there_after_a_reload_and_on_other_pages(app, tmp_path):
    first = make_image_dataset(tmp_path / "first", {"a": 4, "b": 4})
    second = make_image_dataset(tmp_path / "second", {"c": 4, "d": 4})
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(first)).run()
    at.text_input(key="dataset_folder").set_value(str(second)).run()

    again = app("dataset")  # a reload: a new session, nothing in session state
    assert again.segmented_control(key="dataset_source").value == "A folder on this machine"
    assert again.text_input(key="dataset_folder").value == str(second)
    assert "Classes: 2" in texts(again)
    used_before = again.pills(key="dataset_recent")
    assert used_before.options == [md(first.resolve())]  # a pill's text is Markdown: the folder as text
    used_before.set_value(str(first.resolve())).run()  # click the "Used before" pill
    assert again.text_input(key="dataset_folder").value == str(first.resolve())

    train = app("train")
    train.session_state["train_tab"] = "New run"
    train.run()
    picker = train.selectbox(key="train_dataset")
    assert picker.value == str(first.resolve())
    assert any(f"· folder {second.resolve()}" in option for option in picker.options)


def test_health_check_finds_planted_duplicates(app, tmp_path):
    folder = make_image_dataset(tmp_path / "dups", {"a": 10, "b": 10})
    shutil.copy(folder / "a" / "img_000.png", folder / "b" / "copy_of_a.png")  # the same photo in two classes
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(folder)).run()
    _tab(at, "Health check")
    at.button(key="dataset_health_go").click().run()
    assert not at.exception
    titles = " | ".join(e.label for e in at.expander)
    assert "1 picture filed under two or more classes" in titles, titles
    assert "would straddle the split training makes" in titles, titles
    assert "Problems:" in texts(at)
    assert "It does not judge whether a photo's label is right" in texts(at)  # walk 42: '0 problems' read as clean
    captions = [c for image in at.get("image") for c in image.captions]
    assert any(md("copy_of_a.png") in c for c in captions)


def test_add_the_demo_set_then_open_it(app, workspace, tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("Add a dataset").run()
    at.button(key="dataset_demo_go").click().run()
    assert "**demo** is ready" in texts(at)
    at.button(key="dataset_open_demo").click().run()
    assert at.session_state["dataset_source"] == "In the data folder"
    assert "synthetic" in texts(at) and "Classes: 5" in texts(at)


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_upload_good_and_hostile(app, workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("FLORA_DATA_DIR", str(tmp_path / "data"))
    photo = next((workspace["dataset"] / "red").iterdir()).read_bytes()
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("Add a dataset").run()
    good = _zip({f"my photos/{c}/{i}.png": photo for c in ("tulip", "iris") for i in range(3)} | {"README.txt": b"hi"})
    at.file_uploader(key="dataset_zip").set_value(("my photos.zip", good, "application/zip")).run()
    at.button(key="dataset_zip_go").click().run()
    assert "**my\\_photos** is ready: 2 classes, 6 images" in texts(at)

    evil = _zip({"roses/a.png": photo, "../evil.txt": b"gotcha"})
    at.file_uploader(key="dataset_zip").set_value(("evil.zip", evil, "application/zip")).run()
    at.button(key="dataset_zip_go").click().run()
    assert "Not imported:" in texts(at) and md("..") in texts(at)
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if not p.name.startswith(".")) == ["my_photos"]


def test_download_card_shows_a_failed_attempt(app, tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    folder = tasks_dir(data) / "old"
    folder.mkdir(parents=True)
    write_json_atomic(
        folder / STATUS_FILE,
        {
            "state": "failed",
            "key": "tf_flowers",
            "created": time.time(),
            "error": "could not reach storage.googleapis.com",
        },
    )
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("Add a dataset").run()
    shown = texts(at)
    assert f"The last attempt failed: {md('could not reach storage.googleapis.com')}" in shown
    assert "Get tf_flowers" in [b.label for b in at.button] and "Get oxford102" in [b.label for b in at.button]


def test_health_results_come_back_after_a_reload_and_samples_mix_classes(app, workspace):
    at = app("dataset")
    at.session_state["dataset_tab"] = "Health check"
    at.run()
    at.button(key="dataset_health_go").click().run()
    checked = {m.label: m.value for m in at.metric if m.label in ("Problems", "Warnings", "Notes", "Checked in")}
    saved = saved_report(workspace["dataset"], workspace["data"] / ".cache")
    assert saved is not None, "the check stored its report"
    counts = saved.counts()
    assert (checked["Problems"], checked["Warnings"], checked["Notes"]) == tuple(
        str(counts[s]) for s in ("error", "warning", "info")
    )
    assert counts["warning"] >= 1  # 56 photos under 64 px: a real finding, not an empty report
    reloaded = app("dataset")  # a new session: the report of this exact content is read back, not checked again
    reloaded.session_state["dataset_tab"] = "Health check"
    reloaded.run()
    shown = {m.label: m.value for m in reloaded.metric if m.label in checked}
    assert shown == checked, "the last report is shown without a new check"

    samples = app("dataset")
    samples.session_state["dataset_tab"] = "Samples"
    samples.run()
    first_page = [caption.split(" · ")[0] for image in samples.get("image") for caption in image.captions]
    assert set(first_page[:4]) == {"blue", "crimson", "green", "red"}  # every class on the first page


def test_the_health_check_has_a_teaching_note(app):
    at = app("dataset")
    at.toggle(key="flora_explain").set_value(True).run()
    try:
        at.session_state["dataset_tab"] = "Health check"
        at.run()
        assert any(i.value.startswith("**Why check a dataset before training.**") for i in at.info)
    finally:
        at.toggle(key="flora_explain").set_value(False).run()


def test_folders_outside_the_data_roots_are_refused_and_forgotten(app, workspace, monkeypatch, tmp_path):
    """Before: "A folder on this machine" scanned / (447,118 names) and served images from /usr/share/icons."""
    from core import workspace as state
    from tests.conftest import make_image_dataset

    outside = make_image_dataset(tmp_path / "elsewhere" / "pets", {"cat": 3, "dog": 3})
    state.remember_dataset(workspace["data"], outside)  # picked before the roots existed
    monkeypatch.setenv("FLORA_DATA_ROOTS", str(tmp_path / "allowed"))
    at = app("dataset")
    assert any("Forgot 1 remembered folder(s) outside the folders" in w.value for w in at.warning)
    assert str(outside) not in state.remembered_folders(workspace["data"])
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(outside)).run()
    assert any("is outside the folders Flora may read datasets from" in e.value for e in at.error)
    assert not at.get("imgs") and not at.exception  # no photo of it shown
    at.text_input(key="dataset_folder").set_value("/").run()
    assert any("is outside the folders" in e.value for e in at.error)


def test_a_folder_a_run_was_trained_on_is_listed_where_label_next_writes(app, workspace, monkeypatch, tmp_path):
    """Walk 41: Label next copied photos into a run's dataset folder outside the data folder, and the Dataset page
    forgot that folder and refused it. One rule on a Flora used by one person: a run's folder is readable."""
    from core import workspace as state
    from tests.conftest import copy_run

    elsewhere = tmp_path / "elsewhere" / "colours"
    shutil.copytree(workspace["dataset"], elsewhere)
    models = tmp_path / "models"
    run_dir = copy_run(workspace["models"] / workspace["run_id"], models / workspace["run_id"])
    config = json.loads((run_dir / "config.json").read_text())
    config["dataset"]["path"] = str(elsewhere)
    (run_dir / "config.json").write_text(json.dumps(config))
    state.remember_dataset(workspace["data"], elsewhere)  # picked on the Dataset page before
    monkeypatch.setenv("FLORA_DATA_ROOTS", str(tmp_path / "allowed"))
    at = app("dataset", models_dir=models)
    assert not any("Forgot" in w.value for w in at.warning)
    assert str(elsewhere) in state.remembered_folders(workspace["data"])
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(elsewhere)).run()
    assert not at.error and "Classes: 4" in texts(at) and "Images: 56" in texts(at)
    assert "the 1 other folder(s) its runs were trained on" in texts(at)
    other = make_image_dataset(tmp_path / "elsewhere" / "pets", {"cat": 3, "dog": 3})  # no run: still refused
    at.text_input(key="dataset_folder").set_value(str(other)).run()
    assert any("is outside the folders Flora may read datasets from" in e.value for e in at.error)


def test_a_datasets_own_words_are_shown_as_text(app, workspace, tmp_path, monkeypatch):
    """Before: a description's Markdown image was fetched from an outside address; class names rendered bold, red."""
    import json

    from core.data.datasets import META_FILE
    from pages.ui.plain import visible
    from tests.conftest import make_image_dataset

    root = make_image_dataset(workspace["data"] / "odd names", {"**big**": 3, ":red[x]": 3, "$x$": 3})
    (root / "empty [link](mailto:a@b.c)").mkdir()
    description = "![tracker](http://example.com/pixel.png) **bold** <b>html</b> \u202egpj.exe"
    (root / META_FILE).write_text(json.dumps({"description": description}))
    try:
        dataset_choice.refresh_datasets()  # the list is cached for a few seconds: another test may have drawn it
        at = app("dataset")
        at.selectbox(key="dataset_pick").set_value(str(root)).run()
        assert md(description) in [c.value for c in at.caption]
        # the address escaped and never a live link (a word joiner after its scheme)
        assert "\\!\\[tracker\\]\\(http\u2060\\://example\\.com/pixel\\.png\\)" in md(description)
        assert "\\u202e" in visible(description)  # a right-to-left override shown as its code
        assert any(md("empty [link](mailto:a@b.c)") in w.value for w in at.warning)
    finally:
        import shutil

        shutil.rmtree(root)


def test_a_table_of_labels_is_previewed_then_imported(app, workspace, tmp_path):
    """Issue 19: 'add a dataset' from a CSV: the first rows, the columns picked, class counts, then the import."""
    from PIL import Image

    images = tmp_path / "dogs" / "images"  # a generic table name ("labels.csv"): the name comes from the folders
    images.mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (20, 20), (40 * i, 80, 90)).save(images / f"p{i}.png")
    table = "id,breed\n" + "".join(f"p{i},{'beagle' if i < 3 else 'pug'}\n" for i in range(6))
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("Add a dataset").run()
    at.file_uploader(key="dataset_table").set_value(("labels.csv", table.encode(), "text/csv")).run()
    assert not at.exception
    assert at.selectbox(key="dataset_table_path_column").value == "id"
    assert at.selectbox(key="dataset_table_label_column").value == "breed"
    assert "2 classes by the label column: beagle 3, pug 3" in texts(at)
    at.text_input(key="dataset_table_images").set_value(str(images)).run()
    at.button(key="dataset_table_go").click().run()
    assert "**dogs** is ready: 2 classes, 6 images." in texts(at)
    assert (workspace["data"] / "dogs" / "beagle").is_dir()
    from pages.ui.dataset_choice import CURRENT_DATASET

    assert at.session_state[CURRENT_DATASET] == str((workspace["data"] / "dogs").resolve())  # selected
    import shutil

    shutil.rmtree(workspace["data"] / "dogs")


def _empty_folder(path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def test_the_disk_tab_lists_caches_and_removes_only_the_stale(app, workspace):
    cache = workspace["data"] / ".cache"
    gone = cache / "0123456789abcdef-37"
    gone.mkdir(parents=True)
    (gone / "images.npy").write_bytes(b"\1" * 300_000)
    from core.data.cache_disk import CACHE_VERSION

    write_json_atomic(gone / "index.json", {"version": CACHE_VERSION, "dataset_root": str(workspace["data"] / "gone")})
    # an empty `foreign/`, as an earlier test on the worker may leave it (this test removes it anyway: it is stale)
    shutil.rmtree(cache / "foreign", ignore_errors=True)
    (cache / "foreign").mkdir()
    at = _tab(app("dataset"), "Disk")
    frame = table_with(at, "what", "size", "state", "dataset")
    stale = frame[frame["state"] != "in use"]  # also what earlier tests left of datasets in tmp folders
    assert "dataset is gone" in stale.set_index("folder").loc[gone.name, "state"]
    in_use = sorted(frame[frame["state"] == "in use"]["folder"])
    assert in_use  # the workspace's own decoded photos (and features)
    assert {m.label for m in at.metric} >= {"Caches on disk", "This dataset's", "Stale (removable)"}
    at.button(key="dataset_remove_stale_caches").click().run()
    assert not gone.exists()
    # an empty folder holds no cache: not listed, not counted (an earlier test on the worker can leave one)
    left = sorted(p.name for p in cache.iterdir() if not p.name.startswith(".") and not _empty_folder(p))
    features = sorted(p.name for p in (cache / "features").iterdir()) if (cache / "features").is_dir() else []
    assert sorted([n for n in left if n != "features"] + features) == in_use  # only those in use remain
    assert "Nothing stale" in texts(at)


def test_many_classes_get_a_sorted_chart_and_a_table_of_every_class(app, tmp_path):
    counts = {f"species_{i:03d}": 1 + (i % 3) for i in range(80)}
    folder = make_image_dataset(tmp_path / "many", counts, size=(16, 16))
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(folder)).run()
    assert not at.exception
    assert "80 classes, largest first" in texts(at)
    table = table_with(at, "class", "images")
    assert len(table) == 80 and list(table["images"])[:27] == [3] * 26 + [2]  # every class listed, largest first
    chart = json.loads(next(c for c in at.get("plotly_chart") if "dataset_counts" in c.proto.id).proto.spec)
    assert chart["layout"]["xaxis"]["showticklabels"] is False


def test_unlabelled_photos_are_shown_apart_and_never_as_a_class(app, tmp_path):
    folder = make_image_dataset(tmp_path / "mine", {"big": 6, "small": 4})
    make_image_dataset(tmp_path / "loose", {"unlabelled": 3})
    shutil.move(str(tmp_path / "loose" / "unlabelled"), str(folder / "unlabelled"))
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(folder)).run()
    assert "Classes: 2" in texts(at) and "Images: 10" in texts(at)  # the unlabelled photos are no class
    _tab(at, "Unlabelled")
    assert not at.exception, [e.value for e in at.exception]
    assert "**3** photo(s) waiting for a label" in texts(at)
    assert len([c for image in at.get("image") for c in image.captions]) == 3
    at.button(key="to_label_next").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["explore_tab"] == "Label next"
    assert "This dataset has no unlabelled photos" in texts(at)  # Explore opened on the Label next tab


def test_uploaded_unlabelled_photos_show_in_the_tab_at_once(app, tmp_path):
    folder = make_image_dataset(tmp_path / "mine", {"big": 6, "small": 4})
    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(folder)).run()
    _tab(at, "Unlabelled")
    assert "No unlabelled photos" in texts(at)
    photos = []
    for i, colour in enumerate(((200, 10, 10), (10, 200, 10))):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
        photos.append((f"new{i}.png", buffer.getvalue(), "image/png"))
    at.file_uploader(key="dataset_unlabelled_upload_0").set_value([*photos, ("bad.jpg", b"x", "image/jpeg")]).run()
    at.button(key="dataset_unlabelled_upload_add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "Added 2 photo(s)." in shown and "Left out" in shown and "bad.jpg" in shown
    assert "No unlabelled photos" not in shown and "**2** photo(s) waiting for a label" in shown  # no reload needed
    assert sorted(c for image in at.get("image") for c in image.captions) == [md("new0.png"), md("new1.png")]
    assert not at.file_uploader(key="dataset_unlabelled_upload_1").value, "the uploader is emptied: added once"
    at.run()
    assert "Added 2 photo(s)." not in texts(at) and "**2** photo(s) waiting for a label" in texts(at)


def test_the_split_tab_shows_the_split_the_next_run_trains_with(app, workspace, tmp_path):
    # the walk of issue 39: the tab said 179/38/38 while the run used 36 val / 36 test (labelled photos to training)
    from core.data.corrections import Corrections
    from core.data.datasets import scan_dataset
    from core.data.ingest import ingest
    from core.data.unlabelled import Unlabelled
    from core.runs.split import draw_split
    from core.settings.config import TrainConfig
    from core.train.jobs import dataset_corrections

    folder = make_image_dataset(tmp_path / "mine", {"daisy": 20, "dandelion": 20})
    make_image_dataset(tmp_path / "loose", {"unlabelled": 6})
    shutil.move(str(tmp_path / "loose" / "unlabelled"), str(folder / "unlabelled"))
    waiting = Unlabelled.load(workspace["data"], folder)
    for i in range(6):  # labelled in Flora: they join training, the rest split as before
        waiting.label(f"unlabelled/img_{i:03d}.png", ("daisy", "dandelion")[i % 2], ["daisy", "dandelion"])
    marks = Corrections.load(workspace["data"], folder)
    marks.mark("daisy/img_000.png", "exclude")
    marks.mark("dandelion/img_001.png", "relabel", to="daisy")
    marks.save()

    index = scan_dataset(folder)
    config = TrainConfig(image_size=32, weights="none")
    cache = ingest(index, config.cache_size, tmp_path / "cache")
    split = draw_split(cache, index, config, dataset_corrections(workspace["data"], folder))  # what a run uses
    expected = split.counts_by_class(cache.labels, index.classes)

    at = app("dataset")
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(folder)).run()
    _tab(at, "Split")
    assert not at.exception, [e.value for e in at.exception]
    table = table_with(at, "train", "val", "test")
    assert {name: table.loc[name].to_dict() for name in index.classes} == expected
    sizes = ", ".join(f"{n} {name}" for name, n in split.sizes().items())
    assert (
        "The next run with the Train page's defaults uses a stratified split drawn with seed 42 (no split seed set): "
        f"{sizes}." in texts(at)
    )
    assert md("6 photo(s) labelled in Flora join training") in texts(at) and "1 excluded" in texts(at)


def test_the_split_tab_draws_with_the_settings_the_train_form_starts_from(app, workspace, tmp_path):
    # the walk of issue 39 (item 9): the tab showed the defaults' seed 42 while the Train form held seed 7, the
    # settings last launched on the dataset
    from core import workspace as remembered
    from core.data.datasets import scan_dataset
    from core.data.ingest import ingest
    from core.runs.split import draw_split
    from core.settings.config import TrainConfig

    folder = make_image_dataset(tmp_path / "mine", {"daisy": 20, "dandelion": 20})
    index = scan_dataset(folder)
    cache = ingest(index, TrainConfig().cache_size, tmp_path / "cache")

    def shown_for(config: TrainConfig | None) -> tuple[str, dict]:
        if config is not None:
            remembered.remember_train_settings(workspace["data"], folder, config.to_dict())
        at = app("dataset")
        at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
        at.text_input(key="dataset_folder").set_value(str(folder)).run()
        _tab(at, "Split")
        assert not at.exception, [e.value for e in at.exception]
        table = table_with(at, "train", "val", "test")
        return texts(at), {name: table.loc[name].to_dict() for name in index.classes}

    def drawn(config: TrainConfig) -> dict:
        return draw_split(cache, index, config, None).counts_by_class(cache.labels, index.classes)

    shown, counts = shown_for(None)
    assert "The next run with the Train page's defaults uses a stratified split drawn with seed 42" in shown
    assert counts == drawn(TrainConfig())
    launched = TrainConfig(seed=7, val_fraction=0.25, weights="none", image_size=32)
    assert drawn(launched) != drawn(TrainConfig()), "a stratified split's counts change with the shares, not the seed"
    shown, counts = shown_for(launched)
    assert (
        "The next run with the settings last launched on this dataset uses a stratified split drawn with seed 7"
        in shown
    )
    assert counts == drawn(launched)
    kept = TrainConfig(seed=7, split_seed=42, weights="none", image_size=32)  # the defaults' shares
    shown, counts = shown_for(kept)
    assert "drawn with split seed 42 (seed 7 starts the network)" in shown and counts == drawn(TrainConfig())
    at = app("dataset")  # the form filled for this dataset in this session holds seed 3: that is what it launches
    at.session_state["train_form_dataset"] = str(folder)
    at.session_state["train_form_values"] = TrainConfig(seed=3, weights="none", image_size=32).to_dict()
    at.segmented_control(key="dataset_source").set_value("A folder on this machine").run()
    at.text_input(key="dataset_folder").set_value(str(folder)).run()
    _tab(at, "Split")
    assert "with the settings on the Train page's form uses a stratified split drawn with seed 3" in texts(at)
