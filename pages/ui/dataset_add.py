"""The Dataset page's "Add a dataset" panel: downloads (in the background), zip, Oxford 102, demo."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import dataset_tasks
from core.importers import (
    KNOWN_SOURCES,
    DownloadError,
    ImportCancelled,
    ImportRejected,
    ImportResult,
    get_dataset,
    import_oxford102,
    import_zip,
)
from core.processes import RunState
from pages.ui import common, plain


def open_dataset(path: str) -> None:
    """Button callback: show the dataset just added."""
    common.refresh_datasets()
    common.set_current_dataset(path)
    st.session_state["dataset_source"] = "In the data folder"
    st.session_state["dataset_pick"] = str(Path(path).resolve())


def show_result(result: ImportResult, key: str) -> None:
    common.refresh_datasets()
    verb = "is already here" if result.already_present else "is ready"
    st.success(
        f"**{plain.md(result.name)}** {verb}: {result.classes} classes, {result.images} images.",
        icon=":material/check:",
    )
    for note in result.notes:
        st.caption(note)
    if result.skipped:
        with st.expander(f"{len(result.skipped)} file(s) not imported"):
            st.dataframe(result.skipped, hide_index=True)
    st.button(
        "Open it",
        icon=":material/arrow_forward:",
        key=f"dataset_open_{key}",
        on_click=open_dataset,
        args=(str(result.path),),
    )


def render() -> None:
    download_tab, zip_tab, oxford_tab, demo_tab = st.tabs(
        ["Download", "Upload a zip", "Oxford 102 from a folder", "Demo set (offline)"]
    )
    with download_tab:
        st.caption("Downloads run in the background: you can keep using Flora, and an interrupted download resumes.")
        for key in ("tf_flowers", "oxford102"):
            download_card(key)
    with zip_tab:
        zip_import()
    with oxford_tab:
        oxford_import()
    with demo_tab:
        demo()


def download_card(key: str) -> None:
    source = KNOWN_SOURCES[key]
    present = (common.data_root() / key).is_dir()
    latest = next((t for t in dataset_tasks.list_tasks(common.data_root()) if t.key == key), None)
    with st.container(border=True):
        st.markdown(f"**{source.title}** · {source.size_mb:.0f} MB download")
        st.caption(f"{source.description} Licence: {source.license}.")
        if latest is not None and latest.active:
            fetch_progress(latest.directory)
        elif present:
            st.caption(f":material/check_circle: In `{common.data_root() / key}`.")
            st.button(
                "Open it",
                key=f"dataset_open_present_{key}",
                on_click=open_dataset,
                args=(str(common.data_root() / key),),
            )
        else:
            if latest is not None and latest.state == RunState.FAILED:
                st.error(f"The last attempt failed: {latest.status.error}", icon=":material/cloud_off:")
            elif latest is not None and latest.state == RunState.STOPPED:
                st.info("Stopped; getting it again resumes the download.", icon=":material/pause:")
            if st.button(f"Get {key}", icon=":material/download:", key=f"dataset_get_{key}"):
                dataset_tasks.launch_fetch(key, common.data_root())
                st.rerun()


@st.fragment(run_every=1.0)
def fetch_progress(directory: Path) -> None:
    task = dataset_tasks.get_task(directory)
    if not task.active:
        common.refresh_datasets()
        st.rerun(scope="app")  # finished: redraw the card as done, failed or stopped
    done, total = task.status.stage_progress or (0, 0)
    text = common.progress_text(task.status.stage or "starting", done, total)
    st.progress(task.fraction or 0.0, text=text)
    if st.button("Stop", icon=":material/stop:", key=f"dataset_stop_{task.task_id}"):
        dataset_tasks.stop(task)


def zip_import() -> None:
    st.caption(
        "A zip of class folders (`<class>/<image>`, at the top or under one folder), or of `train/val/test` "
        "folders. Archives with paths escaping the folder, links, or over the size caps are refused; files that "
        "are not images are skipped and listed."
    )
    upload = st.file_uploader("Zip file", type=["zip"], key="dataset_zip")
    default = Path(upload.name).stem.replace(" ", "_") if upload is not None else ""
    name = st.text_input("Dataset name", value=default, key=f"dataset_zip_name_{default}")
    if st.button(
        "Import the zip", icon=":material/unarchive:", disabled=upload is None or not name, key="dataset_zip_go"
    ):
        progress = common.ThrottledProgress("unpacking")
        try:
            result = import_zip(upload, name, common.data_root(), progress=progress)
        except (ImportRejected, ImportCancelled, OSError, ValueError) as e:
            progress.bar.empty()
            st.error(f"Not imported: {e}", icon=":material/block:")
            return
        progress.bar.empty()
        show_result(result, "zip")


def oxford_import() -> None:
    st.caption(
        "If you already have Oxford 102 as published (a folder with `jpg/` or `102flowers.tgz`, plus "
        "`imagelabels.mat` and `setid.mat`), import it here: 102 named classes and the official "
        "1,020 / 1,020 / 6,149 split."
    )
    source = st.text_input("Folder", key="dataset_oxford_src", placeholder="/path/to/oxford102").strip()
    name = st.text_input("Dataset name", value="oxford102", key="dataset_oxford_name")
    if st.button("Import Oxford 102", icon=":material/local_florist:", disabled=not source, key="dataset_oxford_go"):
        progress = common.ThrottledProgress("copying")
        try:
            result = import_oxford102(source, common.data_root(), name=name, progress=progress)
        except (ImportRejected, ImportCancelled, OSError, ValueError) as e:
            progress.bar.empty()
            st.error(f"Not imported: {e}", icon=":material/block:")
            return
        progress.bar.empty()
        show_result(result, "oxford")


def demo() -> None:
    st.caption(
        "A small **synthetic** set drawn on this machine (no internet needed): five kinds of drawn flowers, "
        "enough to try every page. It is not real photos."
    )
    if st.button("Create the demo set", icon=":material/science:", key="dataset_demo_go"):
        progress = common.ThrottledProgress("drawing")
        try:
            result = get_dataset("demo", common.data_root(), progress=progress)
        except (ImportRejected, DownloadError, OSError) as e:
            progress.bar.empty()
            st.error(str(e))
            return
        progress.bar.empty()
        show_result(result, "demo")
