"""The health check finds what is planted: unreadable files, duplicates, leaks, imbalance, odd sizes, gray."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from core.data.datasets import DatasetError, scan_dataset, split_indices
from core.health import Finding, check_dataset, image_table, imagehash, saved_report
from core.settings.config import TrainConfig
from tests.conftest import FLOWERS, require_flowers
from tests.datafixtures import picture


def add_pictures(folder, seeds, size=(96, 80)):
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        picture(seed, size).save(folder / f"p{seed:04d}.jpg", quality=92)
    return folder


def kinds(report) -> list[str]:
    return [f.kind for f in report.findings]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A dataset with one of everything the check looks for, and odd files that must pass."""
    root = tmp_path_factory.mktemp("health") / "planted"
    add_pictures(root / "daisy", range(0, 30))
    add_pictures(root / "rose", range(100, 112))
    add_pictures(root / "tulip", range(200, 205))  # small class; imbalance 30/5 = 6
    (root / "lily").mkdir()  # empty class

    # exact duplicates: a copy in the same class, and one filed under another class
    shutil.copyfile(root / "daisy/p0001.jpg", root / "daisy/p0001 copy.jpg")
    shutil.copyfile(root / "daisy/p0002.jpg", root / "rose/p0002.jpg")
    # near duplicate: resized and re-encoded
    Image.open(root / "rose/p0100.jpg").resize((80, 67)).save(root / "rose/p0100 small.jpg", quality=60)
    # grayscale: stored as L, as RGB with gray pixels, and as 16-bit
    picture(300).convert("L").save(root / "daisy/gray L.png")
    picture(301, gray=True).save(root / "daisy/gray rgb.jpg", quality=92)
    Image.fromarray(np.asarray(picture(302).convert("L"), np.uint16) * 257).save(root / "daisy/gray 16-bit.png")
    # sizes
    picture(303, (40, 30)).save(root / "rose/tiny.png")
    picture(304, (400, 100)).save(root / "rose/banner.png")
    # unreadable, four kinds
    (root / "daisy/empty.jpg").write_bytes(b"")
    (root / "daisy/notes.jpg").write_text("shopping list: tulips")
    truncated = root / "rose/cut.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    Image.new("1", (20_000, 20_000), 0).save(root / "tulip/huge.png")
    # odd but readable: must not be reported as unreadable
    picture(305).convert("CMYK").save(root / "rose/cmyk.jpg")
    picture(306).convert("RGBA").save(root / "rose/alpha.png")
    picture(307).convert("P").save(root / "rose/palette.gif")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated: 96x80 stored, 80x96 shown
    picture(308).save(root / "rose/rotated.jpg", exif=exif)
    picture(309).save(root / "rose/Rosé à l'été (1).jpg")
    (root / "rose/readme.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def report(planted):
    return check_dataset(planted)


def test_unreadable_files_are_listed_with_their_reasons(report):
    finding = report.by_kind("unreadable")
    assert finding.severity == "warning"
    assert sorted(finding.files) == ["daisy/empty.jpg", "daisy/notes.jpg", "rose/cut.jpg", "tulip/huge.png"]
    reasons = finding.captions
    assert "not an image" in reasons["daisy/empty.jpg"] and "not an image" in reasons["daisy/notes.jpg"]
    assert "truncated" in reasons["rose/cut.jpg"] or "corrupt" in reasons["rose/cut.jpg"]
    assert "too large" in reasons["tulip/huge.png"]
    assert "4 files cannot be decoded" in finding.title


def test_odd_but_readable_images_pass(report):
    table = report.table.set_index("path")
    for name in ("cmyk.jpg", "alpha.png", "palette.gif", "rotated.jpg", "Rosé à l'été (1).jpg", "tiny.png"):
        assert table.loc[f"rose/{name}", "readable"], name
    assert table.loc["daisy/gray 16-bit.png", "readable"]
    assert (table.loc["rose/rotated.jpg", "width"], table.loc["rose/rotated.jpg", "height"]) == (80, 96)


def test_exact_and_near_duplicates(report):
    exact = report.by_kind("exact_duplicates")
    assert exact.groups == [["daisy/p0001 copy.jpg", "daisy/p0001.jpg"], ["daisy/p0002.jpg", "rose/p0002.jpg"]]
    near = report.by_kind("near_duplicates")
    assert near.groups == [["rose/p0100 small.jpg", "rose/p0100.jpg"]]
    assert set(near.files) == {"rose/p0100 small.jpg", "rose/p0100.jpg"}


def test_same_picture_under_two_classes(report):
    finding = report.by_kind("conflicting_labels")
    assert finding.severity == "error"
    assert finding.groups == [["daisy/p0002.jpg", "rose/p0002.jpg"]]
    assert finding.captions == {"daisy/p0002.jpg": "daisy", "rose/p0002.jpg": "rose"}


def test_leakage_under_the_split_training_would_make(planted, report):
    """No split of its own: the check uses the seeded split with TrainConfig's defaults, as training does."""
    assert report.stats["split"]["source"] == "random"
    index = scan_dataset(planted)
    table = report.table
    readable = np.flatnonzero(table["readable"].to_numpy())
    config = TrainConfig()
    split = split_indices(index.labels[readable], index.classes, None, config.val_fraction, config.test_fraction)
    where = {}
    for name in ("train", "val", "test"):
        for position in getattr(split, name):
            where[index.entries[readable[position]].path] = name
    groups = [*report.by_kind("exact_duplicates").groups, *report.by_kind("near_duplicates").groups]
    expected = [g for g in groups if len({where[f] for f in g}) > 1]
    finding = report.by_kind("split_leakage")
    assert expected, "the planted copies should straddle the default split"
    assert finding.severity == "error"
    assert sorted(finding.groups) == sorted(expected)
    assert all(finding.captions[f] == where[f] for g in expected for f in g)
    assert "no split of its own" in finding.detail and "seed 42" in finding.detail


def test_classes_imbalance_and_small_and_empty(report):
    imbalance = report.by_kind("class_imbalance")
    assert imbalance.severity == "warning"  # readable: 34 daisies, 21 roses, 5 tulips
    assert "largest/smallest = 34/5 = 6.8 (daisy vs tulip)" in imbalance.title
    assert "rose 21" in imbalance.detail and "tulip 5" in imbalance.detail
    assert {f.split("/")[0] for f in imbalance.files} == {"rose", "tulip"} and len(imbalance.files) == 26
    small = report.by_kind("small_class")
    assert "tulip (5)" in small.title
    assert report.by_kind("empty_class").files == ["lily/"]


def test_sizes_and_grayscale(report):
    assert report.by_kind("tiny_images").files == ["rose/tiny.png"]
    assert report.by_kind("tiny_images").captions == {"rose/tiny.png": "40x30"}
    aspect = report.by_kind("extreme_aspect")
    assert aspect.files == ["rose/banner.png"] and aspect.captions["rose/banner.png"] == "400x100 (4.0:1)"
    gray = report.by_kind("grayscale")
    assert sorted(gray.files) == ["daisy/gray 16-bit.png", "daisy/gray L.png", "daisy/gray rgb.jpg"]
    assert report.by_kind("ignored_files").files == ["rose/readme.txt"]
    small = report.by_kind("small_images")
    assert small.severity == "info" and "smaller than the default 224 px training size" in small.title


def test_findings_are_ordered_and_serialisable(report):
    order = [f.severity for f in report.findings]
    assert order == sorted(order, key=["error", "warning", "info"].index)
    assert not report.ok and report.counts()["error"] >= 1
    data = json.loads(json.dumps(report.to_dict()))
    assert data["images"] == report.images and data["stats"]["unreadable"] == 4
    assert {f["kind"] for f in data["findings"]} == set(kinds(report))
    for finding in report.findings:
        assert finding.files, finding.kind  # every finding lists its files
        assert finding.title and finding.detail


def test_leakage_follows_the_training_settings(planted, report):
    """Another seed or other fractions give another split, and the check follows the config it is given."""
    config = TrainConfig(val_fraction=0.2, test_fraction=0.1, seed=7, image_size=64)
    other = check_dataset(planted, config=config)
    assert {k: other.stats["split"][k] for k in ("val_fraction", "test_fraction", "seed")} == {
        "val_fraction": 0.2,
        "test_fraction": 0.1,
        "seed": 7,
    }
    assert other.stats["image_size"] == 64 and other.by_kind("small_images") is None
    assert other.stats["split"]["sizes"] != report.stats["split"]["sizes"]


def test_leakage_is_found_in_the_split_the_settings_draw(tmp_path):
    """Copies of the same photos: the leak the check reports is exactly the pairs that this seed and these
    fractions put into different splits (worked out here with the split function training uses)."""
    root = tmp_path / "copies"
    for name, seeds in (("a", range(0, 12)), ("b", range(20, 32))):
        add_pictures(root / name, seeds)
        for seed in seeds:
            shutil.copyfile(root / name / f"p{seed:04d}.jpg", root / name / f"p{seed:04d} copy.jpg")
    config = TrainConfig(val_fraction=0.2, test_fraction=0.1, seed=7, image_size=64)
    index = scan_dataset(root)
    split = split_indices(index.labels, index.classes, None, 0.2, 0.1, 7)
    split_of = {}
    for name in ("train", "val", "test"):
        for i in getattr(split, name):
            split_of[index.entries[i].path] = name
    crossing = sorted(
        path
        for path in split_of
        if not path.endswith(" copy.jpg") and split_of[path] != split_of[path[:-4] + " copy.jpg"]
    )
    assert crossing  # 24 pairs: some straddle two splits under any seed worth the name

    leak = check_dataset(root, config=config).by_kind("split_leakage")
    assert leak is not None and "seed 7" in leak.detail
    originals = sorted(path for group in leak.groups for path in group if not path.endswith(" copy.jpg"))
    assert originals == crossing and all(len(group) == 2 for group in leak.groups)


def test_leakage_across_the_datasets_own_split(tmp_path):
    root = tmp_path / "presplit"
    add_pictures(root / "train" / "a", range(0, 8))
    add_pictures(root / "train" / "b", range(10, 18))
    add_pictures(root / "val" / "a", range(20, 22))
    add_pictures(root / "val" / "b", range(30, 32))
    add_pictures(root / "test" / "a", range(40, 42))
    add_pictures(root / "test" / "b", range(50, 52))
    shutil.copyfile(root / "train/a/p0003.jpg", root / "test/a/leaked.jpg")
    Image.open(root / "train/b/p0011.jpg").resize((120, 100)).save(root / "val/b/bigger.jpg", quality=70)
    report = check_dataset(root)
    finding = report.by_kind("split_leakage")
    assert finding.severity == "error" and "dataset's own split" in finding.detail
    assert sorted(finding.groups) == [
        ["test/a/leaked.jpg", "train/a/p0003.jpg"],
        ["train/b/p0011.jpg", "val/b/bigger.jpg"],
    ]
    assert finding.captions["test/a/leaked.jpg"] == "test" and finding.captions["val/b/bigger.jpg"] == "val"
    assert "1 across train/test" in finding.title and "1 across train/val" in finding.title
    assert report.stats["split"]["source"] == "dataset"


def test_leakage_across_a_manifest_split(tmp_path):
    root = tmp_path / "manifest"
    add_pictures(root / "a", range(0, 6))
    add_pictures(root / "b", range(10, 16))
    shutil.copyfile(root / "a/p0000.jpg", root / "a/again.jpg")
    splits = {"a/p0000.jpg": "train", "a/again.jpg": "test", "a/p0001.jpg": "val", "b/p0010.jpg": "val"}
    splits |= {"a/p0002.jpg": "test", "b/p0011.jpg": "test"}
    (root / "flora.json").write_text(json.dumps({"splits": splits}))
    finding = check_dataset(root).by_kind("split_leakage")
    assert finding.groups == [["a/again.jpg", "a/p0000.jpg"]]


def test_a_single_class_cannot_train(tmp_path):
    report = check_dataset(add_pictures(tmp_path / "one" / "daisy", range(12)).parent)
    finding = report.by_kind("cannot_train")
    assert finding.severity == "error" and "at least 2 classes" in finding.title
    assert report.stats["split"]["error"]


def test_a_clean_dataset_has_nothing_to_report_but_its_size(tmp_path):
    root = tmp_path / "clean"
    add_pictures(root / "a", range(0, 12), size=(240, 240))
    add_pictures(root / "b", range(20, 32), size=(240, 240))
    report = check_dataset(root)
    assert report.findings == [] and report.ok


def test_results_are_cached_by_fingerprint(tmp_path, planted):
    root = tmp_path / "copy"
    shutil.copytree(planted, root)
    cache = tmp_path / "cache"
    first = check_dataset(root, cache_root=cache)
    stages = []
    second = check_dataset(root, cache_root=cache, progress=lambda s, d, t: stages.append(s))
    assert not first.stats["cached"] and second.stats["cached"]
    assert [f.to_dict() for f in second.findings] == [f.to_dict() for f in first.findings]
    assert set(stages) == {"reading headers", "hashing"}
    assert len(list(cache.iterdir())) == 3  # the table, the per-file analysis and the report
    saved = saved_report(root, cache)
    assert saved is not None and [f.to_dict() for f in saved.findings] == [f.to_dict() for f in first.findings]
    later = time.time() + 5
    os.utime(root / "rose/tiny.png", (later, later))
    picture(999, (300, 300)).save(root / "rose/tiny.png")
    assert saved_report(root, cache) is None  # the content changed: the old report does not apply
    third = check_dataset(root, cache_root=cache)
    assert not third.stats["cached"] and third.by_kind("tiny_images") is None


def test_image_table_reads_headers_only(planted):
    index = scan_dataset(planted)
    table = image_table(index)
    assert list(table.columns) == [
        "path",
        "class",
        "split",
        "width",
        "height",
        "mode",
        "format",
        "bytes",
        "readable",
        "reason",
    ]
    assert len(table) == len(index.entries)
    rows = table.set_index("path")
    assert rows.loc["rose/cut.jpg", "readable"]  # a truncated file has a good header: the check decodes it
    assert not rows.loc["tulip/huge.png", "readable"] and "too large" in rows.loc["tulip/huge.png", "reason"]
    assert rows.loc["rose/cmyk.jpg", "mode"] == "CMYK" and rows.loc["daisy/gray 16-bit.png", "mode"].startswith("I")
    assert rows.loc["rose/tiny.png", ["width", "height"]].tolist() == [40, 30]


def test_check_accepts_a_path_or_an_index_and_refuses_a_non_dataset(tmp_path, planted):
    index = scan_dataset(planted)
    assert check_dataset(index).images == check_dataset(str(planted)).images == len(index.entries)
    with pytest.raises(DatasetError, match="not found"):
        check_dataset(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- hashing


def test_perceptual_hash_sees_copies_and_not_strangers():
    images = [np.asarray(picture(seed, (96, 80)).resize((32, 32)).convert("L"), np.float32) for seed in range(50)]
    resized = np.asarray(picture(7, (96, 80)).resize((40, 33)).resize((32, 32)).convert("L"), np.float32)
    hashes = imagehash.phash(np.stack([*images, resized]))
    assert imagehash.hamming(hashes[7], hashes[50]) <= 4
    strangers = imagehash.hamming(hashes[:50, None], hashes[None, :50])[np.triu_indices(50, 1)]
    assert strangers.min() > 10 and 20 < np.median(strangers) < 44


def test_near_pairs_match_brute_force_and_scale():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=3000, dtype=np.uint64)
    hashes[100] = hashes[5] ^ np.uint64(0b1011)  # 3 bits apart
    hashes[2999] = hashes[1]
    found = {tuple(p) for p in imagehash.near_pairs(hashes, 12).tolist()}
    distances = imagehash.hamming(hashes[:, None], hashes[None, :])
    brute = {(i, j) for i, j in zip(*np.nonzero(distances <= 12), strict=True) if i < j}
    assert found == brute and {(5, 100), (1, 2999)} <= found

    many = rng.integers(0, 2**63, size=10_000, dtype=np.uint64)
    started = time.perf_counter()
    imagehash.near_pairs(many, 10)
    assert time.perf_counter() - started < 10  # about a second; generous for a busy machine


def test_groups_join_chains():
    assert imagehash.groups(6, np.array([[0, 1], [1, 2], [4, 5]])) == [[0, 1, 2], [4, 5]]
    assert imagehash.groups(3, np.empty((0, 2), np.int64)) == []


def test_blank_images_are_alike_only_at_the_same_level():
    thumbs = np.stack(
        [np.full((32, 32), 200, np.uint8), np.full((32, 32), 201, np.uint8), np.full((32, 32), 20, np.uint8)]
    )
    assert imagehash.correlation(thumbs, np.array([[0, 1], [0, 2]])).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("big", [29, 30, 31, 45])  # 20 small: ratios 1.45, 1.5 (the threshold), 1.55, 2.25
def test_the_health_check_flags_imbalance_exactly_where_training_weighs_the_classes(tmp_path, big):
    from core.settings.config import IMBALANCE_RATIO
    from core.train.training import class_weights

    add_pictures(tmp_path / "photos" / "big", range(big), size=(72, 64))
    report = check_dataset(add_pictures(tmp_path / "photos" / "small", range(100, 120), size=(72, 64)).parent)
    flagged = any(f.kind == "class_imbalance" for f in report.findings)
    weighed = class_weights(np.repeat([0, 1], [big, 20]), 2, "auto") is not None
    assert flagged == weighed == (big / 20 > IMBALANCE_RATIO)


def test_finding_defaults():
    finding = Finding("x", "info", "t", "d", ["a.jpg"])
    assert finding.to_dict() == {
        "kind": "x",
        "severity": "info",
        "title": "t",
        "detail": "d",
        "files": ["a.jpg"],
        "groups": [],
        "captions": {},
    }


@pytest.mark.slow
def test_real_flower_photos(tmp_path):
    """The shared flowers5-128 set: 4,317 photos with known duplicates (see docs/DATASETS.md)."""
    require_flowers()
    report = check_dataset(FLOWERS, cache_root=tmp_path)
    assert report.images == 4317 and report.stats["readable"] == 4317
    assert report.by_kind("unreadable") is None
    conflicts = report.by_kind("conflicting_labels")
    assert conflicts and all({f.split("/")[0] for f in g} == {"rose", "tulip"} for g in conflicts.groups)
    assert report.by_kind("exact_duplicates") and report.by_kind("near_duplicates")
    assert report.by_kind("split_leakage").severity == "error"
    assert report.stats["seconds"] < 120


def test_check_can_be_stopped(planted):
    from core.health import CheckCancelled

    with pytest.raises(CheckCancelled):
        check_dataset(planted, should_stop=lambda: True)


def test_near_pairs_are_exactly_the_pairs_within_the_distance_without_comparing_every_pair():
    from core.health import imagehash

    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**62, 150, dtype=np.uint64) * np.uint64(4) + rng.integers(0, 4, 150).astype(np.uint64)
    hashes = []
    for value in base:  # each picture, and copies a few to 14 bits away
        hashes.append(value)
        for _ in range(int(rng.integers(0, 4))):
            mask = 0
            for bit in rng.choice(64, int(rng.integers(0, 15)), replace=False):
                mask |= 1 << int(bit)
            hashes.append(value ^ np.uint64(mask))
    hashes = np.array(hashes, dtype=np.uint64)
    for distance in (0, 4, 10, 13):
        brute = sorted(
            (i, j)
            for i in range(len(hashes))
            for j in range(i + 1, len(hashes))
            if int(imagehash.hamming(hashes[i], hashes[j])) <= distance
        )
        found = [tuple(pair) for pair in imagehash.near_pairs(hashes, distance).tolist()]
        assert found == brute, distance
    assert imagehash.near_pairs(hashes[:1], 10).shape == (0, 2)


def test_one_pattern_in_other_colours_is_not_the_same_picture_but_a_reencoded_copy_is(tmp_path):
    y, x = np.mgrid[0:64, 0:64]
    wave = ((np.sin(x * 0.6 + y * 0.3) + 1) / 2)[..., None]
    pink_blue = (np.array([230, 120, 180]) * wave + np.array([60, 90, 220]) * (1 - wave)).astype(np.uint8)
    green_purple = (np.array([80, 200, 90]) * wave + np.array([120, 40, 140]) * (1 - wave)).astype(np.uint8)
    for name, pixels, quality in (("a/stripes.jpg", pink_blue, 95), ("b/copy.jpg", pink_blue, 70)):
        (tmp_path / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "set" / name, quality=quality)
    (tmp_path / "set" / "c").mkdir()
    Image.fromarray(green_purple).save(tmp_path / "set" / "c" / "other.jpg", quality=95)
    for i in range(3):  # padding so the folders are classes with more than one photo
        for cls in "abc":
            picture(i + 10 * ord(cls)).save(tmp_path / "set" / cls / f"pad{i}.png")
    from core.health.hashing import analyse, duplicate_groups

    index = scan_dataset(tmp_path / "set")
    analysis, _ = analyse(index, None, None, 1, None)
    _, near, _ = duplicate_groups(analysis)
    named = [sorted(index.entries[i].path for i in group) for group in near]
    assert ["a/stripes.jpg", "b/copy.jpg"] in named
    assert not any("c/other.jpg" in group for group in named)


def test_photos_labelled_in_flora_are_in_training_for_the_leak_check_as_for_every_run(tmp_path):
    """The walk: copies among photos labelled in Flora, which every run puts in training together, were said to
    "straddle the split" because the check drew its split without that rule. It now draws the runs' own."""
    from core.data.datasets import LABELLED_IN_FLORA, META_FILE
    from core.data.split_rule import split_rule

    root = tmp_path / "labelled"
    add_pictures(root / "a", range(0, 14))
    add_pictures(root / "b", range(20, 34))
    joined = []
    for name, seeds in (("a", range(40, 46)), ("b", range(50, 56))):  # labelled in Flora: each came twice
        add_pictures(root / name, seeds)
        for seed in seeds:
            shutil.copyfile(root / name / f"p{seed:04d}.jpg", root / name / f"p{seed:04d}-2.jpg")
            joined += [f"{name}/p{seed:04d}.jpg", f"{name}/p{seed:04d}-2.jpg"]
    (root / META_FILE).write_text(json.dumps({LABELLED_IN_FLORA: sorted(joined)}))
    config = TrainConfig(val_fraction=0.2, test_fraction=0.2, seed=3, image_size=64)
    index = scan_dataset(root)
    paths = [e.path for e in index.entries]
    plain = split_indices(index.labels, index.classes, None, 0.2, 0.2, 3)  # the rule the check used to draw
    side = {paths[i]: name for name in ("train", "val", "test") for i in getattr(plain, name)}
    assert any(side[p] != side[p.replace(".jpg", "-2.jpg")] for p in joined if not p.endswith("-2.jpg"))

    report = check_dataset(root, config=config)
    assert report.by_kind("split_leakage") is None, "every copy is in training, as every run puts it"
    runs = split_rule(index.labels, paths, index, 0.2, 0.2, 3)
    assert {paths[i] for i in runs.train} >= set(joined)
    assert report.stats["split"]["sizes"] == runs.sizes()
