"""Training runs: both phase-1 paths, fine-tuning, the run-store callback, stop, failure."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core import run_job
from core.data.datasets import small_test_note
from core.processes import JobState
from core.results.evaluation.metrics import Evaluation
from core.runs.store import RunStore
from core.settings.config import AUGMENT_PRESETS, TrainConfig
from core.train import jobs
from core.train.callbacks import BestWeights, EpochCounter, RunLogger
from core.train.training import class_weights
from tests.conftest import make_image_dataset

BASE = TrainConfig(image_size=32, weights="none", epochs=2, batch_size=8, head=(16,), seed=0)


def _train(tmp_path, dataset, config):
    store = RunStore(tmp_path / "models")
    submission = jobs.submit(store, dataset, config)
    status = run_job.execute(store, submission, tmp_path / "data", console=False, ingest_workers=1)
    return store, submission.run_id, status


@pytest.fixture
def colours(tmp_path):
    return make_image_dataset(tmp_path / "colours", {"red": 10, "green": 10, "blue": 10}, seed=1)


def test_a_stop_that_lands_as_training_ends_is_said_not_lost(tmp_path, colours, monkeypatch):
    """Asked to stop while the run was already evaluating (training had ended on its own): it ends 'done',
    and its status says a stop was asked for and why it had no effect."""
    from core.train.trainer import Trainer

    real = Trainer.analyse_splits

    def stop_now(self):
        self.job.store.request_stop(self.job.run_id)
        return real(self)

    monkeypatch.setattr(Trainer, "analyse_splits", stop_now)
    _, _, status = _train(tmp_path, colours, BASE)
    assert status.state == JobState.DONE
    assert status.note.startswith("a stop was asked for at ") and "finished as planned" in status.note


@pytest.mark.backend_agnostic
def test_feature_cache_run_writes_the_whole_run_folder(tmp_path, colours):
    store, run_id, status = _train(tmp_path, colours, BASE)
    assert status.state == JobState.DONE and 0 <= status.accuracy <= 1
    run = store.get(run_id)
    assert run.has_model and run.has_evaluation
    metrics = store.read_metrics(run_id)
    epochs = [m for m in metrics if m["kind"] == "epoch"]
    assert [m["epoch"] for m in epochs] == [1, 2] and all(m["phase"] == 1 for m in epochs)
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"} <= set(epochs[0])
    assert any(m["kind"] == "batch" for m in metrics)
    assert status.split == {"train": 18, "val": 6, "test": 6, "source": "random", "notes": [small_test_note(6)]}
    evaluation = Evaluation.load(run.directory)
    assert len(evaluation.paths) == 6 and evaluation.classes == ["blue", "green", "red"]
    assert list((tmp_path / "data" / ".cache" / "features").iterdir())
    _check_analysis(run, evaluation)
    # the out-of-distribution reference is the run's, fitted as training ends (a server's switch only loads it)
    from core.results.probabilities.reference import Reference

    reference = Reference.load(run.directory)
    assert reference is not None and reference.run_id == run_id and len(reference.val_confidence) == 6

    # Another learning rate reuses the cached features: nothing new is computed.
    feature_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / ".cache" / "features").rglob("*.npy")}
    _, other_id, other = _train(tmp_path, colours, BASE.replace(learning_rate=3e-3))
    assert other_id != run_id and other.state == JobState.DONE
    assert {p: p.stat().st_mtime_ns for p in feature_files} == feature_files


def _check_analysis(run, evaluation) -> None:
    """The stored logits and features are the model's own: recomputed from the saved model, they agree."""
    from core.data.imaging import load_for_model
    from core.network.graph import features_and_logits_model
    from core.network.model import load_classifier
    from core.runs.analysis import RunAnalysis

    analysis = RunAnalysis.load(run.directory)
    assert analysis.classes == evaluation.classes and analysis.test.paths == evaluation.paths
    assert len(analysis.val.labels) > 0 and analysis.val.features.shape == (len(analysis.val.labels), 2048)
    np.testing.assert_allclose(analysis.test.probabilities, evaluation.probabilities, atol=1e-6)
    config = run.train_config
    root = Path(run.dataset_path)
    images = np.stack([load_for_model(root / p, config.image_size, config.cache_size) for p in analysis.val.paths])
    pooled, logits = features_and_logits_model(load_classifier(run.path("model.keras"))).predict(images, verbose=0)
    # the cache keeps features in float16: logits from them differ from a full-precision pass by ~1e-3
    np.testing.assert_allclose(np.asarray(logits), analysis.val.logits, atol=1e-2, rtol=1e-2)
    np.testing.assert_allclose(np.asarray(pooled), analysis.val.features.astype(np.float32), atol=2e-2, rtol=2e-2)


@pytest.mark.backend_agnostic
def test_image_path_with_augmentation_and_fine_tuning(tmp_path, colours):
    config = BASE.replace(
        feature_cache=False,
        epochs=1,
        fine_tune_epochs=1,
        unfreeze_stages=1,
        augment=AUGMENT_PRESETS["light"],
        early_stopping_patience=0,
    )
    store, run_id, status = _train(tmp_path, colours, config)
    assert status.state == JobState.DONE and status.epochs_done == 2
    epochs = [m for m in store.read_metrics(run_id) if m["kind"] == "epoch"]
    assert [(m["phase"], m["epoch"]) for m in epochs] == [(1, 1), (2, 2)]
    assert epochs[1]["lr"] == pytest.approx(config.fine_tune_learning_rate)
    assert not (store.run_dir(run_id) / "best.weights.h5").exists()  # the checkpoint is folded into model.keras
    run = store.get(run_id)
    _check_analysis(run, Evaluation.load(run.directory))


def test_augmented_views_are_cached_per_view(tmp_path, colours):
    config = BASE.replace(augment=AUGMENT_PRESETS["light"], augmented_views=2, epochs=1)
    _, _, status = _train(tmp_path, colours, config)
    assert status.state == JobState.DONE
    names = sorted(p.name for p in (tmp_path / "data" / ".cache" / "features").rglob("*.npy"))
    assert sum(name.startswith("view1-") for name in names) == 2  # data + done mask
    assert sum(name.startswith("view2-") for name in names) == 2
    assert "view0.npy" in names


def test_a_run_asked_to_stop_before_it_starts_ends_stopped(tmp_path, colours):
    store = RunStore(tmp_path / "models")
    submission = jobs.submit(store, colours, BASE)
    store.request_stop(submission.run_id)
    status = run_job.execute(store, submission, tmp_path / "data", console=False, ingest_workers=1)
    assert status.state == JobState.STOPPED and not store.get(submission.run_id).has_model


def test_a_failing_run_records_its_error(tmp_path, colours):
    store = RunStore(tmp_path / "models")
    bad = BASE.replace(weights=str(tmp_path / "missing.weights.h5"))
    submission = jobs.submit(store, colours, bad)
    with pytest.raises(Exception, match="no such file"):
        run_job.execute(store, submission, tmp_path / "data", console=False, ingest_workers=1)
    run = store.get(submission.run_id)
    assert run.state == JobState.FAILED and "no such file" in run.status.error


def test_single_class_dataset_fails_with_a_clear_error(tmp_path):
    only = make_image_dataset(tmp_path / "one", {"daisy": 6})
    store = RunStore(tmp_path / "models")
    submission = jobs.submit(store, only, BASE)
    with pytest.raises(ValueError, match="at least 2 classes"):
        run_job.execute(store, submission, tmp_path / "data", console=False, ingest_workers=1)
    assert "at least 2 classes" in store.get(submission.run_id).status.error


@pytest.mark.parametrize(
    "labels, mode, expected",
    [
        ([0, 0, 1, 1], "auto", None),  # balanced: no weights
        ([0, 0, 0, 0, 1], "auto", [0.625, 2.5]),
        ([0, 0, 0, 0, 1], "none", None),
        ([0, 0, 1, 1], "balanced", [1.0, 1.0]),
        ([0, 0, 0, 2], "balanced", [4 / 6, 0.0, 2.0]),  # an absent class gets weight 0
    ],
)
def test_class_weights(labels, mode, expected):
    weights = class_weights(np.array(labels), max(labels) + 1, mode)
    if expected is None:
        assert weights is None
    else:
        np.testing.assert_allclose(weights, expected)


def test_run_logger_honours_the_stop_flag(tmp_path):
    store = RunStore(tmp_path)
    store.create("r", {"config": {}})
    logger = RunLogger(store, "r", phase=1, counter=EpochCounter(), epochs_total=3)
    logger.set_model(SimpleNamespace(stop_training=False))
    logger.set_params({"steps": 10})
    logger.on_epoch_begin(0)
    logger.on_train_batch_end(0, {"loss": 1.0})
    assert not logger.model.stop_training
    store.request_stop("r")
    logger.on_train_batch_end(1, {"loss": 0.9})
    assert logger.model.stop_training
    assert store.read_metrics("r")[0]["kind"] == "batch"


def test_best_weights_keep_the_lowest_validation_loss():
    values = {"w": [np.zeros(1)]}
    model = SimpleNamespace(
        get_weights=lambda: [v.copy() for v in values["w"]], set_weights=lambda w: values.update(w=w)
    )
    best = BestWeights(model)
    for epoch, (weight, loss) in enumerate([(1, 0.9), (2, 0.5), (3, 0.7), (4, math.nan)]):
        values["w"] = [np.full(1, weight)]
        best.on_epoch_end(epoch, {"val_loss": loss})
    assert best.restore() == 2 and values["w"][0][0] == 2


def test_best_weights_of_a_multilabel_run_keep_the_highest_validation_map():
    values = {"w": [np.zeros(1)]}
    model = SimpleNamespace(
        get_weights=lambda: [v.copy() for v in values["w"]], set_weights=lambda w: values.update(w=w)
    )
    best = BestWeights(model, monitor="val_map", mode="max")
    for epoch, (weight, score) in enumerate([(1, 0.4), (2, 0.8), (3, 0.8), (4, 0.6), (5, math.nan)]):
        values["w"] = [np.full(1, weight)]
        best.on_epoch_end(epoch, {"val_loss": 0.1 * epoch, "val_map": score})  # the loss rises: not what it watches
    assert best.restore() == 2 and values["w"][0][0] == 2  # the first of the two best


def test_best_weights_of_the_head_grow_into_the_whole_model_for_phase_2():
    def part(value):
        weights = {"w": [np.full(1, value)]}
        return SimpleNamespace(
            weights=weights,
            get_weights=lambda: [v.copy() for v in weights["w"]],
            set_weights=lambda new: weights.update(w=[np.asarray(v).copy() for v in new]),
        )

    head = part(1.0)
    whole = SimpleNamespace()
    whole.get_weights = lambda: [np.full(1, 9.0), *head.get_weights()]  # backbone 9, then the head
    whole.set_weights = lambda new: head.set_weights(new[1:])
    best = BestWeights(whole)
    best.track(head)
    best.on_epoch_end(0, {"val_loss": 0.5})  # head 1.0 is the best
    head.set_weights([np.full(1, 2.0)])
    best.on_epoch_end(1, {"val_loss": 0.9})
    best.track(whole)  # phase 2: the whole model trains; the best so far is backbone 9 + head 1
    assert head.get_weights()[0][0] == 2.0  # the live weights are left as they were
    head.set_weights([np.full(1, 3.0)])
    best.on_epoch_end(2, {"val_loss": 0.7})  # worse than phase 1's best
    assert best.restore() == 1 and head.get_weights()[0][0] == 1.0


def test_run_logger_counts_every_step_when_keras_reports_several_per_call(tmp_path):
    store = RunStore(tmp_path)
    store.create("r", {"config": {}})
    counter = EpochCounter()
    logger = RunLogger(store, "r", phase=1, counter=counter, epochs_total=2)
    logger.set_model(SimpleNamespace(stop_training=False))
    logger.set_params({"steps": 17})
    for epoch in range(2):
        logger.on_epoch_begin(epoch)
        for last_step in (7, 15, 23):  # steps_per_execution=8: calls after steps 8, 16 and 17, as Keras says them
            logger.on_train_batch_end(last_step, {"loss": 1.0})
    assert counter.global_step == 34
    assert store.read_metrics("r")[-1]["batch"] == 17


def test_a_head_runs_several_steps_a_call_only_where_the_fit_pays_for_the_loop():
    from core.train.objective import HEAD_LOOP_MIN_STEPS, HEAD_STEPS_PER_CALL, head_steps_per_call

    assert head_steps_per_call(3 * 6, replicas=1) == 1  # a small dataset's few steps: one a call
    assert head_steps_per_call(HEAD_LOOP_MIN_STEPS - 1, replicas=1) == 1
    assert head_steps_per_call(HEAD_LOOP_MIN_STEPS, replicas=1) == HEAD_STEPS_PER_CALL > 1
    assert head_steps_per_call(10_000, replicas=2) == 1  # MirroredStrategy: Keras's loop fails there


def test_several_steps_a_call_train_the_head_alike_and_log_every_step(tmp_path, colours, monkeypatch):
    """The same head fit with the multi-step loop forced (a small fit runs one step a call): the same losses, and
    the run's log still counts every step of every epoch."""
    import core.train.objective

    def fit(folder: str, loop_from: int) -> list[dict]:
        monkeypatch.setattr(core.train.objective, "HEAD_LOOP_MIN_STEPS", loop_from)
        store, run_id, status = _train(tmp_path / folder, colours, BASE)
        assert status.state == JobState.DONE
        return store.read_metrics(run_id)

    one, looped = fit("one", 10_000), fit("looped", 1)
    losses = [
        [m[key] for m in metrics if m["kind"] == "epoch"] for key in ("loss", "val_loss") for metrics in (one, looped)
    ]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    np.testing.assert_allclose(losses[3], losses[2], rtol=1e-5)
    last_batches = [m["batch"] for m in looped if m["kind"] == "batch"]
    assert last_batches[-2:] == [3, 3]  # 18 training photos in batches of 8: each epoch's 3 steps, its last said


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
def test_a_compiled_model_traces_its_training_step_once_and_fits_as_keras_alone_would(multilabel):
    """compile_for builds the optimizer's and metrics' variables before the first step: Keras on TensorFlow would
    make them inside the first traced step and then trace it again. Counted by the Python of `train_step`, which
    runs only while a step is traced; the losses are those of Keras's own compile."""
    import keras

    from core.network.losses import WeightedBinaryCrossentropy
    from core.train.objective import compile_for

    rng = np.random.default_rng(0)
    x = rng.random((24, 16), dtype=np.float32)
    labels = rng.integers(0, 2, (24, 3)) if multilabel else np.eye(3)[rng.integers(0, 3, 24)]
    y = labels.astype("float32")

    def fit(ours: bool) -> tuple[list[float], int]:
        keras.utils.set_random_seed(3)
        activation = "sigmoid" if multilabel else "softmax"
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(3, activation)])
        traced = []
        train_step = model.train_step
        model.train_step = lambda *args: traced.append(1) or train_step(*args)  # JAX's takes the state first
        if ours:
            compile_for(model, 1e-2, 0.0, multilabel=multilabel)
        else:  # what compile_for compiles, left to Keras
            loss = WeightedBinaryCrossentropy(None, 0.0) if multilabel else "categorical_crossentropy"
            model.compile(keras.optimizers.Adam(1e-2), loss, metrics=[] if multilabel else ["accuracy"])
        history = model.fit(x, y, validation_data=(x[:8], y[:8]), batch_size=8, epochs=3, shuffle=False, verbose=0)
        return history.history["loss"] + history.history["val_loss"], len(traced)

    (ours, traced_ours), (plain, traced_plain) = fit(True), fit(False)
    np.testing.assert_allclose(ours, plain, rtol=1e-6)
    if keras.backend.backend() == "tensorflow":
        assert (traced_ours, traced_plain) == (1, 2)
    else:  # JAX: Keras builds the state first itself
        assert traced_ours == traced_plain


@pytest.mark.backend_agnostic
def test_cosine_schedule_decays_the_rate_over_the_phase(tmp_path, colours):
    store, run_id, status = _train(tmp_path, colours, BASE.replace(epochs=3, lr_schedule="cosine"))
    assert status.state == JobState.DONE
    rates = [m["lr"] for m in store.read_metrics(run_id) if m["kind"] == "epoch"]
    assert len(rates) == 3 and rates[0] < BASE.learning_rate and rates == sorted(rates, reverse=True)
    assert rates[-1] == pytest.approx(0.0, abs=1e-9)  # cosine ends at zero after the phase's last step


def test_plateau_schedule_lowers_the_rate_when_validation_loss_stalls():
    import keras

    from core.train.schedules import PLATEAU_FACTOR, plateau_patience, schedule_callbacks

    assert schedule_callbacks("constant", 3) == [] and schedule_callbacks("cosine", 3) == []
    assert plateau_patience(3) == 1 and plateau_patience(10) == 5 and plateau_patience(0) == 2
    (plateau,) = schedule_callbacks("plateau", early_stopping_patience=3)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    plateau.set_model(model)
    plateau.on_train_begin()
    plateau.on_epoch_end(0, {"val_loss": 1.0})
    plateau.on_epoch_end(1, {"val_loss": 0.5})  # improving: the rate stays
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    plateau.on_epoch_end(2, {"val_loss": 0.6})  # one epoch without improvement (patience 1)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01 * PLATEAU_FACTOR)


def test_unknown_schedule_is_refused():
    from core.train.schedules import learning_rate_for

    with pytest.raises(ValueError, match="lr_schedule must be"):
        learning_rate_for("linear", 0.01, 10)
