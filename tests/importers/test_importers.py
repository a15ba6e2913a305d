"""Importers: names, zip uploads (hostile ones too), the demo set, Oxford 102, and downloads over HTTP."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import importers
from core.data.datasets import scan_dataset, split_indices
from core.importers import (
    KNOWN_SOURCES,
    OXFORD102_NAMES,
    DownloadError,
    ImportCancelled,
    ImportRejected,
    get_dataset,
    import_oxford102,
    import_zip,
    make_demo_dataset,
    read_labels_and_split,
    validate_dataset_name,
)
from core.importers import download as download_module
from core.importers.archives import Budget, copy_limited
from core.importers.oxford import class_folder
from tests.conftest import OXFORD, require_shared
from tests.datafixtures import (
    OXFORD_COUNT,
    FileServer,
    jpeg_bytes,
    oxford_source,
    sha256,
    tf_flowers_members,
    tgz_bytes,
    tree,
    write_tgz,
    write_zip,
)


def require_oxford() -> Path:
    require_shared(OXFORD / "imagelabels.mat", "the Oxford 102 label files")
    return OXFORD


def assert_nothing_left(data_root: Path, name: str) -> None:
    """No dataset, no staging folder, no download leftovers."""
    left = tree(data_root) if data_root.exists() else []
    assert not (data_root / name).exists(), left
    assert not [p for p in left if p.endswith(".importing") or ".importing/" in p], left
    assert not [p for p in left if p.startswith(".downloads")], left


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("name, cleaned", [("flowers", "flowers"), ("  my set ", "my set"), ("rosé-2", "rosé-2")])
def test_valid_dataset_names(name, cleaned):
    assert validate_dataset_name(name) == cleaned


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "not allowed"),
        ("..", "not allowed"),
        ("a/b", "slashes"),
        ("a\\b", "slashes"),
        ("../escape", "slashes"),
        (".hidden", "start with a dot"),
        ("what?", "characters"),
        ("tab\there", "characters"),
        ("x" * 101, "longer than"),
        ("ends.", "end with a dot"),
        ("CON", "reserved"),
        ("nul.txt", "reserved"),
    ],
)
def test_invalid_dataset_names_say_why(name, message):
    with pytest.raises(ImportRejected, match=message):
        validate_dataset_name(name)


def test_existing_name_is_taken_unless_overwriting(tmp_path):
    (tmp_path / "flowers").mkdir()
    with pytest.raises(ImportRejected, match="already exists") as clash:
        validate_dataset_name("flowers", tmp_path)
    assert validate_dataset_name("flowers", tmp_path, overwrite=True) == "flowers"
    # walk of issue 38, items 1 and 14: the page showed the server's data folder and offered a replace it has not
    assert str(tmp_path) not in str(clash.value) and "or replace it" not in str(clash.value)
    assert "choose another name (the command line's --force replaces it)" in str(clash.value)


# ----------------------------------------------------------------------------- zip


def class_entries(prefix: str = "", classes=("daisy", "rose"), per_class: int = 3) -> list[tuple[str, bytes]]:
    entries = []
    for k, name in enumerate(classes):
        for i in range(per_class):
            entries.append((f"{prefix}{name}/img_{i}.jpg", jpeg_bytes(10 * k + i, (40, 32))))
    return entries


@pytest.mark.parametrize("prefix", ["", "my flowers/"], ids=["class folders at the top", "under one top folder"])
def test_zip_of_class_folders(tmp_path, prefix):
    archive = write_zip(tmp_path / "upload.zip", class_entries(prefix))
    result = import_zip(archive, "flowers", tmp_path / "data")
    assert (result.name, result.classes, result.images, result.source) == ("flowers", 2, 6, "zip")
    assert result.path == tmp_path / "data" / "flowers"
    index = scan_dataset(result.path)
    assert index.classes == ["daisy", "rose"] and len(index.entries) == 6
    assert index.meta["source"] == "zip" and index.meta["archive"] == "upload.zip"
    assert any("unwrapped the top folder" in n for n in result.notes) == bool(prefix)
    assert tree(tmp_path / "data") == ["flowers", *sorted(f"flowers/{p}" for p in _dataset_files(index))]


def _dataset_files(index) -> list[str]:
    return ["daisy", "rose", "flora.json", *[e.path for e in index.entries]]


def test_zip_with_a_stray_image_beside_the_class_folders(tmp_path):
    entries = [*class_entries("export/"), ("export/cover.jpg", jpeg_bytes(77))]
    result = import_zip(write_zip(tmp_path / "u.zip", entries), "stray", tmp_path / "data")
    assert (result.classes, result.images) == (2, 6)
    assert result.skipped == [{"path": "export/cover.jpg", "reason": "not inside a class folder"}]


def test_zip_with_its_own_split(tmp_path):
    entries = class_entries("set/train/", per_class=4) + class_entries("set/val/", per_class=1)
    entries += class_entries("set/test/", per_class=2)
    result = import_zip(write_zip(tmp_path / "s.zip", entries), "split", tmp_path / "data")
    assert result.split == {"train": 8, "val": 2, "test": 4}
    assert scan_dataset(result.path).layout == "presplit"
    assert any("already split" in n for n in result.notes)


def test_zip_skips_and_lists_what_is_not_an_image(tmp_path):
    entries = class_entries()
    entries += [
        ("README.txt", b"my flowers"),
        ("daisy/notes.txt", b"picked in May"),
        ("daisy/fake.jpg", b"this is text, not a photo"),
        ("daisy/empty.jpg", b""),
        ("loose.jpg", jpeg_bytes(99)),
        ("__MACOSX/daisy/._img_0.jpg", b"\x00\x05\x16\x07"),
        ("daisy/.DS_Store", b"\x00\x00"),
        ("rose/.secret.jpg", jpeg_bytes(98)),
    ]
    result = import_zip(write_zip(tmp_path / "u.zip", entries), "mixed", tmp_path / "data")
    assert result.images == 6
    reasons = {s["path"]: s["reason"] for s in result.skipped}
    assert reasons == {
        "README.txt": "not an image file (by its extension)",
        "daisy/notes.txt": "not an image file (by its extension)",
        "daisy/fake.jpg": "not an image (the contents are not an image format)",
        "daisy/empty.jpg": "not an image (empty file)",
        "loose.jpg": "not inside a class folder",
        "rose/.secret.jpg": "hidden file",
    }
    assert any("ignored 2 macOS/Windows metadata" in n for n in result.notes)
    assert sorted(p.name for p in (result.path / "daisy").iterdir()) == ["img_0.jpg", "img_1.jpg", "img_2.jpg"]


def test_zip_keeps_names_with_spaces_and_accents(tmp_path):
    entries = [("Rosé rouge/été 1.jpg", jpeg_bytes(1)), ("Rosé rouge/été 2.jpg", jpeg_bytes(2))]
    entries += [("Tulpe/Blüte #1.jpg", jpeg_bytes(3)), ("Tulpe/Blüte #2.jpg", jpeg_bytes(4))]
    result = import_zip(write_zip(tmp_path / "u.zip", entries), "accents", tmp_path / "data")
    assert scan_dataset(result.path).classes == ["Rosé rouge", "Tulpe"]
    assert (result.path / "Rosé rouge" / "été 1.jpg").is_file()


def test_zip_refers_oversized_images_to_the_bomb_guard(tmp_path):
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000), 0).save(bomb, format="PNG")  # 400 megapixels, a few KB
    entries = [*class_entries(), ("rose/huge.png", bomb.getvalue())]
    result = import_zip(write_zip(tmp_path / "u.zip", entries), "bomb", tmp_path / "data")
    assert [s["path"] for s in result.skipped] == ["rose/huge.png"]
    assert "too large" in result.skipped[0]["reason"]


def test_zip_from_a_file_object_like_an_upload(tmp_path):
    buffer = io.BytesIO(write_zip(tmp_path / "u.zip", class_entries()).read_bytes())
    buffer.name = "from the browser.zip"
    result = import_zip(buffer, "uploaded", tmp_path / "data")
    assert result.images == 6
    assert scan_dataset(result.path).meta["archive"] == "from the browser.zip"


def test_zip_with_one_class_imports_with_a_warning(tmp_path):
    result = import_zip(write_zip(tmp_path / "u.zip", class_entries(classes=("daisy",))), "one", tmp_path / "data")
    assert result.classes == 1
    assert any("at least 2 classes" in n for n in result.notes)


def test_zip_over_an_existing_dataset(tmp_path):
    data = tmp_path / "data"
    import_zip(write_zip(tmp_path / "a.zip", class_entries()), "set", data)
    with pytest.raises(ImportRejected, match="already exists"):
        import_zip(write_zip(tmp_path / "b.zip", class_entries(classes=("x", "y", "z"))), "set", data)
    assert scan_dataset(data / "set").classes == ["daisy", "rose"]
    result = import_zip(tmp_path / "b.zip", "set", data, overwrite=True)
    assert result.classes == 3 and scan_dataset(data / "set").classes == ["x", "y", "z"]
    assert tree(data) == ["set", *sorted(f"set/{p}" for p in _tree_names(data / "set"))]


def _tree_names(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*")]


HOSTILE_ZIPS = {
    "parent directory": (lambda: [*class_entries(), ("../evil.txt", b"x")], {}, "climbs out"),
    "parent inside a path": (lambda: [*class_entries(), ("daisy/../../evil.jpg", jpeg_bytes())], {}, "climbs out"),
    "absolute path": (lambda: [*class_entries(), ("/tmp/evil.jpg", jpeg_bytes())], {}, "absolute path"),
    "windows drive": (lambda: [*class_entries(), ("C:/evil.jpg", jpeg_bytes())], {}, "absolute path"),
    "windows backslashes": (lambda: [*class_entries(), ("..\\evil.jpg", jpeg_bytes())], {}, "climbs out"),
    "symlink": (class_entries, {"symlinks": {"daisy/link.jpg": "/etc/passwd"}}, "symbolic link"),
    "duplicate name": (lambda: [*class_entries(), ("daisy/img_0.jpg", jpeg_bytes(5))], {}, "two entries"),
    "names differing in case": (lambda: [*class_entries(), ("daisy/IMG_0.JPG", jpeg_bytes(5))], {}, "letter case"),
    "file and folder clash": (lambda: [*class_entries(), ("daisy", b"x")], {}, "both a file and a folder"),
    "no class folders": (lambda: [("a.jpg", jpeg_bytes()), ("notes.txt", b"x")], {}, "no images in class folders"),
}


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zipfile warns as it writes the duplicate
@pytest.mark.parametrize("case", HOSTILE_ZIPS)
def test_hostile_zip_is_refused_and_nothing_is_written(tmp_path, case):
    make, kwargs, message = HOSTILE_ZIPS[case]
    archive = write_zip(tmp_path / "upload.zip", make(), **kwargs)
    data = tmp_path / "inner" / "data"
    with pytest.raises(ImportRejected, match=message):
        import_zip(archive, "evil", data)
    assert_nothing_left(data, "evil")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["upload.zip"]


def test_zip_over_the_size_cap(tmp_path):
    archive = write_zip(tmp_path / "big.zip", class_entries(per_class=5))
    with pytest.raises(ImportRejected, match=r"unpacks to .* over the limit"):
        import_zip(archive, "big", tmp_path / "data", max_total_bytes=2_000)
    assert_nothing_left(tmp_path / "data", "big")


def test_zip_over_the_file_count_cap(tmp_path):
    archive = write_zip(tmp_path / "many.zip", class_entries(per_class=5))
    with pytest.raises(ImportRejected, match="10 files, over the limit of 9"):
        import_zip(archive, "many", tmp_path / "data", max_files=9)
    assert_nothing_left(tmp_path / "data", "many")


def test_zip_bomb_by_compression_ratio(tmp_path):
    archive = write_zip(tmp_path / "bomb.zip", [*class_entries(), ("rose/zeros.jpg", bytes(20 << 20))])
    assert zipfile.ZipFile(archive).getinfo("rose/zeros.jpg").compress_size < 100_000
    with pytest.raises(ImportRejected, match="likely zip bomb"):
        import_zip(archive, "bomb", tmp_path / "data")
    assert_nothing_left(tmp_path / "data", "bomb")


@pytest.mark.parametrize("payload", [b"plain text, not a zip", b""], ids=["text", "empty"])
def test_not_a_zip(tmp_path, payload):
    (tmp_path / "x.zip").write_bytes(payload)
    with pytest.raises(ImportRejected, match="not a zip archive"):
        import_zip(tmp_path / "x.zip", "x", tmp_path / "data")
    with pytest.raises(ImportRejected, match="not found"):
        import_zip(tmp_path / "missing.zip", "x", tmp_path / "data")


def test_real_bytes_are_counted_not_the_headers(tmp_path):
    with pytest.raises(ImportRejected, match="over the limit"):
        copy_limited(io.BytesIO(bytes(3 << 20)), tmp_path / "x", Budget(max_total_bytes=2 << 20), None)


def test_entry_larger_than_its_header_is_refused(tmp_path):
    with pytest.raises(ImportRejected, match="more data than its header says"):
        copy_limited(io.BytesIO(bytes(5000)), tmp_path / "x", Budget(), limit=100)


def test_stopped_zip_import_leaves_nothing(tmp_path):
    archive = write_zip(tmp_path / "u.zip", class_entries(per_class=5))
    calls = []
    with pytest.raises(ImportCancelled):
        import_zip(archive, "stopped", tmp_path / "data", should_stop=lambda: calls.append(1) or len(calls) > 4)
    assert_nothing_left(tmp_path / "data", "stopped")


# ----------------------------------------------------------------------------- demo


def test_demo_set_is_deterministic_labelled_and_says_it_is_synthetic(tmp_path):
    stages = []
    result = make_demo_dataset(tmp_path / "a", per_class=6, progress=lambda s, d, t: stages.append((s, d, t)))
    again = make_demo_dataset(tmp_path / "b", per_class=6)
    other = make_demo_dataset(tmp_path / "c", per_class=6, seed=1)
    assert (result.classes, result.images) == (5, 30)
    assert stages[-1] == ("drawing", 30, 30)
    index = scan_dataset(result.path)
    assert index.classes == sorted(importers.DEMO_CLASSES)
    assert index.meta["synthetic"] is True and "Synthetic" in index.meta["description"]
    first = [(result.path / e.path).read_bytes() for e in index.entries]
    assert first == [(again.path / e.path).read_bytes() for e in index.entries]
    assert first != [(other.path / e.path).read_bytes() for e in index.entries]
    sizes = {Image.open(result.path / e.path).size for e in index.entries}
    assert all(96 <= w == h <= 128 for w, h in sizes)


def test_demo_set_is_learnable(tmp_path):
    """Simple colour and shape statistics and a linear model beat chance (0.2) clearly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    result = make_demo_dataset(tmp_path, per_class=40)
    index = scan_dataset(result.path)
    features = [_colour_features(result.path / e.path) for e in index.entries]
    scores = cross_val_score(LogisticRegression(max_iter=2000), np.array(features), index.labels, cv=4)
    assert scores.mean() > 0.6, scores  # chance is 0.2


def _colour_features(path: Path) -> np.ndarray:
    hsv = np.asarray(Image.open(path).convert("HSV").resize((32, 32)), np.float32) / 255
    saturated = hsv[..., 1] > 0.35
    hue_hist = np.histogram(hsv[..., 0][saturated], bins=12, range=(0, 1))[0] / max(1, saturated.sum())
    return np.concatenate([hue_hist, [saturated.mean()]])


@pytest.mark.slow
def test_a_model_trained_on_the_demo_set_beats_chance(tmp_path):
    """What a new user without a network does: draw the demo set, train with random weights, evaluate."""
    from core import run_job
    from core.runs.store import RunStore
    from core.settings.config import TrainConfig
    from core.train import jobs

    result = get_dataset("demo", tmp_path / "data")
    store = RunStore(tmp_path / "models")
    config = TrainConfig(image_size=64, weights="none", epochs=8, batch_size=32, head=(64,), seed=1)
    submission = jobs.submit(store, result.path, config)
    run_job.execute(store, submission, tmp_path / "data", console=False, ingest_workers=1)
    status = store.get(submission.run_id).status
    assert status.state == "done" and status.accuracy >= 0.5, status  # chance is 0.2


def test_get_demo_and_find_it_again(tmp_path):
    first = get_dataset("demo", tmp_path)
    assert first.images == 300 and not first.already_present
    again = get_dataset("demo", tmp_path)
    assert again.already_present and again.images == 300 and "already in" in again.notes[0]
    with pytest.raises(ImportRejected, match="no URL"):
        get_dataset("demo", tmp_path, url="http://example.invalid/demo.tgz", force=True)


def test_unknown_dataset_key(tmp_path):
    with pytest.raises(ImportRejected, match="unknown dataset 'mnist'; known: tf_flowers, oxford102, demo"):
        get_dataset("mnist", tmp_path)


# ----------------------------------------------------------------------------- Oxford 102


def test_oxford_names_are_in_project_code_in_label_order():
    community = json.loads((OXFORD / "cat_to_name.json").read_text()) if OXFORD.is_dir() else None
    assert len(OXFORD102_NAMES) == 102 == len(set(OXFORD102_NAMES))
    folders = [class_folder(i) for i in range(1, 103)]
    assert len(set(folders)) == 102
    assert all(f == f.strip() and not set(f) & set('<>:"/\\|?*') for f in folders)
    assert folders[0] == "pink primrose" and folders[101] == "blackberry lily" and folders[11] == "colt's foot"
    if community:
        differ = {i: (community[str(i)], OXFORD102_NAMES[i - 1]) for i in range(1, 103)}
        differ = {i: pair for i, pair in differ.items() if pair[0] != pair[1]}
        assert differ == {78: ("lotus lotus", "lotus")}  # the community list's typo, fixed here


def test_official_label_and_split_files():
    root = require_oxford()
    labels, split = read_labels_and_split(root / "imagelabels.mat", root / "setid.mat")
    assert len(labels) == OXFORD_COUNT and labels.min() == 1 and labels.max() == 102
    assert [split.count(s) for s in ("train", "val", "test")] == [1020, 1020, 6149]
    assert split.count(None) == 0


@pytest.fixture(scope="module")
def oxford_folder(tmp_path_factory):
    require_oxford()
    return oxford_source(tmp_path_factory.mktemp("oxford") / "src")


def test_oxford_import_gives_102_named_classes_and_the_official_split(tmp_path, oxford_folder):
    before = tree(oxford_folder)
    stages = set()
    result = import_oxford102(oxford_folder, tmp_path / "data", progress=lambda s, d, t: stages.add(s))
    assert (result.classes, result.images, result.skipped) == (102, OXFORD_COUNT, [])
    assert result.split == {"train": 1020, "val": 1020, "test": 6149}
    assert "official split: 1020 train / 1020 val / 6149 test" in result.notes
    assert stages == {"copying"} and tree(oxford_folder) == before

    index = scan_dataset(result.path)
    assert index.layout == "manifest" and len(index.classes) == 102
    assert index.classes == sorted(class_folder(i) for i in range(1, 103))
    split = split_indices(index.labels, index.classes, [e.split for e in index.entries])
    assert split.source == "dataset" and split.sizes() == {"train": 1020, "val": 1020, "test": 6149}

    labels, official = read_labels_and_split(OXFORD / "imagelabels.mat", OXFORD / "setid.mat")
    for entry in index.entries:  # every photo sits in its label's folder, with its official split
        image_id = int(entry.path.split("image_")[1][:5])
        assert entry.path == f"{class_folder(int(labels[image_id - 1]))}/image_{image_id:05d}.jpg"
        assert entry.split == official[image_id - 1]
    meta = json.loads((result.path / "flora.json").read_text())
    assert meta["labels"]["pink primrose"] == 1 and meta["labels"]["blackberry lily"] == 102
    assert (result.path / "setid.mat").is_file() and (result.path / "imagelabels.mat").is_file()


def test_oxford_import_from_the_archive_with_missing_photos(tmp_path):
    require_oxford()
    source = oxford_source(tmp_path / "src", image_ids=[1, 2, 3, 17, 28, 8189], as_tgz=True)
    result = import_oxford102(source, tmp_path / "data", name="ox-small")
    assert result.images == 6 and len(result.skipped) == OXFORD_COUNT - 6
    assert result.skipped[0] == {"path": "jpg/image_00004.jpg", "reason": "listed in imagelabels.mat but missing"}
    index = scan_dataset(result.path)
    assert sorted(e.split for e in index.entries) == ["test", "test", "test", "test", "train", "val"]


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no setid", "missing setid.mat"),
        ("no images", r"missing jpg/ \(or 102flowers.tgz\)"),
        ("garbage labels", "imagelabels.mat is not a readable MATLAB file"),
        ("wrong mat", "has no 'labels' array"),
    ],
)
def test_oxford_import_errors_name_the_problem(tmp_path, breakage, message):
    require_oxford()
    source = oxford_source(tmp_path / "src", image_ids=[1, 2])
    if breakage == "no setid":
        (source / "setid.mat").unlink()
    elif breakage == "no images":
        for p in (source / "jpg").iterdir():
            p.unlink()
        (source / "jpg").rmdir()
    elif breakage == "garbage labels":
        (source / "imagelabels.mat").write_bytes(b"not matlab")
    else:
        (source / "imagelabels.mat").write_bytes((source / "setid.mat").read_bytes())
    with pytest.raises(ImportRejected, match=message):
        import_oxford102(source, tmp_path / "data")
    assert_nothing_left(tmp_path / "data", "oxford102")


def test_the_apps_oxford_import_reads_only_inside_the_data_roots(tmp_path):
    """Before (probe): the app imported from any server folder, and told `/root/.ssh` ("missing imagelabels.mat")
    from `/root/nonexistent` ("not found")."""
    from core.data.roots import OutsideDataRoots

    data, outside = tmp_path / "data", tmp_path / "outside"
    (outside / ".ssh").mkdir(parents=True)
    (outside / ".ssh" / "id_ed25519").write_text("private")
    roots = [data.resolve()]
    said = []
    for folder in (outside / ".ssh", outside / "nonexistent"):
        with pytest.raises(OutsideDataRoots) as refused:
            import_oxford102(folder, data, roots=roots)
        said.append(str(refused.value).replace(str(folder), "FOLDER"))
    assert said[0] == said[1] and "imagelabels" not in said[0] and "not found" not in said[0]
    with pytest.raises(ImportRejected, match="source folder not found"):  # inside the roots: said as it is
        import_oxford102("not-there-yet", data, roots=roots)
    require_oxford()
    oxford_source(data / "ox-src", image_ids=[1, 2, 3])
    result = import_oxford102("ox-src", data, name="ox-small", roots=roots)  # a name: a folder in the data folder
    assert result.images == 3


# ----------------------------------------------------------------------------- downloads


@pytest.fixture
def server():
    running = FileServer().start()
    yield running
    running.stop()


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(download_module.time, "sleep", lambda seconds: None)


def serve_tf_flowers(server: FileServer, monkeypatch, data: bytes | None = None, **kwargs) -> bytes:
    """Serve a small tf_flowers archive and make it the "official" one (its URL, size and SHA-256)."""
    archive = data if data is not None else tgz_bytes(tf_flowers_members())
    url = server.add("/flower_photos.tgz", archive, **kwargs)
    source = KNOWN_SOURCES["tf_flowers"]
    remote = dataclasses.replace(source.files[0], url=url, size=len(archive), sha256=sha256(archive))
    monkeypatch.setitem(KNOWN_SOURCES, "tf_flowers", dataclasses.replace(source, files=(remote,), images=10))
    return archive


def test_tf_flowers_download_verifies_and_unpacks(tmp_path, server, monkeypatch):
    serve_tf_flowers(server, monkeypatch)
    stages = []
    result = get_dataset("tf_flowers", tmp_path, progress=lambda s, d, t: stages.append(s))
    assert (result.classes, result.images, result.source) == (5, 10, "tf_flowers")
    assert scan_dataset(result.path).classes == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert (result.path / "LICENSE.txt").read_text().startswith("All images")
    assert any("match the published checksum" in n for n in result.notes)
    changes = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert changes == ["downloading", "verifying", "unpacking"]
    assert tree(tmp_path) == ["tf_flowers", *sorted(f"tf_flowers/{p}" for p in _tree_names(tmp_path / "tf_flowers"))]
    meta = scan_dataset(result.path).meta
    assert meta["source"] == "tf_flowers" and "Creative Commons" in meta["license"]

    assert get_dataset("tf_flowers", tmp_path).already_present
    assert len(server.requests) == 1
    assert not get_dataset("tf_flowers", tmp_path, force=True).already_present
    assert len(server.requests) == 2


def test_interrupted_download_resumes_with_a_range_request(tmp_path, server, monkeypatch, no_backoff):
    archive = serve_tf_flowers(server, monkeypatch, cut_once_at=5000)
    result = get_dataset("tf_flowers", tmp_path)
    assert result.images == 10
    assert [r["range"] for r in server.requests] == [None, "bytes=5000-"]
    assert server.requests[1]["if_range"] == f'"{sha256(archive)[:16]}"'


def test_stopped_download_keeps_its_part_and_the_next_call_resumes(tmp_path, server, monkeypatch):
    monkeypatch.setattr(download_module, "_CHUNK", 2048)
    serve_tf_flowers(server, monkeypatch)
    seen = []

    def stop_after_a_few_chunks() -> bool:
        return len(seen) >= 3

    with pytest.raises(ImportCancelled, match="resume"):
        get_dataset("tf_flowers", tmp_path, lambda s, d, t: seen.append(d), should_stop=stop_after_a_few_chunks)
    part = tmp_path / ".downloads" / "tf_flowers" / "flower_photos.tgz.part"
    kept = part.stat().st_size
    assert kept == 4096 and not (tmp_path / "tf_flowers").exists()
    result = get_dataset("tf_flowers", tmp_path)
    assert result.images == 10
    assert server.requests[-1]["range"] == f"bytes={kept}-"
    assert not (tmp_path / ".downloads").exists()


def test_download_that_fails_verification_leaves_nothing(tmp_path, server, monkeypatch):
    good = tgz_bytes(tf_flowers_members())
    serve_tf_flowers(server, monkeypatch, data=good)
    server.files["/flower_photos.tgz"].data = good[:-10] + b"0123456789"  # same size, other bytes
    with pytest.raises(DownloadError, match="failed verification: SHA-256"):
        get_dataset("tf_flowers", tmp_path)
    assert_nothing_left(tmp_path, "tf_flowers")
    assert tree(tmp_path) == []


def test_download_of_the_wrong_size_leaves_nothing(tmp_path, server, monkeypatch):
    serve_tf_flowers(server, monkeypatch)
    server.files["/flower_photos.tgz"].data += b"extra"
    with pytest.raises(DownloadError, match="expected"):
        get_dataset("tf_flowers", tmp_path)
    assert tree(tmp_path) == []


def test_custom_url_is_checked_by_its_layout(tmp_path, server):
    url = server.add("/mirror/flowers.tgz", tgz_bytes(tf_flowers_members(per_class=1)))
    result = get_dataset("tf_flowers", tmp_path, url=url)
    assert result.images == 5
    assert any("not the official file" in n for n in result.notes)
    assert any("the official archive has 3,670" in n for n in result.notes)


@pytest.mark.parametrize(
    "members, links, message",
    [
        ({"photos/daisy/a.jpg": jpeg_bytes()}, None, "no flower_photos/<class>/<image> folders"),
        ({"flower_photos/cats/a.jpg": jpeg_bytes()}, None, "expected the classes daisy, dandelion"),
        ({"flower_photos/../evil.jpg": jpeg_bytes()}, None, "climbs out"),
        ({"flower_photos/daisy/a.jpg": jpeg_bytes()}, {"flower_photos/daisy/b.jpg": "/etc/passwd"}, "link"),
    ],
    ids=["other layout", "other classes", "parent directory", "symlink"],
)
def test_custom_url_with_the_wrong_archive_leaves_nothing(tmp_path, server, members, links, message):
    archive = write_tgz(tmp_path / "bad.tgz", members, links)
    url = server.add("/bad.tgz", archive.read_bytes())
    data = tmp_path / "data"
    with pytest.raises((DownloadError, ImportRejected), match=message):
        get_dataset("tf_flowers", data, url=url)
    assert tree(data) == []
    assert not (tmp_path / "evil.jpg").exists()


def test_custom_url_that_is_not_an_archive(tmp_path, server):
    url = server.add("/page.html", b"<html>Not here</html>")
    with pytest.raises(DownloadError, match="not a readable tar archive"):
        get_dataset("tf_flowers", tmp_path, url=url)
    assert tree(tmp_path) == []


def test_http_errors_and_unreachable_servers(tmp_path, server, no_backoff):
    with pytest.raises(DownloadError, match="HTTP 404"):
        get_dataset("tf_flowers", tmp_path, url=server.url + "/nothing.tgz")
    assert len(server.requests) == 1  # a 404 is not retried
    url = server.url + "/gone.tgz"
    server.stop()
    with pytest.raises(DownloadError, match="failed after 4 attempts"):
        get_dataset("tf_flowers", tmp_path, url=url)
    assert tree(tmp_path) == []


def test_oxford_download_from_a_local_mirror(tmp_path, server, monkeypatch):
    require_oxford()
    source_dir = oxford_source(tmp_path / "published", as_tgz=True)
    source = KNOWN_SOURCES["oxford102"]
    files = []
    for remote in source.files:
        data = (source_dir / remote.name).read_bytes()
        url = server.add(f"/vgg/{remote.name}", data)
        files.append(dataclasses.replace(remote, url=url, size=len(data), sha256=sha256(data)))
        if remote.name != "102flowers.tgz":  # the real label files are the published ones
            assert sha256(data) == remote.sha256 and len(data) == remote.size
    monkeypatch.setitem(KNOWN_SOURCES, "oxford102", dataclasses.replace(source, files=tuple(files)))
    data_root = tmp_path / "data"
    result = get_dataset("oxford102", data_root)
    assert (result.classes, result.images) == (102, OXFORD_COUNT)
    assert result.split == {"train": 1020, "val": 1020, "test": 6149}
    assert [r["path"] for r in server.requests] == ["/vgg/imagelabels.mat", "/vgg/setid.mat", "/vgg/102flowers.tgz"]
    assert tree(data_root)[0] == "oxford102" and not (data_root / ".downloads").exists()
    index = scan_dataset(data_root / "oxford102")
    assert split_indices(index.labels, index.classes, [e.split for e in index.entries]).sizes()["test"] == 6149


def test_a_failed_refetch_keeps_the_dataset_in_place(tmp_path, server, monkeypatch, no_backoff):
    serve_tf_flowers(server, monkeypatch)
    first = get_dataset("tf_flowers", tmp_path)
    before = tree(tmp_path)
    server.files["/flower_photos.tgz"].status = 503
    with pytest.raises(DownloadError, match="failed after 4 attempts"):
        get_dataset("tf_flowers", tmp_path, force=True)
    assert tree(tmp_path) == before and scan_dataset(first.path).classes[0] == "daisy"


def test_stop_while_unpacking_keeps_the_verified_archive_for_the_next_call(tmp_path, server, monkeypatch):
    serve_tf_flowers(server, monkeypatch)
    stage = []

    def stop_when_unpacking() -> bool:
        return stage[-1:] == ["unpacking"]

    with pytest.raises(ImportCancelled, match="the download is kept"):
        get_dataset("tf_flowers", tmp_path, lambda s, d, t: stage.append(s), should_stop=stop_when_unpacking)
    assert tree(tmp_path) == [".downloads", ".downloads/tf_flowers", ".downloads/tf_flowers/flower_photos.tgz"]
    result = get_dataset("tf_flowers", tmp_path)
    assert result.images == 10 and len(server.requests) == 1
    assert any("reused the verified download" in n for n in result.notes)
    assert not (tmp_path / ".downloads").exists()


def test_one_fetch_at_a_time(tmp_path, server, monkeypatch):
    import fcntl

    serve_tf_flowers(server, monkeypatch)
    (tmp_path / ".downloads").mkdir()
    with open(tmp_path / ".downloads" / "tf_flowers.lock", "a") as other:  # another process fetching
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ImportRejected, match="already being fetched"):
            get_dataset("tf_flowers", tmp_path)
        assert server.requests == []
    assert get_dataset("tf_flowers", tmp_path).images == 10
    assert tree(tmp_path)[0] == "tf_flowers"
