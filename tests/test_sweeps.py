"""Sweeps: the search space's checks, a search that finds a better learning rate, pruning, stop and resume."""

from __future__ import annotations

import numpy as np
import pytest

from core.processes import JobState
from core.settings.config import AugmentConfig, TrainConfig
from core.sweeps import SpaceError, SweepStore, default_space, parse_space, resubmit, submit
from core.sweeps.space import config_for
from tests.conftest import make_image_dataset

FIXED = TrainConfig(
    image_size=32, weights="none", epochs=4, batch_size=8, head=(16,), seed=0, early_stopping_patience=0
)
LR_SPACE = {"learning_rate": {"low": 1e-6, "high": 0.1, "log": True}}


@pytest.fixture
def colours(tmp_path):
    return make_image_dataset(tmp_path / "colours", {"red": 10, "green": 10, "blue": 10}, seed=1)


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    "space, message",
    [
        ({}, "the search space is empty"),
        ([], "a search space is a JSON object"),
        ({"lr": {"low": 1e-4}}, "unknown parameter 'lr' in the search space (did you mean 'learning_rate'?)"),
        ({"epochs": {"low": 1, "high": 5}}, "unknown parameter 'epochs'"),
        ({"learning_rate": {"low": 0.01, "high": 0.001}}, "learning_rate: low (0.01) is greater than high (0.001)"),
        ({"learning_rate": {"low": 0, "high": 0.1, "log": True}}, "a log scale needs low > 0"),
        ({"learning_rate": {"low": 1e-4}}, "a range needs both low and high"),
        ({"learning_rate": {"low": 1e-4, "hi": 1e-2}}, "unknown key(s) ['hi']"),
        ({"dropout": {"low": 0.0, "high": 1.0}}, "dropout: dropout must be in [0, 1). Received: dropout=1.0"),
        ({"batch_size": {"low": 8.5, "high": 64}}, "batch_size: low must be a whole number"),
        ({"batch_size": {"choices": []}}, "choices must be a non-empty list"),
        ({"head": {"choices": ["256", "big"]}}, "head: head must be whole numbers"),
        ({"head": {"low": 1, "high": 2}}, "head takes a list of choices"),
        ({"lr_schedule": {"choices": ["linear"]}}, "'linear' is not one of constant, cosine, plateau"),
        ({"augmented_views": {"low": 0, "high": 2}}, "the fixed augmentation is 'none'"),
    ],
)
def test_a_bad_space_is_refused_with_a_clear_message(space, message):
    with pytest.raises(SpaceError) as raised:
        parse_space(space, TrainConfig(augment=AugmentConfig()))
    assert message in str(raised.value)


@pytest.mark.backend_agnostic
def test_a_space_reads_back_and_gives_trial_configs():
    fixed = TrainConfig(learning_rate=1e-3, head=(256,), batch_size=32)
    space = parse_space(default_space(fixed), fixed)
    assert space.to_dict() == parse_space(space.to_dict(), fixed).to_dict()
    assert "augmented_views" in space.names and space.max_views(fixed) == 2
    assert "augmented_views" not in default_space(fixed.replace(augment=AugmentConfig()))
    # the first trial starts from the fixed settings that lie inside the space
    start = space.start_values(fixed)
    assert start["learning_rate"] == 1e-3 and start["head"] == "256" and start["batch_size"] == 32
    assert start["lr_schedule"] == "constant" and start["augmented_views"] == 2
    config = config_for(fixed, {"head": "512,128", "dropout": 0.3, "batch_size": 64, "lr_schedule": "cosine"})
    assert config.head == (512, 128) and config.dropout == 0.3 and config.lr_schedule == "cosine"
    assert config.image_size == fixed.image_size and config.weights == fixed.weights
    head = parse_space({"head": {"choices": ["", [512, 128], "256"]}}, fixed).params[0]
    assert head.choices == ("", "512,128", "256") and head.describe() == "none, 512,128 or 256"


def test_refused_before_anything_starts(tmp_path, colours):
    models = tmp_path / "models"
    with pytest.raises(SpaceError, match="greater than high"):
        submit(models, colours, FIXED, {"dropout": {"low": 0.5, "high": 0.1}}, trials=3)
    with pytest.raises(ValueError, match="a number of trials"):
        submit(models, colours, FIXED, LR_SPACE, trials=None)
    with pytest.raises(ValueError, match="feature cache cannot be off"):
        submit(models, colours, FIXED.replace(feature_cache=False), LR_SPACE, trials=3)
    assert not models.exists()  # nothing was created


def _sweep(models, data_root, sweep_id):
    from core.sweeps.search import run_sweep

    return run_sweep(SweepStore(models), sweep_id, data_root, console=False, workers=1)


def test_a_sweep_finds_a_learning_rate_that_beats_a_bad_one(tmp_path, colours):
    models, data_root = tmp_path / "models", tmp_path / "data"
    bad = FIXED.replace(learning_rate=1e-6)  # deliberately bad: the head barely moves in 4 epochs
    submission = submit(models, colours, bad, LR_SPACE, trials=6)
    status = _sweep(models, data_root, submission.sweep.sweep_id)
    assert status.state is JobState.DONE and status.trials_done == 6
    sweep = SweepStore(models).get(submission.sweep.sweep_id)
    snapshot = sweep.trials()
    first = snapshot["trials"][0]
    assert first["params"] == {"learning_rate": 1e-6} and first["note"] == "your starting settings"
    best = snapshot["best"]
    assert best["params"]["learning_rate"] > 1e-4
    assert best["val_loss"] < first["val_loss"] and best["val_accuracy"] > first["val_accuracy"]
    assert best["config"]["learning_rate"] == best["params"]["learning_rate"] and best["config"]["image_size"] == 32
    assert status.best_trial == best["number"] and status.best_val_accuracy == best["val_accuracy"]
    assert all(len(t["curve"]) == t["epochs_run"] for t in snapshot["trials"])
    assert set(snapshot["importance"]) <= {"learning_rate"}
    # The test split was never touched: the cached clean features cover train + validation only.
    (done,) = list((data_root / ".cache" / "features").rglob("view0.done.npy"))
    split = status.split
    assert split["test"] > 0 and int(np.load(done).sum()) == split["train"] + split["val"] == 30 - split["test"]

    # The same request again is the same, finished sweep: nothing reruns.
    again = submit(models, colours, bad, LR_SPACE, trials=6)
    assert again.sweep.sweep_id == sweep.sweep_id and again.outcome == "finished"


@pytest.mark.backend_agnostic
def test_a_trial_of_another_rate_alone_trains_the_compiled_head_as_a_fresh_one_would(tmp_path, colours, monkeypatch):
    """Trials that differ only in their rate reuse one compiled head, put back at its start each time: every
    epoch's losses are the ones a head built afresh for that trial gives (dropout's seed state, the optimizer's
    steps and moments, the batch norm's statistics all restarted)."""
    from core.sweeps import trials
    from core.sweeps.trials import open_study

    compiled: list[bool] = []
    fit_head = trials.fit_head

    def counted(*args, **kwargs):
        compiled.append(kwargs["compiled"])
        return fit_head(*args, **kwargs)

    build = trials.Objective._head

    def afresh(self, *args):
        self._last_head = None
        return build(self, *args)

    monkeypatch.setattr(trials, "fit_head", counted)
    rates = (3e-3, 1e-2, 1e-3)
    curves = {}
    for reuse in (True, False):
        if not reuse:  # every trial's head built and compiled afresh
            monkeypatch.setattr(trials.Objective, "_head", afresh)
        models = tmp_path / f"models-{reuse}"
        submission = submit(models, colours, FIXED.replace(epochs=2), LR_SPACE, trials=len(rates))
        study, _ = open_study(submission.sweep)
        for rate in rates:
            study.enqueue_trial({"learning_rate": rate})
        assert _sweep(models, tmp_path / "data", submission.sweep.sweep_id).state is JobState.DONE
        rows = SweepStore(models).get(submission.sweep.sweep_id).trials()["trials"]
        assert [row["params"]["learning_rate"] for row in rows] == list(rates)
        curves[reuse] = [[(p["loss"], p["val_loss"], p["accuracy"]) for p in row["curve"]] for row in rows]
    assert compiled == [False, True, True, False, False, False]
    assert curves[True] == curves[False]
    assert len({tuple(curve) for curve in curves[True]}) == len(rates)  # each rate trained its own way


def test_the_median_pruner_stops_a_hopeless_trial(tmp_path, colours):
    from core.sweeps.trials import PRUNE_AFTER_TRIALS, open_study

    models, data_root = tmp_path / "models", tmp_path / "data"
    submission = submit(models, colours, FIXED.replace(epochs=5), LR_SPACE, trials=PRUNE_AFTER_TRIALS + 1)
    study, _ = open_study(submission.sweep)
    for rate in (3e-3, 1e-3, 5e-3, 2e-3):  # four good trials set the median, then a hopeless one
        study.enqueue_trial({"learning_rate": rate})
    study.enqueue_trial({"learning_rate": 1e-6})
    status = _sweep(models, data_root, submission.sweep.sweep_id)
    assert status.state is JobState.DONE and status.trials_pruned == 1
    rows = SweepStore(models).get(submission.sweep.sweep_id).trials()["trials"]
    hopeless = rows[-1]
    assert hopeless["state"] == "pruned" and hopeless["params"] == {"learning_rate": 1e-6}
    assert hopeless["epochs_run"] == 3 and hopeless["note"].startswith("pruned after epoch 3")
    assert all(row["state"] == "complete" and row["epochs_run"] == 5 for row in rows[:-1])


def test_stop_then_resume_keeps_the_finished_trials(tmp_path, colours, monkeypatch):
    import optuna

    from core.sweeps.trials import TrialReporter, open_study

    models, data_root = tmp_path / "models", tmp_path / "data"
    store = SweepStore(models)
    submission = submit(models, colours, FIXED.replace(epochs=3), LR_SPACE, trials=4)
    sweep_id = submission.sweep.sweep_id
    batch_end = TrialReporter.on_train_batch_end

    def stop_during_trial_2(self, batch, logs=None):
        if self.trial.number == 2:
            store.request_stop(sweep_id)  # as the Stop button does, while trial 2 trains
        return batch_end(self, batch, logs)

    monkeypatch.setattr(TrialReporter, "on_train_batch_end", stop_during_trial_2)
    status = _sweep(models, data_root, sweep_id)
    assert status.state is JobState.STOPPED and status.trials_done == 2 and "launch it again" in status.note
    before = {row["number"]: row for row in store.get(sweep_id).trials()["trials"]}
    assert [before[n]["state"] for n in (0, 1, 2)] == ["complete", "complete", "failed"]
    assert before[2]["note"] == "stopped: tried again when the sweep continues"

    # A process killed mid-trial leaves a trial "running": the next launch fails it and tries it again.
    # (Here the killed one is the queued retry of trial 2, which `ask` takes first, as a launch would.)
    monkeypatch.setattr(TrialReporter, "on_train_batch_end", batch_end)
    study, _ = open_study(store.get(sweep_id))
    killed = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-6, 0.1, log=True)})
    assert killed.params == before[2]["params"]
    assert resubmit(models, sweep_id, trials=5).outcome == "new"
    status = _sweep(models, data_root, sweep_id)
    assert status.state is JobState.DONE and status.trials_done == 5
    after = {row["number"]: row for row in store.get(sweep_id).trials()["trials"]}
    for n in (0, 1):  # kept as they were, not trained again
        assert after[n]["val_loss"] == before[n]["val_loss"] and after[n]["finished_at"] == before[n]["finished_at"]
    assert after[killed.number]["state"] == "failed" and "tried again" in after[killed.number]["note"]
    retried = [row for row in after.values() if row["note"] == f"trial {killed.number} again"]
    assert len(retried) == 1 and retried[0]["params"] == before[2]["params"] and retried[0]["state"] == "complete"
    # the new trials of the second launch are new settings, not the first launch's draws again
    rates = [row["params"]["learning_rate"] for row in after.values() if row["state"] in ("complete", "pruned")]
    assert len(set(rates)) == len(rates) == 5


def test_a_sweep_records_the_corrections_it_applies(tmp_path, colours):
    """Corrections marked later do not slip into a sweep (or the run it promotes): it keeps what it was given."""
    import json

    from core.data.corrections import Corrections
    from core.sweeps.launch import sweep_corrections

    fixed = TrainConfig(image_size=32, weights="none", epochs=2, head=(8,), seed=0)
    space = {"dropout": {"low": 0.0, "high": 0.5}}
    applied = {"red/img_000.png": {"action": "exclude"}}
    plain = submit(tmp_path / "models", colours, fixed, space, trials=2).sweep
    corrected = submit(tmp_path / "models", colours, fixed, space, trials=2, corrections=applied).sweep
    assert corrected.sweep_id != plain.sweep_id  # other data: another sweep
    assert sweep_corrections(plain, tmp_path / "data") is None
    kept = Corrections.load(tmp_path / "data", colours)
    kept.mark("green/img_000.png", "exclude")
    kept.save()
    store = SweepStore(tmp_path / "models")
    assert sweep_corrections(store.get(corrected.sweep_id), tmp_path / "data") == applied
    assert sweep_corrections(store.get(plain.sweep_id), tmp_path / "data") is None  # not the ones marked since
    # a sweep from before corrections were recorded: the ones kept for its dataset, as it did then
    spec_file = store.sweep_dir(plain.sweep_id) / "sweep.json"
    spec = json.loads(spec_file.read_text())
    del spec["corrections"]
    spec_file.write_text(json.dumps(spec))
    assert sweep_corrections(store.get(plain.sweep_id), tmp_path / "data") == kept.effective()


def test_a_multilabel_sweep_is_judged_by_validation_map_and_promotes_a_multilabel_run(tmp_path):
    from core.runs.store import RunStore
    from core.sweeps import promote
    from tests.train.test_multilabel import make_mosaics

    models, data_root = tmp_path / "models", tmp_path / "data"
    mosaics = make_mosaics(tmp_path / "mosaics", n=40, size=32)
    submission = submit(models, mosaics, FIXED.replace(learning_rate=1e-6), LR_SPACE, trials=4)
    assert submission.sweep.fixed.task == "multilabel"  # the dataset's kind
    status = _sweep(models, data_root, submission.sweep.sweep_id)
    assert status.state is JobState.DONE and status.trials_done == 4
    snapshot = SweepStore(models).get(submission.sweep.sweep_id).trials()
    complete = [t for t in snapshot["trials"] if t["state"] == "complete"]
    assert all(0 <= t["val_map"] <= 1 and t["val_accuracy"] is None for t in complete)
    best = snapshot["best"]
    assert best["val_map"] == max(t["val_map"] for t in complete) == status.best_val_map
    assert all(point["val_map"] is not None for point in best["curve"])
    promoted = promote(models, data_root, submission.sweep.sweep_id, background=False)
    run = RunStore(models).get(promoted.run_id)
    assert promoted.config.task == "multilabel" and run.multilabel and "validation mAP" in run.note
