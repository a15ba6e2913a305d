"""Helpers shared by the pages: workspace paths, cached loaders, small widgets. Never imports Keras.

Page keys are prefixed with the page's name; the few values shared between pages use "flora_".
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import streamlit as st

from core import paths, sharing, workspace
from core.data import roots as data_roots
from core.data.datasets import LAYOUT_SPLITS, DatasetError, DatasetIndex, list_datasets, scan_dataset
from core.data.imaging import ImageError
from core.data.thumbnails import placeholder, thumbnail
from core.device import DeviceInfo, quick_describe
from core.device_check import FRAMEWORK_NAMES, CheckInBackground
from core.paths import IMAGENET_WEIGHTS_FILE, imagenet_weights_file
from core.processes import JobState
from core.runs.record import Run, RunUnreadable
from core.runs.store import RunListing, RunStore
from core.settings.options import describe_config
from core.sweeps import Sweep, SweepStore
from pages.ui import plain

CURRENT_DATASET = "flora_dataset"  # the dataset the user picked last, shared by the pages
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
        from core.device import without_cuda_noise

        with without_cuda_noise():
            pass

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


def sweep_label(sweep: Sweep) -> str:
    """A picker's label: dataset, what it searches, when it began, its id (facts that do not change)."""
    import datetime

    created = datetime.datetime.fromtimestamp(sweep.created).strftime("%b %d %H:%M")
    searched = ", ".join(sweep.spec.get("space", {}))
    return f"{sweep.dataset_name} · {searched} · {created} · {sweep.sweep_id[:6]}"


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


def run_title(run: Run) -> str:
    """What tells a run apart: the name a person gave it, else its settings that differ from the defaults; and
    the label corrections it applied ('+4 corrections'), which a name does not hide."""
    from core.data.corrections import describe

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
    whose = f" · {run.owner}'s" if shared() else ""  # shared: whose run it is, in every picker
    return f"{run.dataset_name} · {run_title(run)}{whose} · {created} · {run.run_id[:6]}"


def random_start_notice(run: Run) -> None:
    """Say plainly what a run trained from random weights can and cannot show."""
    if run.train_config.weights != "none":
        return
    with st.expander(
        ":orange[**This model started from random weights**, not ImageNet: expect low accuracy and confident "
        "mistakes.]",
        icon=":material/casino:",
    ):
        st.markdown(
            "Its ResNet-50 never learnt to see: the head learnt from colour and rough texture only, so accuracy "
            "is far below what transfer learning gives, and many wrong answers come with 95-100% confidence. "
            "With ImageNet weights the same run typically gets most flower photos right. To train from them "
            f"offline, put Keras's `{IMAGENET_WEIGHTS_FILE}` in `{imagenet_weights_file().parent}`, or set "
            "`FLORA_IMAGENET_WEIGHTS_URL` to a mirror, or choose *A weights file* on the Train page."
        )


@st.cache_resource(show_spinner=False, ttl=600)
def _driver_device() -> DeviceInfo:
    """What nvidia-smi says (asked at most every 10 min): a GPU here is the driver's, not yet the framework's."""
    return quick_describe()


DEVICE_CHECK_PENDING = "flora_device_check_pending"  # this session drew a page before the check answered


@st.cache_resource(show_spinner=False)
def device_check() -> CheckInBackground | None:
    """Where a driver is found, whether the framework sees its GPU: checked once per server start, in a process
    of its own (a plain `tensorflow` on a GPU machine would otherwise train on the CPU without a word)."""
    return CheckInBackground() if _driver_device().kind == "gpu" else None


def device_info() -> DeviceInfo:
    """The device training will use, as the sidebar and forms show it: the driver's GPU until the check says
    the framework does not see it, then the CPU."""
    driver = _driver_device()
    checked = device_check().result() if driver.kind == "gpu" else None
    if checked and not checked.get("ok") and checked.get("kind") == "cpu":
        return DeviceInfo(checked["backend"], "cpu", checked["name"], checked.get("count", 1))
    return driver


def device_caption() -> None:
    """The sidebar's device line: the CPU; or the GPU and whether the framework sees it, with the fix if not."""
    info = _driver_device()
    if info.kind != "gpu":
        st.caption(f"Device: {info.label}")
        return
    framework = FRAMEWORK_NAMES.get(info.backend, info.backend)
    checked = device_check().result()
    if checked is None:
        st.session_state[DEVICE_CHECK_PENDING] = True
        st.caption(f"Device: {info.name} (checking that {framework} sees it…)")
        return
    if st.session_state.pop(DEVICE_CHECK_PENDING, False):
        st.rerun()  # the page was drawn with the driver's GPU: draw it again with what the check found
    if checked.get("ok"):
        st.caption(f"Device: {checked['sentence']}")
    else:
        st.warning(
            f"**Training will run on the CPU.** {plain.md(checked['sentence'])}"
            + (f"  \nFix: `{checked['fix']}`" if checked.get("fix") else ""),
            icon=":material/memory:",
        )


def state_badge(run: Run | Sweep) -> None:
    """A run's or a sweep's state as a coloured badge; "stopping" from the moment a stop is asked for."""
    if run.stopping:
        st.badge("stopping…", color="orange", icon=":material/hourglass_top:")
        return
    color, icon = STATE_BADGES.get(run.state, ("gray", None))
    st.badge(str(run.state), color=color, icon=icon)


def _folder_stamp(path: Path) -> float:
    """Changes when class folders gain or lose files (cheap: folder mtimes only)."""
    try:
        stamps = [path.stat().st_mtime]
        stamps += [child.stat().st_mtime for child in path.iterdir() if child.is_dir()]
        return max(stamps)
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=32)
def _scan_cached(path: str, stamp: float) -> DatasetIndex:
    return scan_dataset(path, max_files=data_roots.SCAN_MAX_FILES, max_seconds=data_roots.SCAN_MAX_SECONDS)


def scan(path: str | os.PathLike) -> DatasetIndex:
    """Scan a dataset folder (cached until its folders change), within the data roots and the scan's bounds.

    Raises:
        OutsideDataRoots: the folder is not under a data root.
        DatasetError (ScanLimit): not a dataset, or the scan stopped at its bound.
    """
    path = data_roots.check_inside(path, roots())
    return _scan_cached(str(path), _folder_stamp(path))


def listen_address() -> str | None:
    """The address the app server listens on (`server.address`; None: Streamlit's default, every interface)."""
    return st.get_option("server.address") or None


def shared() -> bool:
    """Whether this Flora is shared (core.sharing): listening beyond loopback, or FLORA_SHARED=1."""
    return sharing.is_shared(listen_address() or "0.0.0.0")


def roots() -> list[Path]:
    """The folders datasets may come from (core.data.roots)."""
    return data_roots.data_roots(data_root(), shared())


def drop_folders_outside_roots() -> list[str]:
    """Forget remembered dataset folders outside the data roots; return them (the page says so once)."""
    allowed = roots()
    dropped = [f for f in workspace.remembered_folders(data_root()) if not data_roots.inside(f, allowed)]
    last = workspace.last_dataset(data_root())
    if last and not data_roots.inside(last, allowed) and last not in dropped:
        dropped.append(last)
    for folder in dropped:
        workspace.forget_folder(data_root(), folder)
    if dropped:
        st.session_state.pop(CURRENT_DATASET, None)
    return dropped


@st.cache_data(show_spinner=False, ttl=10)
def _datasets_cached(root: str, folders: tuple[str, ...]) -> list[dict]:
    indexes = [(index, False) for index in list_datasets(root)]
    for folder in folders:
        try:
            indexes.append((scan_dataset(folder), True))
        except DatasetError:
            continue  # a remembered folder that no longer holds a dataset is simply not offered
    return [
        {
            "name": index.name,
            "path": str(index.root),
            "classes": len(index.classes),
            "images": len(index.entries),
            "split": LAYOUT_SPLITS[index.layout],
            "synthetic": bool(index.meta.get("synthetic")),
            "folder": outside,
            "fingerprint": index.fingerprint,
            "given_splits": sorted({e.split for e in index.entries if e.split}) if index.has_split else [],
        }
        for index, outside in indexes
    ]


def datasets(include_folders: bool = True) -> list[dict]:
    """Datasets under the data folder, then (unless told not to) folders elsewhere used before.

    Each: name, path, classes, images, split, synthetic, folder (True for one outside data/), fingerprint,
    given_splits (the splits the dataset brings itself: [] when Flora draws them).
    """
    allowed = roots()
    remembered = workspace.remembered_folders(data_root()) if include_folders else []
    folders = tuple(f for f in remembered if data_roots.inside(f, allowed))
    return _datasets_cached(str(data_root()), folders)


def dataset_label(dataset: dict) -> str:
    """How a dataset is named in pickers: name, classes, images, and where it lives if outside data/."""
    where = f" · folder {dataset['path']}" if dataset["folder"] else ""
    return f"{dataset['name']} ({dataset['classes']} classes, {dataset['images']} images){where}"


def refresh_datasets() -> None:
    """Forget the cached list of datasets (after an import added one)."""
    _datasets_cached.clear()


def cache_root() -> Path:
    return paths.cache_dir(data_root())


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
    from core.importers import BYTE_STAGES

    if stage in BYTE_STAGES:
        return f"{stage} {done / 1e6:.1f} / {total / 1e6:.1f} MB" if total else f"{stage} {done / 1e6:.1f} MB"
    return f"{stage} {done} / {total}" if total else stage


def current_dataset() -> str | None:
    """The dataset picked last (on any page, in this session or an earlier one), else the first one."""
    chosen = st.session_state.get(CURRENT_DATASET) or workspace.last_dataset(data_root())
    if chosen and Path(chosen).is_dir() and data_roots.inside(chosen, roots()):
        return chosen
    found = datasets()
    return found[0]["path"] if found else None


def set_current_dataset(path: str | os.PathLike) -> None:
    """Make `path` the dataset every page starts from, now and after a reload (remembered on disk)."""
    resolved = str(Path(path).expanduser().resolve())
    st.session_state[CURRENT_DATASET] = resolved
    workspace.remember_dataset(data_root(), resolved)


def remembered_folders() -> list[str]:
    """Dataset folders outside data/ picked before, most recent first."""
    return workspace.remembered_folders(data_root())


def outside_data_root(path: str | os.PathLike | None) -> bool:
    """True for a dataset folder that is not under the data folder."""
    return bool(path) and not Path(path).resolve().is_relative_to(data_root().resolve())


def try_scan(path: str | None) -> DatasetIndex | None:
    """Scan, or show why not and return None."""
    if not path:
        return None
    try:
        return scan(path)
    except (DatasetError, data_roots.OutsideDataRoots) as e:
        st.error(plain.md(e), icon=":material/folder_off:")
        return None


@st.cache_data(show_spinner=False, max_entries=2048)
def _thumbnail_cached(path: str, size: int, mtime: float) -> np.ndarray:
    return thumbnail(path, size)


def thumb(path: str | os.PathLike, size: int = 160) -> tuple[np.ndarray, str | None]:
    """(image, error) for a gallery: a placeholder and the reason when the file cannot be read."""
    try:
        mtime = os.stat(path).st_mtime
        return _thumbnail_cached(str(path), size, mtime), None
    except (ImageError, OSError) as e:
        return placeholder(size), str(e) if isinstance(e, ImageError) else "file not found"


def gallery(
    items: list[tuple[str | os.PathLike, str]], size: int = 160, columns: int | str = "auto", key: str | None = None
) -> None:
    """Thumbnails with captions in a responsive grid (in a container with `key`, when given)."""
    if not items:
        return
    grid = (
        st.container(key=key).grid(columns, min_column_width=size + 16)
        if key
        else st.grid(columns, min_column_width=size + 16)
    )
    for path, caption in items:
        image, error = thumb(path, size)
        with grid:
            st.image(image, caption=f"{caption} — {error}" if error else caption, width=size)
