"""Data issues: outliers, overlapping classes, label health and underperforming groups, each checked against cleanlab
on the same inputs where cleanlab has the method, and on data built to have a known answer."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from core.results.data_issues import groups, outliers
from core.results.data_issues import report as data_issues
from core.results.dataset_features import DatasetSource
from core.results.labels import overlap
from core.results.labels.issues import Stacked
from tests.conftest import make_image_dataset, require_flowers
from tests.results.planted import PLANTED_PREFIX, flowers_with_non_flowers


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _probabilities(rng, n: int, k: int, confused=((0, 1),)):
    """Labels and out-of-sample-like probabilities: each row leans to its label, some pairs confused."""
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 2.0
    for a, b in confused:
        for x, y in ((a, b), (b, a)):
            rows = labels == x
            logits[rows, y] += 1.6
    p = np.exp(logits)
    return labels, p / p.sum(axis=1, keepdims=True)


def test_outlier_distances_rank_as_cleanlabs_out_of_distribution():
    from cleanlab.outlier import OutOfDistribution
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, (5, 16))
    x = np.concatenate([centres[rng.integers(0, 5, 590)] + rng.normal(0, 1, (590, 16)), rng.normal(0, 12, (10, 16))])
    ours = outliers.knn_distances(x)
    # cleanlab fits its own search on the same rows and keeps each row's zero distance to itself among the k
    # it averages: k + 1 neighbours there are k others here, the same ranking
    with warnings.catch_warnings():  # cleanlab warns that the search it was handed is fitted (by itself) first
        warnings.simplefilter("ignore", UserWarning)
        theirs = OutOfDistribution(params={"knn": NearestNeighbors(n_neighbors=11), "k": 11}).fit_score(features=x)
    assert _spearman(ours, -theirs) > 0.999
    sampled = outliers.knn_distances(x, max_reference=300)  # a neighbour search among a sample, as past 50k photos
    assert _spearman(sampled, -theirs) > 0.95
    ratio = outliers.ratio_to_typical(ours)
    assert np.median(ratio) == pytest.approx(1.0)
    flagged = np.flatnonzero(ratio > outliers.threshold(ratio))
    assert set(range(590, 600)) <= set(flagged) and len(flagged) < 30


def test_a_photo_whose_look_is_unknown_is_scored_by_its_features_alone():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (50, 8))
    look = rng.normal(0, 1, (50, outliers.LOOK_WIDTH)).astype(np.float32)
    look[3] = np.nan
    score, by_features, by_look = outliers.outlier_scores(x, look)
    assert np.isnan(by_look[3]) and score[3] == by_features[3]
    assert np.allclose(score[4:], (by_features[4:] + by_look[4:]) / 2)


def test_the_confident_joint_overlap_and_label_health_are_cleanlabs():
    from cleanlab.count import estimate_joint
    from cleanlab.dataset import find_overlapping_classes, overall_label_health_score, rank_classes_by_label_quality

    rng = np.random.default_rng(2)
    labels, p = _probabilities(rng, 3000, 8, confused=((0, 1), (2, 5), (3, 4)))
    classes = [f"c{i}" for i in range(8)]
    parts = Stacked([p[:1700], p[1700:2400], p[2400:]], 8)  # train, val, test: read in place
    cj = overlap.confident_joint(parts, labels)
    assert np.allclose(cj.joint, estimate_joint(labels, p))

    theirs = find_overlapping_classes(labels=labels, pred_probs=p)
    reference = {
        (int(a), int(b)): v
        for a, b, v in zip(theirs["Class Index A"], theirs["Class Index B"], theirs["Joint Probability"], strict=True)
    }
    ours = overlap.symmetric_pairs(cj.joint, limit=10)
    assert [(a, b) for a, b, _ in ours[:3]] == [
        (int(a), int(b)) for a, b in zip(theirs["Class Index A"][:3], theirs["Class Index B"][:3], strict=True)
    ]
    assert all(v == pytest.approx(reference[(a, b)]) for a, b, v in ours)
    assert sorted(v for *_, v in ours) == pytest.approx(sorted(theirs["Joint Probability"][:10]))
    listed = overlap.overlapping_classes(parts, labels, classes, [f"{i}.png" for i in range(3000)], cj)
    assert all(pair["suggestion"] == "clearer rule" for pair in listed)  # every pair is told apart well enough
    assert [pair["classes"] for pair in listed[:10]] == [[classes[a], classes[b]] for a, b, _ in ours]

    health = overlap.label_health(cj, classes, np.bincount(labels, minlength=8))
    assert health["score"] == pytest.approx(overall_label_health_score(labels, p, verbose=False))
    quality = rank_classes_by_label_quality(labels, p)
    expected = dict(zip(quality["Class Index"], quality["Label Quality Score"], strict=True))
    assert {row["class"]: row["score"] for row in health["classes"]} == pytest.approx(
        {classes[i]: v for i, v in expected.items()}
    )
    assert health["classes"][0]["score"] == min(expected.values())  # the worst class first
    issues = dict(zip(quality["Class Index"], quality["Label Issues"], strict=True))
    assert {row["class"]: row["wrong_labels"] for row in health["classes"]} == {
        classes[i]: v for i, v in issues.items()
    }


def test_a_pair_the_model_cannot_tell_apart_is_put_first_and_suggested_for_merging():
    rng = np.random.default_rng(3)
    labels, p = _probabilities(rng, 2400, 6, confused=((1, 2), (3, 4)))
    # class 0 split in two at random: 0 and 5 are the same thing, the model splits its belief between them
    halves = (labels == 0) & (rng.random(len(labels)) < 0.5)
    labels[halves] = 5
    both = p[:, 0] + p[:, 5]
    p[:, 0], p[:, 5] = both * rng.uniform(0.4, 0.6, len(p)), 0
    p[:, 5] = both - p[:, 0]
    classes = ["a", "b", "c", "d", "e", "a2"]
    cj = overlap.confident_joint(p, labels)
    listed = overlap.overlapping_classes(p, labels, classes, [f"{i}.png" for i in range(len(labels))], cj)
    first = listed[0]
    assert first["classes"] == ["a", "a2"] and first["suggestion"] == "merge"
    assert first["separability"] < 0.6 and first["typical_separability"] > 0.75
    assert [pair for pair in listed if pair["suggestion"] == "merge"] == [first]
    assert {e["label"] for e in first["examples"]} <= {"a", "a2"} and len(first["examples"]) == overlap.EXAMPLES


def test_holm_adjusts_as_the_step_down_rule_says():
    adjusted = groups.holm(np.array([0.01, 0.04, 0.03, 0.005]))
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, then kept non-decreasing
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_a_cluster_the_model_gets_wrong_is_found_and_chance_alone_flags_none():
    rng = np.random.default_rng(4)
    centres = rng.normal(0, 10, (8, 6))
    blob = np.repeat(np.arange(8), 60)
    x = centres[blob] + rng.normal(0, 1, (len(blob), 6))
    labels = rng.integers(0, 3, len(blob))
    classes, paths = ["x", "y", "z"], [f"{i}.png" for i in range(len(blob))]
    assignment = groups.clusters(x, groups=8)
    correct = rng.random(len(blob)) < np.where(blob == 3, 0.4, 0.85)
    found = groups.underperforming_groups(assignment, correct, labels, labels, classes, paths)
    assert len(found) == 1
    members = np.flatnonzero(assignment == found[0]["group"])
    assert np.mean(blob[members] == 3) > 0.95 and found[0]["score"] < 0.6 and found[0]["p_value"] < 0.05
    assert found[0]["examples"][0]["correct"] is False  # the wrong ones shown first

    flagged = 0
    for seed in range(20):  # the same accuracy everywhere: Holm keeps false alarms to about 1 in 20 datasets
        correct = np.random.default_rng(100 + seed).random(len(blob)) < 0.8
        flagged += len(groups.underperforming_groups(assignment, correct, labels, labels, classes, paths))
    assert flagged <= 2


def test_small_or_single_class_inputs_do_not_break_the_checks():
    score, *_ = outliers.outlier_scores(np.zeros((2, 3)))
    assert score.shape == (2,)
    assert outliers.knn_distances(np.zeros((1, 3))).tolist() == [0.0]
    cj = overlap.confident_joint(np.ones((4, 1)), np.zeros(4, dtype=int))
    assert overlap.symmetric_pairs(cj.joint) == [] and overlap.label_health(cj, ["a"], np.array([4]))["score"] == 1.0
    assert groups.clusters(np.zeros((1, 2))).tolist() == [0]


@pytest.mark.parametrize(
    ("then", "now", "said"),
    [
        (260, 264, "it had 260 photos then and has 264 now (4 more)"),
        (260, 250, "it had 260 photos then and has 250 now (10 fewer)"),
        (260, 260, "its 260 photos are not the same ones (some replaced or edited)"),
    ],
)
def test_counts_of_an_earlier_dataset_say_when_and_by_how_many_photos(then, now, said):
    result = data_issues.DataIssues(
        source={}, photos=then, classes=2, by_split={"all": then}, how="", outliers=[], outliers_flagged=0,
        outlier_threshold=1.5, overlapping_classes=[], underperforming_groups=[], groups_tested=1, label_health={},
        dataset_fingerprint="before", dataset_photos=then, computed_at=0.0,
    )  # fmt: skip
    words = data_issues.changed_since(result, "after", now)
    assert said in words and "look again to count it as it is now" in words
    assert data_issues.changed_since(result, "before", then) is None  # the same folder: nothing to say
    result.dataset_fingerprint = ""  # kept before the folder was recorded: nothing known, nothing said
    assert data_issues.changed_since(result, "after", now) is None


@pytest.fixture(scope="module")
def planted_flowers(tmp_path_factory):
    """40 flower photos per class and 8 non-flowers dealt among them, and what the checks found at 64 px through
    the tiny test backbone with random weights (the features this machine can make)."""
    source = require_flowers()
    base = tmp_path_factory.mktemp("planted")
    planted = flowers_with_non_flowers(source, base / "data" / "flowers", per_class=40)
    inputs = data_issues.for_dataset(
        DatasetSource(base / "data" / "flowers", base / "data", image_size=64, weights="none")
    )
    return planted, inputs, data_issues.find(inputs)


def test_planted_non_flowers_are_among_the_first_outliers(planted_flowers):
    planted, inputs, result = planted_flowers
    top = [row["path"] for row in result.outliers[:20]]
    features_only = outliers.ratio_to_typical(outliers.knn_distances(inputs.features[:, : outliers.KNN_DIMENSIONS]))
    by_features = [inputs.paths[i] for i in np.argsort(-features_only)[:20]]
    found, alone = len(set(top) & set(planted)), len(set(by_features) & set(planted))
    assert found >= 6, f"{found} of 8 planted photos in the top 20 (the random features alone: {alone})"
    assert all(PLANTED_PREFIX in path for path in top[:4])
    assert result.outliers_flagged >= 6 and result.outliers[0]["score"] > 2.5
    row = result.outliers[0]
    assert {"path", "score", "class", "split", "features", "look"} <= set(row) and row["split"] == "all"


def test_a_class_drawn_like_another_is_suggested_for_merging_beside_the_health_checks_findings(tmp_path):
    blue, green, yellow, red = (40, 60, 220), (40, 190, 40), (230, 220, 40), (220, 40, 40)
    dataset = make_image_dataset(
        tmp_path / "data" / "colours",
        {"blue": 60, "green": 20, "red": 40, "red2": 40, "yellow": 20},
        size=(40, 40),
        colors=[blue, green, red, red, yellow],  # red2 is drawn exactly as red is
    )
    shutil.copy(dataset / "green" / "img_000.png", dataset / "yellow" / "copy_of_green.png")  # a conflicting copy
    result = data_issues.find(
        data_issues.for_dataset(DatasetSource(dataset, tmp_path / "data", image_size=32, weights="none"))
    )
    first = result.overlapping_classes[0]
    assert first["classes"] == ["red", "red2"] and first["suggestion"] == "merge"
    assert [p["classes"] for p in result.overlapping_classes if p["suggestion"] == "merge"] == [["red", "red2"]]
    health = {row["class"]: row["score"] for row in result.label_health["classes"]}
    assert min(health, key=health.get) in {"red", "red2"} and health["blue"] > health["red"]

    kinds = {f["kind"] for key in ("duplicates", "leaks", "imbalance") for f in getattr(result, key)}
    assert {"conflicting_labels", "class_imbalance"} <= kinds
    data = result.to_dict()
    assert {"outliers", "overlapping_classes", "underperforming_groups", "label_health"} <= set(data)
    assert {"duplicates", "leaks", "imbalance", "summary"} <= set(data)
    assert [line["kind"] for line in data["summary"]] == [
        *("label_health", "outliers", "overlapping_classes", "underperforming_groups"),
        *("duplicates", "leaks", "imbalance"),
    ]
    merge = next(line for line in data["summary"] if line["kind"] == "overlapping_classes")
    assert "consider merging red and red2, or write a clearer rule" in merge["title"]
    assert data_issues.DataIssues.from_dict(data).to_dict() == data


def test_a_dataset_folder_that_cannot_be_read_leaves_the_health_checks_findings_out_and_says_so(tmp_path):
    from core.results.data_issues.inputs import Inputs, add_health
    from core.settings.config import TrainConfig

    labels = np.array([0, 1, 0, 1, 0, 1])
    inputs = Inputs(
        ["a", "b"],
        np.random.default_rng(5).normal(0, 1, (6, 3)),
        Stacked([np.full((6, 2), 0.5)], 2),
        labels,
        [f"{i}.png" for i in range(6)],
        ["train"] * 6,
        "how",
        {"run_id": "r"},
    )
    add_health(inputs, tmp_path / "gone", tmp_path, TrainConfig())
    assert "cannot be read now" in inputs.health_note and inputs.look is None
    summary = {line["kind"]: line for line in data_issues.find(inputs).summary()}
    assert summary["leaks"]["title"] == "not checked: the dataset's folder cannot be read"
    assert summary["outliers"]["title"]  # the features alone still score the photos


def test_two_classes_are_never_told_to_merge_and_outliers_are_worded_by_their_ratio():
    # the walk of issue 39: daisy and dandelion, "(or merge them)" and photos at 1.6x "unlike any other"
    pair = {"classes": ["daisy", "dandelion"], "suggestion": "clearer rule"}
    two = data_issues.overlap_advice(pair, classes=2)
    assert "merg" not in two.replace("merging them would leave nothing to classify", "")
    assert "only two classes" in two
    assert "(or merge them)" in data_issues.overlap_advice(pair, classes=3)
    assert "Consider merging" in data_issues.overlap_advice({**pair, "suggestion": "merge"}, classes=3)
    assert "Consider merging" not in data_issues.overlap_advice({**pair, "suggestion": "merge"}, classes=2)

    result = data_issues.DataIssues(
        source={"dataset": "flowers"},
        photos=200,
        classes=2,
        by_split={"all": 200},
        how="test",
        outliers=[
            {"path": p, "score": v, "class": "daisy", "split": "all"} for p, v in (("a.jpg", 2.4), ("b.jpg", 1.6))
        ],
        outliers_flagged=2,
        outlier_threshold=1.55,
        overlapping_classes=[{**pair, "score": 0.1, "photos": 20, "separability": 0.6, "examples": []}],
        underperforming_groups=[],
        groups_tested=4,
        label_health={"score": 0.9, "wrong_labels": 20, "classes": []},
    )
    lines = {line["kind"]: line["title"] for line in result.summary()}
    assert "unlike any other" not in lines["outliers"]
    assert "1.6x to 2.4x a typical photo's distance (listed above 1.55x" in lines["outliers"]
    assert "merg" not in lines["overlapping_classes"]
    from core.cli.data_issues import describe

    text = describe(result)
    assert "(or merge them)" not in text and "unlike any other" not in text and "merging the two" not in text
    assert "First give the model features that can tell daisy from dandelion" in text, "told apart 60%: weak"


def test_an_overlap_on_weak_features_sends_the_person_to_the_model_before_the_labels():
    # the walk of issue 40, item 8: rose and tulip on a random start, told apart 59% of the time: "a clearer rule may
    # separate them" sent the person to the labels, and "Consider merging the two classes" survived for two classes
    pair = {"classes": ["rose", "tulip"], "suggestion": "clearer rule", "score": 0.41, "photos": 108}
    result = data_issues.DataIssues(
        source={"run_id": "6f6e46"},
        photos=260,
        classes=2,
        by_split={"train": 180, "val": 40, "test": 40},
        how="test",
        outliers=[],
        outliers_flagged=0,
        outlier_threshold=1.5,
        overlapping_classes=[{**pair, "separability": 0.59, "typical_separability": 0.59, "examples": []}],
        underperforming_groups=[],
        groups_tested=4,
        label_health={"score": 0.6, "wrong_labels": 108, "classes": []},
        random_start=True,
    )
    [line] = [line for line in result.summary() if line["kind"] == "overlapping_classes"]
    assert line["title"].startswith(
        "rose and tulip overlap most (about 108 photos sit between them), but the model's features cannot tell them "
        "apart yet (this model started from random weights and it tells them apart only 59% of the time"
    )
    assert "before judging the labels" in line["title"] and "clearer rule may separate" not in line["title"]
    assert "merg" not in line["explanation"], "two classes: no merging offered"
    advice = data_issues.overlap_advice(result.overlapping_classes[0], 2, random_start=True)
    assert advice.startswith("First give the model features that can tell rose from tulip")
    assert advice.index("ImageNet weights") < advice.index("if they still overlap then, write a clearer rule")
    # ImageNet features that tell them apart 95% of the time: the labels are the matter
    good = {**result.overlapping_classes[0], "separability": 0.95, "typical_separability": 0.95}
    assert data_issues.weak_features(good, random_start=False) is None
    assert data_issues.overlap_advice(good, 2).startswith("Write a clearer rule for telling rose from tulip")
    assert (
        "(or merge them)"
        in data_issues.DataIssues.from_dict({**result.to_dict(), "classes": 3}).summary()[2]["explanation"]
    )
