"""One person's work is theirs on a shared Flora: the same settings give each person a run of their own
(sharing the computation), label corrections are per person with proposals, and sweeps have owners."""

from __future__ import annotations

import os
import time

import pytest

from core.data.corrections import EXCLUDE, RELABEL, Corrections
from core.processes import JobState
from core.runs.record import MODEL_FILE
from core.runs.store import RunStore
from core.settings.config import TrainConfig
from core.sweeps.launch import submit as submit_sweep
from core.train import jobs
from tests.conftest import make_image_dataset

CONFIG = TrainConfig(image_size=32, weights="none", epochs=2, batch_size=8, head=(8,), seed=0)


@pytest.fixture
def dataset(tmp_path):
    return make_image_dataset(tmp_path / "ds", {"a": 8, "b": 8}, seed=2)


def _finish(store: RunStore, run_id: str) -> None:
    (store.run_dir(run_id) / MODEL_FILE).write_bytes(b"weights")
    (store.run_dir(run_id) / "evaluation.json").write_text('{"accuracy": 0.75}')
    store.set_status(run_id, state=JobState.DONE, accuracy=0.75, finished_at=time.time())
    store.set_label(run_id, name="alice's try", note="")


def test_the_same_settings_by_two_people_give_each_their_own_run(tmp_path, dataset):
    """Before (walk): the teacher launching a student's settings got the student's run, never under "Mine"."""
    store = RunStore(tmp_path / "models")
    first = jobs.submit(store, dataset, CONFIG, owner="alice")
    _finish(store, first.run_id)
    assert jobs.submit(store, dataset, CONFIG, owner="alice").run_id == first.run_id  # hers: a cache hit
    teacher = jobs.submit(store, dataset, CONFIG, owner="Prof Oak")
    assert teacher.outcome == jobs.CACHED and teacher.run_id != first.run_id
    own = store.get(teacher.run_id)
    assert own.owner == "Prof Oak" and own.state is JobState.DONE and own.has_model
    assert own.reused_from == {"run_id": first.run_id, "owner": "alice"} and not own.name  # her name is hers
    model, copy = store.run_dir(first.run_id) / MODEL_FILE, store.run_dir(teacher.run_id) / MODEL_FILE
    assert os.path.samefile(model, copy)  # the weights are shared on disk, not trained or copied again
    assert jobs.submit(store, dataset, CONFIG, owner="Prof Oak").run_id == teacher.run_id  # his from now on
    store.delete(first.run_id)  # alice deleting hers leaves his whole
    assert store.get(teacher.run_id).has_model and copy.read_bytes() == b"weights"
    # the command line (root) and the app on this machine (local) are one person: no copy between them
    mine = jobs.submit(store, dataset, CONFIG.replace(seed=1), owner="local")
    _finish(store, mine.run_id)
    assert jobs.submit(store, dataset, CONFIG.replace(seed=1), owner="root").run_id == mine.run_id


def test_someone_elses_run_in_training_comes_back_active_not_trained_twice(tmp_path, dataset):
    store = RunStore(tmp_path / "models")
    first = jobs.submit(store, dataset, CONFIG, owner="alice")
    from core.processes import process_start_time

    store.set_status(first.run_id, state=JobState.RUNNING, pid=os.getpid(), pid_start=process_start_time(os.getpid()))
    again = jobs.submit(store, dataset, CONFIG, owner="bob")
    assert again.outcome == jobs.ACTIVE and again.run.owner == "alice"


def test_marks_are_each_persons_and_others_marks_are_proposals(tmp_path, dataset):
    """Before (walk): bob pressed Exclude on root's run and alice's next run applied it."""
    data = tmp_path / "data"
    bob = Corrections.load(data, dataset, "bob")
    bob.mark("a/0.png", EXCLUDE, proposed_to="root")  # while looking at root's run
    bob.save()
    assert jobs.dataset_corrections(data, dataset, "alice") is None  # alice's runs: untouched
    assert jobs.dataset_corrections(data, dataset, "bob") == {"a/0.png": {"action": EXCLUDE}}  # bob's: his
    assert jobs.dataset_corrections(data, dataset, "local") is None
    root = Corrections.load(data, dataset, "root")  # root is the person at this machine: "local"
    [proposal] = root.proposals()
    assert proposal["by"] == "bob" and proposal["action"] == EXCLUDE and proposal["path"] == "a/0.png"
    root.accept("a/0.png", "bob")
    root.save()
    assert jobs.dataset_corrections(data, dataset, "local") == {"a/0.png": {"action": EXCLUDE}}
    assert Corrections.load(data, dataset, "local").proposals() == []  # answered
    # a declined proposal stays its maker's and is not shown again
    alice = Corrections.load(data, dataset, "alice")
    alice.mark("b/1.png", RELABEL, to="a", classes=["a", "b"], proposed_to="local")
    alice.save()
    local = Corrections.load(data, dataset, "local")
    local.decline("b/1.png", "alice")
    assert Corrections.load(data, dataset, "local").proposals() == []
    assert "b/1.png" in Corrections.load(data, dataset, "alice").effective()
    # a run records whose marks it applied
    store = RunStore(tmp_path / "models")
    run = jobs.submit(store, dataset, CONFIG, corrections=jobs.dataset_corrections(data, dataset, "bob"), owner="bob")
    assert store.get(run.run_id).corrections_by == "bob"


def test_a_corrections_file_from_before_people_reads_as_the_local_persons(tmp_path, dataset):
    from core.data.corrections import corrections_file
    from core.fileio import write_json_atomic

    data = tmp_path / "data"
    write_json_atomic(
        corrections_file(data, dataset), {"dataset": str(dataset), "corrections": {"a/1.png": {"action": EXCLUDE}}}
    )
    assert jobs.dataset_corrections(data, dataset) == {"a/1.png": {"action": EXCLUDE}}
    assert jobs.dataset_corrections(data, dataset, "alice") is None


def test_sweeps_have_owners_and_the_same_request_by_another_is_their_own(tmp_path, dataset):
    models = tmp_path / "models"
    space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}
    mine = submit_sweep(models, dataset, CONFIG, space, trials=2)
    assert mine.sweep.owner == "local"
    cli = submit_sweep(models, dataset, CONFIG, space, trials=2, owner="root")  # the same person, the same sweep
    assert cli.sweep.sweep_id == mine.sweep.sweep_id
    alice = submit_sweep(models, dataset, CONFIG, space, trials=2, owner="alice")
    assert alice.sweep.sweep_id != mine.sweep.sweep_id and alice.sweep.owner == "alice"


def test_presets_and_feedback_photos_are_their_makers_to_change(tmp_path):
    from core.feedback import NotYourFeedback, add_feedback, list_feedback
    from core.settings.config import AugmentConfig, ConfigError
    from core.settings.presets import all_presets, preset_owner, save_preset
    from tests.datafixtures import jpeg_bytes

    data = tmp_path / "data"
    gentle, other = AugmentConfig(horizontal_flip=True), AugmentConfig(horizontal_flip=True, rotation=10.0)
    save_preset(data, "gentle flips", gentle, owner="alice")
    assert preset_owner(data, "gentle flips") == "alice" and "gentle flips" in all_presets(data)
    with pytest.raises(ConfigError, match="alice's preset"):
        save_preset(data, "gentle flips", other, owner="bob")
    assert save_preset(data, "gentle flips", gentle, owner="bob") == "gentle flips"  # the same settings: fine
    assert preset_owner(data, "gentle flips") == "alice"
    save_preset(data, "gentle flips", other, owner="Prof Oak", may_replace_any=True)  # an admin
    assert all_presets(data)["gentle flips"] == other and preset_owner(data, "gentle flips") == "alice"

    dataset = tmp_path / "ds"
    photo = jpeg_bytes(1)
    add_feedback(data, dataset, ["a", "b"], "a", photo, "p.jpg", by="alice")
    with pytest.raises(NotYourFeedback, match="alice already said this photo is a"):
        add_feedback(data, dataset, ["a", "b"], "b", photo, "p.jpg", by="bob")
    add_feedback(data, dataset, ["a", "b"], "b", photo, "p.jpg", by="alice")  # her own: she may change it
    [kept] = list_feedback(data, dataset)
    assert kept.label == "b" and kept.by == "alice"


def test_the_class_view_charges_the_device_only_for_what_it_trained(tmp_path, dataset):
    """Walk: copied runs were charged as device time and a running sweep did not count as running."""
    from types import SimpleNamespace

    from core.sharing import classroom

    store = RunStore(tmp_path / "models")
    first = jobs.submit(store, dataset, CONFIG, owner="alice")
    _finish(store, first.run_id)
    store.set_status(first.run_id, started_at=time.time() - 120, finished_at=time.time())
    copy = jobs.submit(store, dataset, CONFIG, owner="bob")
    sweep = SimpleNamespace(owner="bob", state=JobState.RUNNING)
    people = {p.name: p for p in classroom.people_table(store.list(), {"bob": time.time()}, [sweep])}
    assert people["alice"].device_seconds == pytest.approx(120, abs=2) and people["bob"].device_seconds == 0
    assert people["bob"].running == 1 and people["bob"].active(time.time())
    assert classroom.typical_run_seconds(store.list()) == pytest.approx(120, abs=2)
    assert "one run each for 3 people is about 6 min" in classroom.class_cost(store.list(), 3).lower()
    assert copy.run.reused_from
