"""Curves, progress and ETA of a run, from its status and metrics files."""

from __future__ import annotations

import pytest

from core.runs.curves import batch_curve, epoch_curves, format_duration, phase_boundary, progress
from core.runs.store import RunStore

METRICS = [
    {"kind": "batch", "phase": 1, "epoch": 1, "batch": 5, "steps": 10, "loss": 2.0, "accuracy": 0.2},
    {
        "kind": "epoch",
        "phase": 1,
        "epoch": 1,
        "loss": 1.5,
        "val_loss": 1.6,
        "accuracy": 0.4,
        "val_accuracy": 0.35,
        "lr": 1e-3,
        "duration": 10.0,
        "time": 100.0,
    },
    {
        "kind": "epoch",
        "phase": 1,
        "epoch": 2,
        "loss": 1.0,
        "val_loss": 1.2,
        "accuracy": 0.6,
        "val_accuracy": 0.5,
        "lr": 1e-3,
        "duration": 12.0,
        "time": 112.0,
    },
    {"kind": "batch", "phase": 2, "epoch": 3, "batch": 4, "steps": 10, "loss": 0.9, "accuracy": 0.7},
    {
        "kind": "epoch",
        "phase": 2,
        "epoch": 3,
        "loss": 0.8,
        "val_loss": 1.1,
        "accuracy": 0.7,
        "val_accuracy": 0.6,
        "lr": 1e-5,
        "duration": 30.0,
        "time": 150.0,
    },
]


def test_epoch_and_batch_curves():
    frame = epoch_curves(METRICS)
    assert frame["epoch"].tolist() == [1, 2, 3] and frame["phase"].tolist() == [1, 1, 2]
    assert frame["val_accuracy"].tolist() == [0.35, 0.5, 0.6]
    batches = batch_curve(METRICS)
    assert batches["x"].tolist() == [0.5, 2.4]
    assert phase_boundary(METRICS) == 2.0
    assert phase_boundary(METRICS[:3]) is None
    assert epoch_curves([]).empty and batch_curve([]).empty


def test_progress_and_eta_of_a_running_run(tmp_path):
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 2, "fine_tune_epochs": 3, "unfreeze_stages": 1}})
    store.set_status(
        "r", state="running", epochs_total=5, epoch=4, batch=5, steps=10, started_at=90.0, stage="fine-tuning"
    )
    state = progress(store.get("r"), METRICS, now=160.0)
    assert state.epochs_done == 3 and state.epochs_total == 5
    assert 0.5 < state.fraction < 1.0  # the run's whole plan: decoding and phase 1 are behind it
    assert state.eta_seconds == pytest.approx(1.5 * 30.0)  # the current phase's epoch time
    assert state.elapsed_seconds == pytest.approx(70.0)
    # the epochs done, as many as the curves plot (not "epoch 4/5" beside 3 points), and what the ETA covers
    assert state.text == "fine-tuning · 3/5 epochs done · about 45 s of epochs left, then testing and saving"


def test_at_the_start_of_fine_tuning_the_eta_comes_from_the_epoch_in_progress(tmp_path):
    """Phase 1 on cached features took 10-12 s an epoch; the first fine-tuning epoch on images is far slower.
    Its pace comes from the batches it has done, not from phase 1's (which said '3 s left' for a minute)."""
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 2, "fine_tune_epochs": 3, "unfreeze_stages": 1}})
    head_only = METRICS[:3]  # two phase-1 epochs done, none of phase 2
    from core.fileio import write_json_atomic

    status = {"state": "running", "epochs_total": 5, "phase": 2, "epoch": 3, "batch": 3, "steps": 10}
    # the first batch took 20 s (tracing, compiling); the next two 7 s each: 70 s an epoch from here on
    status |= {"started_at": 90.0, "epoch_started_at": 126.0, "first_batch_at": 146.0, "updated_at": 160.0}
    write_json_atomic(store.run_dir("r") / "status.json", status)
    state = progress(store.get("r"), head_only, now=161.0)
    assert state.eta_seconds == pytest.approx(7 * 7.0 + 2 * 70.0)  # not (now - epoch start) / 3 per batch
    assert state.epoch_label == "2/5 epochs done"
    write_json_atomic(store.run_dir("r") / "status.json", status | {"batch": 1, "updated_at": 146.0})
    assert progress(store.get("r"), head_only, now=150.0).eta_seconds is None  # the first batch alone: no guess
    # still in phase 1 on cached features with fine-tuning to come: no guess (scaling a head epoch, mostly fixed
    # overhead, by the plan's costs said "about 7 min" for a 35 s run)
    record = {"config": {"epochs": 2, "fine_tune_epochs": 3, "unfreeze_stages": 1}, "dataset": {"images": 1000}}
    store.create("f", record)
    store.set_status("f", state="running", epochs_total=5, phase=1, epoch=2, batch=5, steps=10, started_at=90.0)
    assert progress(store.get("f"), METRICS[:2], now=120.0).eta_seconds is None
    # fine-tuning has begun (its stage says so) before its first batch wrote phase 2: no guess from the batch counts
    # and pace phase 1 left in the status (they said "about 1 s left" while fine-tuning compiled)
    store.set_status("f", stage="fine-tuning", batch=10, steps=10, first_batch_at=100.0, updated_at=119.0)
    assert progress(store.get("f"), METRICS[:2], now=121.0).eta_seconds is None


def test_progress_of_a_finished_run_and_stage_progress(tmp_path):
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 2}})
    store.set_status("r", state="done", epochs_total=2, started_at=0.0, finished_at=30.0)
    state = progress(store.get("r"), METRICS[:3])
    assert state.fraction == 1.0 and state.eta_seconds is None and state.elapsed_seconds == 30.0
    store.set_status("r", state="running", stage="decoding images", stage_progress=[25, 100])
    assert progress(store.get("r"), []).stage_fraction == 0.25


def test_a_preparing_run_reports_its_stage_with_an_eta(tmp_path):
    from core.fileio import write_json_atomic

    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 10}})
    # 300 of 1200 images in 60 s: the remaining 900 take three times as long
    write_json_atomic(
        store.run_dir("r") / "status.json",
        {
            "state": "running",
            "epochs_total": 10,
            "stage": "extracting features: train",
            "stage_progress": [300, 1200],
            "stage_started_at": 1000.0,
            "updated_at": 1060.0,
        },
    )
    state = progress(store.get("r"), [], now=1070.0)
    assert state.preparing and state.stage_counts == (300, 1200) and state.stage_fraction == 0.25
    assert state.stage_eta_seconds == pytest.approx(180.0)
    assert state.stage_text == "extracting features: train · 300 / 1200 · about 3 min left"


def test_the_stage_reporter_marks_when_each_stage_starts(tmp_path):
    from core.train.trainer import StageReporter

    store = RunStore(tmp_path)
    store.create("r", {"config": {}})
    report = StageReporter.for_run(store, "r")
    report("decoding images", 0, 10, force=True)
    first = store.get("r").status.stage_started_at
    report("decoding images", 5, 10, force=True)
    assert store.get("r").status.stage_started_at == first and store.get("r").status.stage_progress == (5, 10)
    report("extracting features: train", 0, 10, force=True)
    assert store.get("r").status.stage_started_at >= first


@pytest.mark.parametrize("seconds, text", [(5, "5 s"), (89, "89 s"), (300, "5 min"), (3900, "1 h 5 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_whole_run_progress_counts_every_stage_and_only_grows(tmp_path):
    """A cached-features run spends most of its time extracting: the bar must move then, not sit at 0%."""
    store = RunStore(tmp_path)
    config = {"epochs": 4, "augmented_views": 2, "augment": {"rotation": 10}}
    store.create("r", {"config": config, "dataset": {"images": 1000}})
    steps = [
        {"stage": "decoding images", "stage_progress": [500, 1000]},
        {"stage": "building model", "stage_progress": None},
        {"stage": "extracting features: train + val + test", "stage_progress": [300, 1000]},
        {"stage": "extracting features: train + val + test", "stage_progress": [1000, 1000]},
        {"stage": "extracting features: train (augmented view 1)", "stage_progress": [350, 700]},
        {"stage": "extracting features: train (augmented view 2)", "stage_progress": [700, 700]},
        {"stage": "training the head on cached features", "stage_progress": None, "phase": 1, "epoch": 1},
        {"stage": "training the head on cached features", "phase": 1, "epoch": 3, "batch": 5, "steps": 10},
        {"stage": "evaluating on the test split", "phase": 1, "epoch": 4},
        {"stage": "fitting the out-of-distribution reference", "phase": 1, "epoch": 4},
    ]
    metrics: list[dict] = []
    seen, cells = [], []
    store.set_status("r", state="running", split={"train": 700, "val": 150, "test": 150})
    for number, fields in enumerate(steps):
        epochs_finished = {6: 0, 7: 2, 8: 4, 9: 4}.get(number, 0)
        metrics = [{"kind": "epoch", "epoch": e, "phase": 1, "duration": 1.0} for e in range(1, epochs_finished + 1)]
        store.set_status("r", **fields)
        state = progress(store.get("r"), metrics)
        seen.append(state.fraction)
        cells.append(state.short_text)
    assert seen == sorted(seen) and seen[0] < 0.05 and seen[-2] < seen[-1] > 0.8, seen
    assert 0.3 < seen[4] < 0.8  # half of the first augmented view: the extraction is most of the run
    # what the runs table's progress cell says at each step (the stage's own share while preparing)
    assert cells[0] == "decoding images 50%"
    assert cells[2] == "extracting features 30%" and cells[4] == "extracting features 50%"
    assert cells[7] == "2/4 epochs done"
    assert cells[-2] == "evaluating on the test split"
    assert cells[-1] == "fitting the out-of-distribution reference"  # a pass over train (sampled), val and test
    store.set_status("r", state="done")
    assert progress(store.get("r"), metrics).short_text == ""  # a finished run's cell is left empty


def test_a_stop_request_shows_as_stopping_at_once(tmp_path):
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 4}})
    store.set_status("r", state="running", epochs_total=4)
    assert progress(store.get("r"), []).state_label == "running"
    store.request_stop("r")
    state = progress(store.get("r"), [])
    assert state.state_label == "stopping" and state.short_text == "stopping…" and state.text.startswith("stopping")


def test_the_eta_is_the_epochs_and_says_so_and_none_once_they_are_over(tmp_path):
    """The walk: "about 14 s left" while saving, the test split and the reference took about 50 s more. The ETA
    is the epochs' own and says what follows; once they are over, no number is given."""
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 10}, "dataset": {"images": 800}})
    epochs = [{"kind": "epoch", "epoch": e, "phase": 1, "duration": 2.3} for e in range(1, 5)]
    store.set_status("r", state="running", epochs_total=10, phase=1, epoch=5, stage="training the head")
    state = progress(store.get("r"), epochs, now=200.0)
    assert state.eta_seconds == pytest.approx(6 * 2.3) and state.epochs_done == 4
    assert state.text == "training the head · 4/10 epochs done · about 14 s of epochs left, then testing and saving"
    every = [{"kind": "epoch", "epoch": e, "phase": 1, "duration": 2.3} for e in range(1, 11)]
    for stage in ("saving model", "evaluating on the test split", "fitting the out-of-distribution reference"):
        store.set_status("r", stage=stage, epoch=10)
        state = progress(store.get("r"), every, now=230.0)
        assert state.eta_seconds is None and "left" not in state.text and state.text.startswith(stage)
        assert "10/10 epochs done" in state.text
