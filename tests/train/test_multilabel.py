"""Multi-label training: positive weights, the weighted loss, scikit-learn's average precision, the batches, the
sigmoid head, and whole runs (cached features, fine-tuning, images) with validation mAP and thresholds kept."""

from __future__ import annotations

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score

from core import run_job
from core.data.multilabel import LABEL_FILE, MULTI_LABEL, LabelSets, write_label_file
from core.network import layer_names
from core.network.losses import WeightedBinaryCrossentropy
from core.network.model import build_head
from core.processes import JobState
from core.results.evaluation.multilabel import MultilabelEvaluation
from core.results.probabilities import label_thresholds
from core.runs.analysis import RunAnalysis
from core.runs.files import run_files
from core.runs.store import RunStore
from core.settings.config import TrainConfig
from core.train import jobs
from core.train.average_precision import average_precisions, mean_average_precision
from core.train.batches import FeatureBatches, labelled_batch
from core.train.multilabel import POSITIVE_WEIGHT_CAP, VAL_MAP, positive_weights

pytestmark = pytest.mark.backend_agnostic

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 40), "blue": (40, 60, 220), "yellow": (230, 220, 40)}


def make_mosaics(root, n: int = 60, size: int = 48, seed: int = 0, share: float = 0.4):
    """A multi-label dataset of 2x2 mosaics: a quadrant of a label's colour for each label present, grey for the
    rest (so some photos have none), with noise. What a photo has is what it shows: a model can learn it."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows, half = [], size // 2
    for i in range(n):
        present = [name for name in names if rng.random() < share]
        quadrants = [*present, *[None] * (4 - len(present))]
        rng.shuffle(quadrants)
        pixels = np.zeros((size, size, 3), dtype=np.int16)
        for q, name in enumerate(quadrants):
            y, x = divmod(q, 2)
            pixels[y * half : (y + 1) * half, x * half : (x + 1) * half] = COLOURS[name] if name else (128, 128, 128)
        pixels += rng.integers(-20, 21, size=pixels.shape)
        rel = f"images/m{i:03d}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / rel)
        rows.append((rel, present, None))
    write_label_file(root, rows, names)
    meta = {"task": MULTI_LABEL, "label_file": LABEL_FILE, "label_names": names}
    (root / "flora.json").write_text(json.dumps(meta))
    return root


# ----------------------------------------------------------------------------- the numbers


def test_average_precision_is_scikit_learns_with_ties_and_labels_without_positives():
    rng = np.random.default_rng(0)
    targets = (rng.random((80, 5)) < [0.5, 0.1, 0.3, 0.0, 0.9]).astype(np.uint8)
    scores = (0.3 * targets + rng.random((80, 5))).round(1)  # rounded: many tied scores
    ours = average_precisions(targets, scores)
    for j in range(5):
        if targets[:, j].any():
            assert ours[j] == pytest.approx(average_precision_score(targets[:, j], scores[:, j]), abs=1e-12)
        else:
            assert np.isnan(ours[j])
    with_positives = targets.any(axis=0)
    expected = average_precision_score(targets[:, with_positives], scores[:, with_positives], average="macro")
    assert mean_average_precision(targets, scores) == pytest.approx(expected, abs=1e-12)
    assert mean_average_precision(np.zeros((3, 2)), np.ones((3, 2))) is None


def test_positive_weights_are_negatives_over_positives_capped():
    targets = np.zeros((100, 4), dtype=np.uint8)
    targets[:50, 0] = 1  # 50/50 -> 1
    targets[:10, 1] = 1  # 90/10 -> 9
    targets[:1, 2] = 1  # 99/1 -> capped
    weights = positive_weights(targets, "auto")
    assert weights.tolist() == pytest.approx([1.0, 9.0, POSITIVE_WEIGHT_CAP, 1.0])  # no positive: 1
    assert positive_weights(targets, "none") is None
    assert weights.dtype == np.float32


def test_the_weighted_loss_is_binary_cross_entropy_with_the_positive_terms_weighted():
    rng = np.random.default_rng(1)
    y = (rng.random((6, 3)) < 0.5).astype("float32")
    p = rng.uniform(0.05, 0.95, size=(6, 3)).astype("float32")
    w = np.array([1.0, 3.0, 0.5], dtype="float32")
    smoothing = 0.1
    t = y * (1 - smoothing) + smoothing / 2
    expected = -np.mean(w * t * np.log(p) + (1 - t) * np.log(1 - p), axis=-1).mean()
    loss = WeightedBinaryCrossentropy(w, smoothing)
    assert float(keras.ops.convert_to_numpy(loss(y, p))) == pytest.approx(expected, rel=1e-5)
    plain = keras.losses.BinaryCrossentropy(label_smoothing=smoothing)
    assert float(keras.ops.convert_to_numpy(WeightedBinaryCrossentropy(None, smoothing)(y, p))) == pytest.approx(
        float(keras.ops.convert_to_numpy(plain(y, p))), rel=1e-5
    )
    assert WeightedBinaryCrossentropy.from_config(loss.get_config()).positive_weights == pytest.approx(w.tolist())


def test_multilabel_batches_hand_their_rows_as_float32_without_sample_weights():
    sets = LabelSets.from_lists([[0, 2], [], [1]], 3)
    source = SimpleNamespace(num_classes=3, class_weights=None, replicas=2)
    x, y, w = labelled_batch(np.zeros((3, 4), "float32"), sets[[0, 1, 2]], source)
    assert y.dtype == np.float32 and y[:3].tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert len(x) == 4 and w.tolist() == [1, 1, 1, 0]  # padded to the replicas, the padding weighs nothing
    batches = FeatureBatches(np.ones((1, 3, 4), "float16"), sets, 3, batch_size=3, shuffle=False)
    assert batches[0][1].tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]


def test_a_multilabel_head_ends_in_a_sigmoid_under_the_same_output_name():
    head = build_head(3, (8,), 0.0, seed=0, feature_dim=16, task=MULTI_LABEL)
    assert head.layers[-1].name == layer_names.PROBABILITIES
    assert head.get_layer(layer_names.PROBABILITIES).get_config()["activation"] == "sigmoid"
    out = keras.ops.convert_to_numpy(head(np.random.default_rng(0).normal(size=(4, 16)).astype("float32")))
    assert ((out > 0) & (out < 1)).all() and not np.allclose(out.sum(axis=1), 1.0)
    single = build_head(3, (8,), 0.0, seed=0, feature_dim=16)
    assert single.get_layer(layer_names.PROBABILITIES).get_config()["activation"] == "softmax"


# ----------------------------------------------------------------------------- whole runs


BASE = TrainConfig(image_size=32, weights="none", epochs=4, batch_size=8, head=(16,), seed=0, learning_rate=3e-3)


def _train(tmp_path, dataset, config):
    store = RunStore(tmp_path / "models")
    submission = jobs.submit(store, dataset, config)
    status = run_job.execute(store, submission, tmp_path / "data", console=False, ingest_workers=1)
    return store, store.get(submission.run_id), status


@pytest.mark.parametrize(
    "changes",
    [{}, {"fine_tune_epochs": 1, "unfreeze_stages": 1}, {"feature_cache": False, "epochs": 2}],
    ids=["cached features", "and fine-tuning", "on images"],
)
def test_a_multilabel_run_trains_with_validation_map_and_keeps_thresholds(tmp_path, changes):
    dataset = make_mosaics(tmp_path / "mosaics")
    store, run, status = _train(tmp_path, dataset, BASE.replace(**changes))
    assert status.state == JobState.DONE, status.error
    assert run.train_config.task == MULTI_LABEL and run.multilabel  # the dataset's kind, recorded by submit
    assert status.accuracy is None and 0 <= status.map <= 1
    epochs = [m for m in store.read_metrics(run.run_id) if m["kind"] == "epoch"]
    assert all(VAL_MAP in m and "accuracy" not in m for m in epochs)
    assert {m["phase"] for m in epochs} == ({1, 2} if changes.get("fine_tune_epochs") else {1})
    # the best epoch is the one with the highest validation mAP (the first of equals)
    values = [m[VAL_MAP] for m in epochs]
    assert status.best_epoch == epochs[int(np.argmax(values))]["epoch"]

    analysis = RunAnalysis.load(run.directory)
    val = analysis.val
    assert val.targets.shape == (len(val.paths), 4) and (val.labels == -1).all()
    # the stored validation outputs are the best epoch's: scikit-learn's mAP of them is the val_map written then
    has = val.targets.any(axis=0)
    again = average_precision_score(val.targets[:, has], val.probabilities[:, has], average="macro")
    exact = not changes.get("fine_tune_epochs") and changes.get("feature_cache", True)
    assert again == pytest.approx(max(values), abs=1e-6 if exact else 0.05)

    stored = label_thresholds.stored(run.directory)
    assert run_files(run).label_thresholds.exists() and set(stored["thresholds"]) == set(COLOURS)
    assert stored["split"] == "val" and stored["photos"] == len(val.paths)
    # its test evaluation at those thresholds is kept beside them, its mAP the run's summary
    evaluation = MultilabelEvaluation.load(run.directory)
    assert run.has_multilabel_evaluation and not run.has_evaluation  # no single-label reader picks it up
    assert evaluation.paths == analysis.test.paths and evaluation.summary()["map"] == pytest.approx(status.map)
    assert evaluation.thresholds.tolist() == [stored["thresholds"][n] for n in COLOURS]
    if changes:
        return
    # a predictor of the run gives each photo's sigmoids and the labels at or above their thresholds
    from core.inference import Predictor

    predictor = Predictor(run, cache_root=tmp_path / "data" / ".cache")
    test = analysis.test
    found = predictor.predict([str(dataset / path) for path in test.paths[:4]])
    for prediction, expected in zip(found, test.probabilities[:4], strict=True):
        np.testing.assert_allclose([prediction.scores[n] for n in COLOURS], expected, atol=1e-2)
        assert prediction.labels == [n for n in COLOURS if prediction.scores[n] >= stored["thresholds"][n]]
        assert set(prediction.to_dict()) >= {"labels", "scores", "top"}
    # the model server's engine reads the same sigmoids against the same thresholds (not a softmax of its logits)
    from core.serving.engine import ServedModel

    served = ServedModel(run, tmp_path / "data")
    pixels = np.stack([predictor.preprocess(str(dataset / path)) for path in test.paths[:4]])
    for answer, prediction in zip(served.predict_pixels(pixels), found, strict=True):
        assert answer.labels == prediction.labels and served.reference is None and served.sets is None
        np.testing.assert_allclose(
            [answer.scores[n] for n in COLOURS], [prediction.scores[n] for n in COLOURS], atol=1e-4
        )
    # and the exports' recipe carries the same thresholds
    from core.export.recipe import RECIPE_FILE, write_recipe

    (tmp_path / "export").mkdir()
    write_recipe(run, tmp_path / "export", "model.onnx")
    recipe = json.loads((tmp_path / "export" / RECIPE_FILE).read_text())
    assert recipe["task"] == MULTI_LABEL and recipe["label_thresholds"] == stored["thresholds"]
    assert recipe["classes"] == list(COLOURS) and "sigmoid" in recipe["outputs"]["probabilities"]


def test_the_dataset_decides_the_task_whatever_the_settings_say(tmp_path):
    from tests.conftest import make_image_dataset

    store = RunStore(tmp_path / "models")
    single = make_image_dataset(tmp_path / "colours", {"red": 4, "green": 4})
    submission = jobs.submit(store, single, BASE.replace(task=MULTI_LABEL))
    assert submission.config.task == "single" and "task" not in store.get(submission.run_id).settings
    mosaics = make_mosaics(tmp_path / "mosaics", n=12)
    submission = jobs.submit(store, mosaics, BASE)
    assert store.get(submission.run_id).settings["task"] == MULTI_LABEL
