"""A multi-label run's map rows: each photo's label lists at the tuned thresholds, one label's 2x2 cell as Evaluate
counts it, and one photo's every label score."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import NotFound
from core.results.evaluation import embedding
from core.results.evaluation.multilabel import CELLS, MultilabelEvaluation
from core.results.evaluation.multilabel_map import map_frame, photo_scores
from core.runs.analysis import RunAnalysis, SplitArrays, sigmoid

pytestmark = pytest.mark.backend_agnostic

CLASSES = ["cat", "dog", "road"]


def _split(n: int, rng, prefix: str) -> SplitArrays:
    targets = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    logits = rng.normal(0, 1.5, size=(n, 3)) + 2 * (targets - 0.5)
    return SplitArrays(
        logits=logits,
        features=rng.normal(size=(n, 8)),
        labels=np.full(n, -1),
        paths=[f"{prefix}/{i}.png" for i in range(n)],
        positions=np.arange(n),
        targets=targets,
    )


@pytest.fixture
def analysis() -> RunAnalysis:
    rng = np.random.default_rng(0)
    return RunAnalysis(CLASSES, _split(30, rng, "v"), _split(40, rng, "t"))


THRESHOLDS = {"cat": 0.3, "dog": 0.6}  # road keeps none: 0.5


def test_the_rows_give_each_photos_lists_at_the_tuned_thresholds(analysis):
    points = embedding.compute_map(analysis, "pca")
    frame = map_frame(analysis, points, THRESHOLDS)
    assert len(frame) == 70 and frame["key"].tolist() == points.keys
    cut = np.array([0.3, 0.6, 0.5])
    for r in frame.itertuples():
        part = analysis.split(r.split)
        p = sigmoid(part.logits[r.row])
        assert r.path == part.paths[r.row]
        assert r.labels == ", ".join(c for c, t in zip(CLASSES, part.targets[r.row], strict=True) if t)
        assert r.predicted == ", ".join(c for c, a in zip(CLASSES, p >= cut, strict=True) if a)
        assert r.n_labels == int(part.targets[r.row].sum()) and r.n_predicted == int((p >= cut).sum())
        assert r.exact == bool(((p >= cut) == (part.targets[r.row] > 0)).all())


def test_one_labels_cells_are_evaluates_counts(analysis):
    frame = map_frame(analysis, embedding.compute_map(analysis, "pca"), THRESHOLDS, label="dog")
    test = frame[frame["split"] == "test"]
    evaluation = MultilabelEvaluation.from_analysis(analysis, THRESHOLDS)
    counts = evaluation.counts_at("dog", 0.6)
    assert test["cell"].value_counts().reindex(list(CELLS), fill_value=0).to_dict() == {c: counts[c] for c in CELLS}
    assert (frame["answered"] == (frame["score"] >= 0.6)).all()
    assert (frame.loc[frame["cell"] == "missed", "has"]).all() and not frame.loc[frame["cell"] == "added", "has"].any()
    with pytest.raises(NotFound):
        map_frame(analysis, embedding.compute_map(analysis, "pca"), THRESHOLDS, label="horse")


def test_one_photos_scores_highest_first_with_its_thresholds(analysis):
    table = photo_scores(analysis, "val:4", THRESHOLDS)
    p = sigmoid(analysis.val.logits[4])
    assert table["score"].tolist() == sorted(p.tolist(), reverse=True)
    for r in table.itertuples():
        j = CLASSES.index(r.label)
        assert r.threshold == {"cat": 0.3, "dog": 0.6, "road": 0.5}[r.label]
        assert r.has == bool(analysis.val.targets[4, j]) and r.answered == (p[j] >= r.threshold)
        assert r.right == (r.has == r.answered)
    for bad in ("val:30", "train:1", "test:x"):
        with pytest.raises(NotFound):
            photo_scores(analysis, bad, THRESHOLDS)


def test_a_single_label_run_is_refused_in_words(analysis):
    analysis.test.targets = None
    with pytest.raises(ValueError, match="one label a photo"):
        map_frame(analysis, embedding.compute_map(analysis, "pca"), THRESHOLDS)
