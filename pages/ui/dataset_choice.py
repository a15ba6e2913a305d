"""The datasets the pages offer: scanning (cached by the folder's time), the list under the data folder and the
allowed roots, the dataset picked last, and the decoded cache's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core import paths, workspace
from core.data import roots as data_roots
from core.data.datasets import LAYOUT_SPLITS, DatasetError, DatasetIndex, list_datasets, scan_dataset
from pages.ui import auth, common, plain
from pages.ui.common import data_root, shared, shown_path

CURRENT_DATASET = "flora_dataset"  # the dataset the user picked last, shared by the pages


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


def scan(path: str | os.PathLike, typed: str | None = None) -> DatasetIndex:
    """Scan a dataset folder (cached until its folders change), within the data roots and the scan's bounds;
    `typed`: the folder as the person wrote it, which a refusal names (on a shared Flora no server path shows).

    Raises:
        OutsideDataRoots: the folder is not under a data root.
        DatasetError (ScanLimit): not a dataset, or the scan stopped at its bound.
    """
    path = data_roots.check_inside(path, roots(), shown=shown_path, typed=typed if shared() else None)
    index = _scan_cached(str(path), _folder_stamp(path))
    data_roots.check_links(index.root, index.links, roots(), shown=shown_path)
    return index


def typed_folder(typed: str) -> Path:
    """A folder typed on a page: a short path from the data folder (core.data.roots.typed_folder)."""
    return data_roots.typed_folder(typed, data_root())


def linked_out() -> list[str]:
    """The folders in the data folder that are links out of the data roots (`data/linkds -> /elsewhere`): left out
    of every list, which an admin is told so the dataset does not go missing in silence."""
    allowed, root = roots(), data_root()
    try:
        folders = sorted(p for p in root.iterdir() if p.is_symlink() and not p.name.startswith("."))
    except OSError:
        return []
    return [p.name for p in folders if p.is_dir() and not data_roots.inside(p, allowed)]


def roots() -> list[Path]:
    """The folders datasets may come from (core.data.roots), and on a Flora used by one person the dataset folders
    its runs were trained on: it reads them anyway (a run's photos, Label next's copies into its class folders), so
    the Dataset page lists them too (walk 41: a run's folder outside the data folder was labelled into from Explore
    but forgotten by the Dataset page). One rule for reading and writing; `outside_reason` says the same."""
    allowed = data_roots.data_roots(data_root(), shared())
    if not shared():
        allowed += [folder for folder in run_folders() if not data_roots.inside(folder, allowed)]
    return allowed


def base_roots() -> list[Path]:
    """The data roots alone, as the Dataset page names them (without each run's folder)."""
    return data_roots.data_roots(data_root(), shared())


def run_folders() -> list[Path]:
    """The dataset folders this Flora's runs were trained on, resolved, without repeats (read again when a run
    folder comes or goes: a run's dataset never changes)."""
    root = common.models_root()
    try:
        stamp = root.stat().st_mtime_ns
    except OSError:
        return []
    return _run_folders(str(root), stamp)


@st.cache_data(show_spinner=False, max_entries=4)
def _run_folders(models_root: str, stamp: int) -> list[Path]:
    found: list[Path] = []
    for path in sorted({run.dataset_path for run in common.runs() if run.dataset_path}):
        folder = Path(path).expanduser().resolve()
        if folder not in found:
            found.append(folder)
    return found


def drop_folders_outside_roots() -> list[str]:
    """Forget remembered dataset folders outside the data roots; return them (the page says so once)."""
    allowed = roots()
    dropped = [
        f
        for f in workspace.remembered_folders(data_root(), person=auth.current_user().id)
        if not data_roots.inside(f, allowed)
    ]
    last = workspace.last_dataset(data_root(), person=auth.current_user().id)
    if last and not data_roots.inside(last, allowed) and last not in dropped:
        dropped.append(last)
    for folder in dropped:
        workspace.forget_folder(data_root(), folder, person=auth.current_user().id)
    if dropped:
        st.session_state.pop(CURRENT_DATASET, None)
    return dropped


@st.cache_data(show_spinner=False, ttl=10)
def _datasets_cached(root: str, folders: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, list[dict]]:
    """{"usable": the datasets offered, "hidden": those left out for photos that link outside the roots}."""
    roots = [Path(a) for a in allowed]
    # a folder linked in from outside the data roots (data/linkds -> /elsewhere) is neither read nor offered
    indexes = [(index, False) for index in list_datasets(root, keep=lambda folder: data_roots.inside(folder, roots))]
    for folder in folders:
        try:
            indexes.append((scan_dataset(folder), True))
        except DatasetError:
            continue  # a remembered folder that no longer holds a dataset is simply not offered
    usable, hidden = [], []
    for index, outside in indexes:  # one with links out of the data roots is not offered (core.data.roots)
        try:
            data_roots.check_inside(index.root, roots)
        except data_roots.OutsideDataRoots:
            continue
        try:
            data_roots.check_links(index.root, index.links, roots)
        except data_roots.OutsideDataRoots:  # said on Home and the Dataset page (walk 55: it vanished in silence)
            hidden.append({"name": index.name, "path": str(index.root), "links": list(index.links)})
            continue
        usable.append((index, outside))
    offered = [
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
            "task": index.task,
        }
        for index, outside in usable
    ]
    return {"usable": offered, "hidden": hidden}


def _listing(include_folders: bool) -> dict[str, list[dict]]:
    allowed = roots()
    remembered = workspace.remembered_folders(data_root(), person=auth.current_user().id) if include_folders else []
    folders = tuple(f for f in remembered if data_roots.inside(f, allowed))
    return _datasets_cached(str(data_root()), folders, tuple(str(a) for a in allowed))


def hidden_for_links(include_folders: bool = True) -> list[str]:
    """Why each dataset that `datasets()` leaves out for photos linking outside the data roots is not offered (a
    linked import keeps absolute links: a data folder copied or moved, or a root taken away, leaves them pointing
    out): one sentence each, naming the links and the fix (core.data.roots.check_links)."""
    reasons, allowed = [], roots()
    for dataset in _listing(include_folders)["hidden"]:
        try:
            data_roots.check_links(dataset["path"], dataset["links"], allowed, shown=shown_path)
        except data_roots.OutsideDataRoots as e:
            reasons.append(str(e))
    return reasons


def show_hidden_for_links(include_folders: bool = True) -> None:
    """A warning naming the datasets left out for links outside the data roots, and why: to the person who runs a
    one-person Flora, and to admins of a shared one (it names server paths)."""
    if shared() and not auth.current_user().admin:
        return
    reasons = hidden_for_links(include_folders)
    if reasons:
        count, whose = ("1 dataset", "its") if len(reasons) == 1 else (f"{len(reasons)} datasets", "their")
        st.warning(
            f"{count} not shown: {whose} photos are links to files outside the folders Flora may read datasets "
            "from (a linked import keeps its links: a copied or moved data folder leaves them pointing out).\n\n"
            + "\n\n".join(f"- {reason}" for reason in reasons),
            icon=":material/link_off:",
        )


def datasets(include_folders: bool = True) -> list[dict]:
    """Datasets under the data folder, then (unless told not to) folders elsewhere used before.

    Each: name, path, classes, images, split, synthetic, folder (True for one outside data/), fingerprint,
    given_splits (the splits the dataset brings itself: [] when Flora draws them).
    """
    return _listing(include_folders)["usable"]


def dataset_label(dataset: dict) -> str:
    """How a dataset is named in pickers: name, classes, images, and where it lives if outside data/."""
    where = f" · folder {shown_path(dataset['path'])}" if dataset["folder"] else ""
    kinds = "labels, several a photo" if dataset.get("task") == "multilabel" else "classes"
    return f"{dataset['name']} ({dataset['classes']} {kinds}, {dataset['images']} images){where}"


def refresh_datasets() -> None:
    """Forget the cached list of datasets (after an import added one)."""
    _datasets_cached.clear()


def cache_root() -> Path:
    return paths.cache_dir(data_root())


def current_dataset() -> str | None:
    """The dataset picked last (on any page, in this session or an earlier one), else the first one."""
    chosen = st.session_state.get(CURRENT_DATASET) or workspace.last_dataset(data_root(), person=auth.current_user().id)
    if chosen and Path(chosen).is_dir() and data_roots.inside(chosen, roots()):
        return chosen
    found = datasets()
    return found[0]["path"] if found else None


def set_current_dataset(path: str | os.PathLike) -> None:
    """Make `path` the dataset every page starts from, now and after a reload (remembered on disk)."""
    resolved = str(Path(path).expanduser().resolve())
    st.session_state[CURRENT_DATASET] = resolved
    workspace.remember_dataset(data_root(), resolved, person=auth.current_user().id)


def remembered_folders() -> list[str]:
    """Dataset folders outside data/ picked before, most recent first."""
    return workspace.remembered_folders(data_root(), person=auth.current_user().id)


def outside_data_root(path: str | os.PathLike | None) -> bool:
    """True for a dataset folder that is not under the data folder."""
    return bool(path) and not Path(path).resolve().is_relative_to(data_root().resolve())


def outside_reason(path: str | os.PathLike) -> str | None:
    """Why the app does not read or write `path` (a run's photo or dataset: its tasks, Label next's copies) on a
    shared Flora: it resolves outside the data roots (a run made from the command line on a folder elsewhere, a
    link); None when it may. A Flora used by one person reads wherever its runs were made (`roots` holds them)."""
    if not shared() or data_roots.inside(path, roots()):
        return None
    return "outside the data folders this Flora reads"


def try_scan(path: str | os.PathLike | None, typed: str | None = None) -> DatasetIndex | None:
    """Scan, or show why not and return None (`typed`: as scan)."""
    if not path:
        return None
    try:
        return scan(path, typed)
    except (DatasetError, data_roots.OutsideDataRoots) as e:
        st.error(plain.md(e), icon=":material/folder_off:")
        return None
