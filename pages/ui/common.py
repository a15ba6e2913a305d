"""What every page reads: the workspace, the run store and the sweeps (listed once per server), run titles and
badges, the job picker, and whether Flora is shared. Never imports Keras. Datasets: dataset_choice; photos:
photo_gallery; the device line: device_status.

Page keys are prefixed with the page's name; the few values shared between pages use "flora_".
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import streamlit as st

from core import paths, sharing
from core.data.corrections import describe
from core.device import without_cuda_noise
from core.importers import BYTE_STAGES
from core.paths import IMAGENET_WEIGHTS_FILE, imagenet_weights_file
from core.processes import JobState
from core.runs.record import Run, RunUnreadable
from core.runs.store import RunListing, RunStore
from core.settings.options import describe_config
from core.sweeps import Sweep, SweepStore
from pages.ui import plain

STATE_BADGES = {
    JobState.QUEUED: ("gray", ":material/hourglass_empty:"),
    JobState.RUNNING: ("blue", ":material/directions_run:"),
    JobState.DONE: ("green", ":material/check_circle:"),
    JobState.FAILED: ("red", ":material/error:"),
    JobState.STOPPED: ("orange", ":material/stop_circle:"),
}


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Import Keras and scikit-learn in the background once per server start.

    The first visit to Augmentation or Predict otherwise waits ~6 s for Keras (TensorFlow) and the
    first Evaluate ~2 s for scikit-learn, with nothing on screen; by the time a person gets there
    they are loaded.
    """

    def load() -> None:
        with without_cuda_noise():
            import core.network.model  # heavy: Keras and its framework, the point of warming up
            import core.results.evaluation.metrics  # noqa: F401  # heavy: scikit-learn, for the first Evaluate

    thread = threading.Thread(target=load, name="flora-warm-up", daemon=True)
    thread.start()
    return thread


def data_root() -> Path:
    return paths.data_dir()


def models_root() -> Path:
    return paths.models_dir()


def store() -> RunStore:
    return RunStore(models_root())


@st.cache_resource(show_spinner=False, max_entries=4)
def _listing(root: str) -> RunListing:
    return RunListing(RunStore(root))


def runs() -> list[Run]:
    """All runs, newest first, with dead processes marked failed.

    One listing per store for the whole server (no copy per call): a poll stats each run folder and reads
    again only the runs whose folder changed (the one training, as it writes its status).
    """
    run_store = store()
    listed, _ = _listing(str(run_store.root)).scan()
    return [run_store.refresh(dataclasses.replace(run)) if run.active else run for run in listed]


def unreadable_runs() -> list[RunUnreadable]:
    """Run folders whose config or status cannot be read (listed with why, never a traceback)."""
    return _listing(str(store().root)).scan()[1]


def active_runs() -> list[Run]:
    return [run for run in runs() if run.active]


def sweep_store() -> SweepStore:
    return SweepStore(models_root())


@st.cache_data(show_spinner=False, max_entries=4)
def _sweeps_as_of(root: str, stamp: tuple[int, float]) -> list[Sweep]:
    return SweepStore(root).list()


def sweeps() -> list[Sweep]:
    """All sweeps, newest first (read again only when one is created or writes its status)."""
    store = sweep_store()
    listed = _sweeps_as_of(str(store.models_root), store.stamp())
    return [store.refresh(sweep) if sweep.active else sweep for sweep in listed]


def active_sweeps() -> list[Sweep]:
    return [sweep for sweep in sweeps() if sweep.active]


def work_owners() -> set[str]:
    """Everyone who owns a run or a sweep here (the sign-in keeps names that own work outside it unclaimable)."""
    return {run.owner for run in runs()} | {sweep.owner for sweep in sweeps()}


def sweep_label(sweep: Sweep) -> str:
    """A picker's label: dataset, what it searches, when it began, its id (facts that do not change)."""
    import datetime

    created = datetime.datetime.fromtimestamp(sweep.created).strftime("%b %d %H:%M")
    searched = ", ".join(sweep.spec.get("space", {}))
    whose = f" · {sharing.people.layer_of(sweep.owner)}'s" if shared() else ""
    return f"{sweep.dataset_name} · {searched} · {created} · {sweep.sweep_id[:6]}{whose}"


def job_picker(label: str, jobs: list, ids: list[str], labels: dict[str, str], key: str) -> str:
    """The picker of a live list of jobs (runs, sweeps), bound to the URL under `key`: it keeps its pick while
    that job is listed, else takes the first active one (else the newest). Returns the picked id."""
    if st.session_state.get(key) not in ids:
        active = [job_id for job, job_id in zip(jobs, ids, strict=True) if job.active]
        st.session_state[key] = (active or ids)[0]
    return st.selectbox(label, ids, format_func=labels.get, key=key, bind="query-params")


def finished_runs() -> list[Run]:
    """Runs with a saved model and a test evaluation (done, or stopped after an epoch)."""
    return [run for run in runs() if run.evaluated]


def evaluable_runs() -> list[Run]:
    """`finished_runs` and the multi-label runs with a model and a test evaluation (stored, or to make from their
    analysis arrays): what the Evaluate page lists."""
    return [
        run
        for run in runs()
        if run.evaluated
        or (run.multilabel and run.has_model and (run.has_multilabel_evaluation or run.has_analysis) and not run.active)
    ]


TEST_ACCURACY_HELP = "a single-label run's: the share of its test photos whose top answer is their class"
TEST_MAP_HELP = (
    "a multi-label run's: its mean average precision on the test photos, how well each label's scores rank the "
    "photos having it above the others, averaged over the labels (a random scorer gets about each label's share of "
    "photos; Evaluate gives the run's own figure)"
)


def run_title(run: Run) -> str:
    """What tells a run apart: the name a person gave it, else its settings that differ from the defaults; and
    the label corrections it applied ('+4 corrections'), which a name does not hide."""
    title = run.name or describe_config(run.train_config)
    corrections = describe(run.corrections)
    return f"{title} · {corrections}" if corrections and corrections not in title else title


def run_label(run: Run) -> str:
    """A picker's label: dataset, what tells the run apart, when it started, its id.

    Made of facts that do not change while the run trains (the state is shown beside it):
    Streamlit keeps showing an option's old text when only its text changes.
    """
    import datetime

    created = datetime.datetime.fromtimestamp(run.created).strftime("%b %d %H:%M")
    whose = f" · {sharing.people.layer_of(run.owner)}'s" if shared() else ""  # shared: whose run, in every picker
    return f"{run.dataset_name} · {run_title(run)}{whose} · {created} · {run.run_id[:6]}"


def random_start_notice(run: Run) -> None:
    """Say plainly what a run trained from random weights can and cannot show."""
    if run.train_config.weights != "none":
        return
    figure = "mAP" if run.multilabel else "accuracy"
    low = "a low mAP" if run.multilabel else "low accuracy"
    with st.expander(
        f":orange[**This model started from random weights**, not ImageNet: expect {low} and confident mistakes.]",
        icon=":material/casino:",
    ):
        st.markdown(
            f"Its ResNet-50 never learnt to see: the head learnt from colour and rough texture only, so its {figure} "
            "is far below what transfer learning gives, and many wrong answers come with 95-100% confidence. "
            "With ImageNet weights the backbone starts from features learnt on over a million photos, and the same "
            "run usually does far better. To train from them "
            f"offline, put Keras's `{IMAGENET_WEIGHTS_FILE}` in {keras_cache_words()}, or set "
            "`FLORA_IMAGENET_WEIGHTS_URL` to a mirror, or choose *A weights file* on the Train page."
        )


def keras_cache_words() -> str:
    """Where Keras keeps its downloads, as a page says it: the folder itself, or on a shared Flora (whose
    server folders are not shown) words its admin knows."""
    if shared():
        return "Keras's cache on the server (whoever runs this Flora: `~/.keras/models`, or `$KERAS_HOME/models`)"
    return plain.code(imagenet_weights_file().parent)


def state_badge(run: Run | Sweep) -> None:
    """A run's or a sweep's state as a coloured badge; "stopping" from the moment a stop is asked for."""
    if run.stopping:
        st.badge("stopping…", color="orange", icon=":material/hourglass_top:")
        return
    color, icon = STATE_BADGES.get(run.state, ("gray", None))
    st.badge(str(run.state), color=color, icon=icon)


def listen_address() -> str | None:
    """The address the app server listens on (`server.address`; None: Streamlit's default, every interface)."""
    return st.get_option("server.address") or None


def shown_path(path: str | os.PathLike, argument: bool = False) -> str:
    """A server path as a page shows it: whole on a Flora used by one person, from the data folder on, on a shared
    one (core.paths.relative_to_data); `argument`: a dataset as the command line takes it (its name in the data
    folder)."""
    return paths.relative_to_data(path, data_root(), named=not argument) if shared() else str(path)


def shown_log(text: str) -> str:
    """A log's text as a page shows it: whole on a Flora used by one person; on a shared one, no server path (paths
    in the data folder from it on, others cut to their last part: core.paths.hide_server_paths)."""
    return paths.hide_server_paths(text, data_root()) if text and shared() else text


def shared() -> bool:
    """Whether this Flora is shared (core.sharing): listening beyond loopback, or FLORA_SHARED=1."""
    return sharing.is_shared(listen_address() or "0.0.0.0")


class ThrottledProgress:
    """An st.progress bar fed by a core progress callback (stage, done, total), redrawn at most 5x a second."""

    def __init__(self, text: str):
        self.bar = st.progress(0.0, text=text)
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if now - self.last < 0.2 and not (total and done >= total):
            return
        self.last = now
        self.bar.progress(min(1.0, done / total) if total else 0.0, text=progress_text(stage, done, total))


def progress_text(stage: str, done: int, total: int) -> str:
    """'downloading 12.0 / 228.8 MB', 'hashing 1200 / 4317'."""
    if stage in BYTE_STAGES:
        return f"{stage} {done / 1e6:.1f} / {total / 1e6:.1f} MB" if total else f"{stage} {done / 1e6:.1f} MB"
    return f"{stage} {done} / {total}" if total else stage
