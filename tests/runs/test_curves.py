"""Curves, progress and ETA of a run, from its status and metrics files."""

from __future__ import annotations

import pytest

from core.fileio import write_json_atomic
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
    # a new stage's first report is written even inside the interval: its start is what its pace is measured from
    report("extracting features: train (augmented view 1)", 60, 180)
    status = store.get("r").status
    assert status.stage == "extracting features: train (augmented view 1)" and status.stage_progress == (60, 180)


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
        # the walk: announced before any epoch ended (no phase yet), the bar fell back to 1%, then jumped to 70%
        {"stage": "training the head on cached features", "stage_progress": None},
        {"stage": "training the head on cached features", "stage_progress": None, "phase": 1, "epoch": 1},
        {"stage": "training the head on cached features", "phase": 1, "epoch": 3, "batch": 5, "steps": 10},
        {"stage": "evaluating on the test split", "phase": 1, "epoch": 4},
        {"stage": "fitting the out-of-distribution reference", "phase": 1, "epoch": 4},
    ]
    metrics: list[dict] = []
    seen, cells = [], []
    store.set_status("r", state="running", split={"train": 700, "val": 150, "test": 150})
    for number, fields in enumerate(steps):
        epochs_finished = {8: 2, 9: 4, 10: 4}.get(number, 0)
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
    assert cells[8] == "2/4 epochs done"
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
    # walk 51: "about 41 s of epochs left" after the first of 12 (its compiling in it); the rest took 8 s
    first = [{"kind": "epoch", "epoch": 1, "phase": 1, "duration": 5.0}]
    store.set_status("r", epoch=2)
    assert progress(store.get("r"), first, now=200.0).eta_seconds is None  # the first epoch is no pace
    compiled = [*first, *({"kind": "epoch", "epoch": e, "phase": 1, "duration": 0.7} for e in (2, 3))]
    store.set_status("r", epoch=4)
    assert progress(store.get("r"), compiled, now=200.0).eta_seconds == pytest.approx(7 * 0.7)  # without the first
    store.set_status("r", epoch=5)
    every = [{"kind": "epoch", "epoch": e, "phase": 1, "duration": 2.3} for e in range(1, 11)]
    for stage in ("saving model", "evaluating on the test split", "fitting the out-of-distribution reference"):
        store.set_status("r", stage=stage, epoch=10)
        state = progress(store.get("r"), every, now=230.0)
        assert state.eta_seconds is None and "left" not in state.text and state.text.startswith(stage)
        assert "10/10 epochs done" in state.text


def test_a_step_nothing_times_says_how_long_it_has_taken_so_far(tmp_path):
    """The walk: 'whole run 29%' sat still for 16 s across the phase change (frozen -> fine-tuning) and the
    out-of-distribution reference took 25 s with no word. A step with neither counts nor a pace says it is alive
    and for how long, on a fake clock; one with an ETA or counts keeps its own words."""
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 2, "fine_tune_epochs": 2}, "dataset": {"images": 800}})
    head = [{"kind": "epoch", "epoch": e, "phase": 1, "duration": 1.0} for e in (1, 2)]
    store.set_status("r", state="running", epochs_total=4, phase=1, epoch=2, stage="fine-tuning", stage_started_at=100)
    state = progress(store.get("r"), head, now=116.0)
    assert (
        state.eta_seconds is None
        and state.text == "fine-tuning · 2/4 epochs done · 16 s in this step so far (not timed in advance)"
    )
    # fine-tuning's batches give a pace: the ETA speaks, not the step's clock
    store.set_status("r", phase=2, epoch=3, batch=5, steps=10, first_batch_at=120.0, updated_at=124.0)
    state = progress(store.get("r"), head, now=124.0)
    assert state.eta_seconds is not None and "so far" not in state.text
    for stage in ("evaluating on the test split", "fitting the out-of-distribution reference"):
        store.set_status("r", stage=stage, stage_started_at=200.0, epoch=4, batch=None, steps=None)
        every = head + [{"kind": "epoch", "epoch": e, "phase": 2, "duration": 5.0} for e in (3, 4)]
        assert progress(store.get("r"), every, now=225.0).text == (
            f"{stage} · 4/4 epochs done · 25 s in this step so far (not timed in advance)"
        )
    store.set_status("r", stage="decoding images", stage_progress=[10, 100], stage_started_at=200.0)
    assert "so far" not in progress(store.get("r"), [], now=225.0).text
    store.set_status("r", state="done")
    assert "so far" not in progress(store.get("r"), [], now=225.0).text


def test_between_epochs_without_batch_counts_the_eta_counts_down_and_never_jumps_up(tmp_path):
    """The walk: head epochs on cached features report no batches, so the ETA stood still through an epoch and
    moved at its end (27 s, then 41 s left). From the last epoch's end it counts down, never below the epochs
    still to come after the one in progress."""
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 10}, "dataset": {"images": 800}})
    epochs = [{"kind": "epoch", "epoch": e, "phase": 1, "duration": 3.0, "time": 100.0 + 3 * e} for e in (1, 2, 3, 4)]
    store.set_status("r", state="running", epochs_total=10, phase=1, epoch=5, stage="training the head")
    etas = [progress(store.get("r"), epochs, now=now).eta_seconds for now in (112.0, 113.0, 114.5, 120.0, 150.0)]
    assert etas == pytest.approx([18.0, 17.0, 15.5, 15.0, 15.0])  # 6 epochs of 3 s left; the 5th under way


def test_the_reference_step_counts_its_photos_and_says_the_time_left(tmp_path):
    """The walk: the out-of-distribution reference (94% of the whole run) took 25 s with no time given. It counts
    the photos it passes through the model; their pace gives the time left, and the whole run moves with it."""
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 2}, "dataset": {"images": 800}})
    every = [{"kind": "epoch", "epoch": e, "phase": 1, "duration": 1.0} for e in (1, 2)]
    stage = "fitting the out-of-distribution reference"
    status = {"state": "running", "epochs_total": 2, "phase": 1, "epoch": 2, "stage": stage, "stage_started_at": 200.0}
    write_json_atomic(store.run_dir("r") / "status.json", status | {"stage_progress": [100, 400], "updated_at": 210.0})
    early = progress(store.get("r"), every, now=210.0)
    assert early.text == f"{stage} · 2/2 epochs done · 100 / 400 · about 30 s left"
    write_json_atomic(store.run_dir("r") / "status.json", status | {"stage_progress": [300, 400], "updated_at": 230.0})
    late = progress(store.get("r"), every, now=230.0)
    assert late.text.endswith("300 / 400 · about 10 s left") and early.fraction < late.fraction < 1.0
    # every photo through, the checks still fitting: no "about 0 s left" and no "100%" while it runs (walk 41)
    write_json_atomic(store.run_dir("r") / "status.json", status | {"stage_progress": [400, 400], "updated_at": 240.0})
    done = progress(store.get("r"), every, now=247.0)
    assert done.text.endswith("400 / 400 · finishing (47 s in this step so far)") and done.fraction <= 0.99


def test_a_pace_measured_over_no_time_gives_no_time_left(tmp_path):
    """The walk: "60 / 180 · about 0 s left" from a stage whose start was written with its 60th photo."""
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 2}, "dataset": {"images": 800}})
    status = {"state": "running", "stage": "extracting features: train", "stage_started_at": 100.0}
    write_json_atomic(store.run_dir("r") / "status.json", status | {"stage_progress": [60, 180], "updated_at": 100.2})
    assert progress(store.get("r"), [], now=100.3).stage_eta_seconds is None
    write_json_atomic(store.run_dir("r") / "status.json", status | {"stage_progress": [60, 180], "updated_at": 106.0})
    assert progress(store.get("r"), [], now=106.0).stage_eta_seconds == pytest.approx(12.0)


def test_a_starting_process_and_an_early_stop_are_said(tmp_path):
    """The walk: ~29 s at "queued · 0%" with no word, and "7/10 epochs done" through the steps after a fit that
    early stopping ended (the 3 epochs never to come unsaid)."""
    store = RunStore(tmp_path)
    store.create("r", {"config": {"epochs": 10}, "dataset": {"images": 800}})
    write_json_atomic(store.run_dir("r") / "status.json", {"state": "queued", "launched_at": 100.0})
    assert progress(store.get("r"), [], now=112.0).text == (
        "starting the training process: it loads TensorFlow before it can report (12 s so far)"
    )
    seven = [{"kind": "epoch", "epoch": e, "phase": 1, "duration": 1.0} for e in range(1, 8)]
    store.set_status("r", state="running", epochs_total=10, phase=1, epoch=7, stage="evaluating on the test split")
    label = progress(store.get("r"), seven).epoch_label
    assert label == "7/10 epochs: early stopping ended the fit (validation loss stopped falling)"
    store.set_status("r", state="done")
    assert "early stopping" in progress(store.get("r"), seven).epoch_label
    store.set_status("r", state="stopped")  # a stop asked for is not early stopping
    assert progress(store.get("r"), seven).epoch_label == "7/10 epochs"
    store.set_status("r", state="running", stage="training the head on cached features")  # still fitting
    assert progress(store.get("r"), seven).epoch_label == "7/10 epochs done"
