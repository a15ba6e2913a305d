"""The Dataset page's "Add a dataset" panel: downloads (in the background), zip, a table (one label or several a
photo), Oxford 102, demo."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.data.datasets import record_added_by
from core.data.roots import OutsideDataRoots, check_source
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
from core.importers import tasks as dataset_tasks
from core.importers.csv_labels import (
    LABEL_COLUMNS,
    PATH_COLUMNS,
    SPLIT_COLUMNS,
    import_csv,
    pick_column,
    read_table,
    suggest_name,
)
from core.importers.multilabel_table import MULTI_COLUMNS, detect, labels_of_rows
from core.processes import JobState
from pages.ui import auth, common, dataset_choice, plain


def open_dataset(path: str) -> None:
    """Button callback: show the dataset just added."""
    dataset_choice.refresh_datasets()
    dataset_choice.set_current_dataset(path)
    st.session_state["dataset_source"] = "In the data folder"
    st.session_state["dataset_pick"] = str(Path(path).resolve())


def show_result(result: ImportResult, key: str) -> None:
    """Say what was imported and make it the current dataset (the Train page and the picker start from it)."""
    dataset_choice.refresh_datasets()
    dataset_choice.set_current_dataset(result.path)
    if not result.already_present:
        record_added_by(result.path, auth.current_user().id)
    verb = "is already here" if result.already_present else "is ready"
    kinds = "labels (several a photo)" if result.task == "multilabel" else "classes"
    st.success(
        f"**{plain.md(result.name)}** {verb}: {result.classes} {kinds}, {result.images} images. "
        "It is now the current dataset: the Train page starts from it.",
        icon=":material/check:",
    )
    for note in result.notes:
        st.caption(plain.md(note))
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
    download_tab, zip_tab, table_tab, oxford_tab, demo_tab = st.tabs(
        ["Download", "Upload a zip", "Images + a table of labels", "Oxford 102 from a folder", "Demo set (offline)"]
    )
    with table_tab:
        table_import()
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
            st.caption(f":material/check_circle: In {plain.code(common.shown_path(common.data_root() / key))}.")
            st.button(
                "Open it",
                key=f"dataset_open_present_{key}",
                on_click=open_dataset,
                args=(str(common.data_root() / key),),
            )
        else:
            if latest is not None and latest.state == JobState.FAILED:
                st.error(f"The last attempt failed: {plain.md(latest.status.error)}", icon=":material/cloud_off:")
            elif latest is not None and latest.state == JobState.STOPPED:
                st.info("Stopped; getting it again resumes the download.", icon=":material/pause:")
            if not auth.current_user().admin:  # shared: hundreds of MB on the server's disk and line
                st.caption(
                    f":material/lock: On this shared Flora downloads are for whoever runs it: ask an admin to get "
                    f"{key} (it is then everyone's)."
                )
            elif st.button(f"Get {key}", icon=":material/download:", key=f"dataset_get_{key}"):
                dataset_tasks.launch_fetch(key, common.data_root(), owner=auth.current_user().id)
                st.rerun()


@st.fragment(run_every=1.0)
def fetch_progress(directory: Path) -> None:
    task = dataset_tasks.get_task(directory)
    if not task.active:
        dataset_choice.refresh_datasets()
        st.rerun(scope="app")  # finished: redraw the card as done, failed or stopped
    done, total = task.status.stage_progress or (0, 0)
    text = common.progress_text(task.status.stage or "starting", done, total)
    st.progress(task.fraction or 0.0, text=text)
    if auth.can_change(task) and st.button("Stop", icon=":material/stop:", key=f"dataset_stop_{task.task_id}"):
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
            st.error(f"Not imported: {plain.md(e)}", icon=":material/block:")
            return
        progress.bar.empty()
        show_result(result, "zip")


NO_LABEL_COLUMN = "(none: one 0/1 column per label)"
TASK_CHOICES = {"Detect": None, "One": False, "Several": True}


def multilabel_preview(rows: list[dict[str, str]], shape, path_col: str) -> None:
    """What a multi-label import will make of the table: how it reads it, its labels, photos with none, bad rows."""
    read, bad = labels_of_rows(rows, shape, path_col)
    counts: dict[str, int] = {}
    for _, _, labels in read:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    top = sorted(counts.items(), key=lambda item: -item[1])
    without = sum(1 for _, _, labels in read if not labels)
    st.info(f"**Several labels a photo** (multi-label): {plain.md(shape.why)}.", icon=":material/label:")
    st.caption(
        f"{len(counts)} labels: "
        + ", ".join(f"{plain.md(name)} {n}" for name, n in top[:12])
        + (f" … and {len(top) - 12} more" if len(top) > 12 else "")
        + f". {without} photo(s) with no label: kept, with an empty list."
    )
    if bad:
        st.warning(
            f"{len(bad)} malformed row(s), which stop the import: " + "; ".join(plain.md(b) for b in bad[:5]),
            icon=":material/warning:",
        )


def source_folder(typed: str) -> Path | None:
    """The folder typed for an import, checked as it is typed: inside the data roots (else why not, naming the
    allowed folders) and there. None until it is both."""
    if not typed:
        return None
    try:
        folder = check_source(typed, dataset_choice.roots(), base=common.data_root(), shown=common.shown_path)
    except OutsideDataRoots as e:
        st.error(plain.md(e), icon=":material/block:")
        return None
    if not folder.is_dir():
        st.error(f"{plain.md(typed)} is not a folder: nothing is there, or a file is.", icon=":material/block:")
        return None
    return folder


def table_import() -> None:
    """A folder of images on this machine and a CSV (or Parquet) of image, label[, split]: preview, then import."""
    import tempfile

    st.caption(
        "Kaggle-style sets: a folder of images and a table naming each image's label (`id,breed`; "
        "`image,label,split`; ids with or without the extension; paths in sub-folders). The photos are linked, "
        "not copied: keep them where they are."
    )
    st.caption(
        "Several labels a photo (multi-label) work too, in either form: a column of label lists (`image_name,tags` "
        "with rows like `p1,clear primary water`, the labels separated by a space, |, comma or ;), or one 0/1 "
        "column per label (`image,cat,dog,person` with rows like `p1,1,0,1`). An empty list or a row of zeros is a "
        "photo with no label, kept. The table's form is detected, and said before anything is imported."
    )
    upload = st.file_uploader("The table (CSV or Parquet)", type=["csv", "tsv", "txt", "parquet"], key="dataset_table")
    images = st.text_input(
        "Folder of the images (on this machine)", key="dataset_table_images", placeholder="/path/to/train_images"
    ).strip()
    folder = source_folder(images)  # said as soon as it is typed, not after Import (walk 54)
    if upload is None:
        return
    suffix = Path(upload.name).suffix or ".csv"
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False, dir=common.data_root()) as handle:
        handle.write(upload.getvalue())
        table_path = Path(handle.name)
    try:
        try:
            rows, columns, notes = read_table(table_path)
        except ImportRejected as e:
            st.error(f"Not readable: {plain.md(e)}", icon=":material/block:")
            return
        for note in notes:
            st.caption(plain.md(note))
        st.dataframe(rows[:5], hide_index=True)
        st.caption(f"{len(rows)} rows; the first 5 above.")
        defaults = {
            "image": pick_column(columns, None, PATH_COLUMNS, "image"),
            "label": pick_column(columns, None, LABEL_COLUMNS, "label")
            or pick_column(columns, None, MULTI_COLUMNS, "labels"),
            "split": pick_column(columns, None, SPLIT_COLUMNS, "split"),
        }
        cols = st.columns(3)
        path_col = cols[0].selectbox(
            "Image column", columns, index=columns.index(defaults["image"]) if defaults["image"] else 0,
            key="dataset_table_path_column",
        )  # fmt: skip
        label_options = [*columns, NO_LABEL_COLUMN]
        label_choice = cols[1].selectbox(
            "Label column", label_options,
            index=label_options.index(defaults["label"] or NO_LABEL_COLUMN), key="dataset_table_label_column",
        )  # fmt: skip
        label_col = None if label_choice == NO_LABEL_COLUMN else label_choice
        split_options = ["(none: Flora draws the split)", *columns]
        split_choice = cols[2].selectbox(
            "Split column", split_options, index=split_options.index(defaults["split"]) if defaults["split"] else 0,
            key="dataset_table_split_column",
        )  # fmt: skip
        split_col = None if split_choice == split_options[0] else split_choice
        task = st.segmented_control(
            "Labels per photo", list(TASK_CHOICES), default="Detect", key="dataset_table_task",
            help="One label a photo (a class), or any number (a beach with a dog and a person): a column of label "
            "lists separated by a space, |, comma or ;, or one 0/1 column per label. Detect reads the table.",
        ) or "Detect"  # fmt: skip
        try:
            shape = detect(rows, columns, path_col, label_col, split_col, TASK_CHOICES[task])
        except ImportRejected as e:
            st.error(plain.md(e), icon=":material/block:")
            return
        if shape is not None:
            multilabel_preview(rows, shape, path_col)
        elif label_col is None:
            st.error("Pick the label column (or Several, for one 0/1 column per label).", icon=":material/block:")
            return
        else:
            counts: dict[str, int] = {}
            for row in rows:
                counts[row.get(label_col, "")] = counts.get(row.get(label_col, ""), 0) + 1
            top = sorted(counts.items(), key=lambda item: -item[1])
            st.caption(
                f"{len(counts)} classes by the label column: "
                + ", ".join(f"{plain.md(name or '(empty)')} {n}" for name, n in top[:12])
                + (f" … and {len(top) - 12} more" if len(top) > 12 else "")
            )
        suggested = suggest_name(upload.name, images)
        name = st.text_input("Dataset name", value=suggested, key=f"dataset_table_name_{suggested}")
        skip = st.toggle("Import the rows whose image is there, and list the rest", key="dataset_table_skip")
        if not st.button(
            "Import", icon=":material/table_view:", disabled=not (folder and name), key="dataset_table_go"
        ):
            return
        try:
            result = import_csv(
                table_path,
                folder,
                name,
                common.data_root(),
                path_col,
                label_col,
                split_col,
                skip,
                multi_label=shape is not None,
                delimiter=shape.delimiter if shape is not None else None,
                label_columns=shape.columns if shape is not None and shape.kind == "columns" else None,
            )
        except (ImportRejected, OutsideDataRoots, OSError, ValueError) as e:
            st.error(f"Not imported: {plain.md(e)}", icon=":material/block:")
            return
        show_result(result, "table")
    finally:
        table_path.unlink(missing_ok=True)


def oxford_import() -> None:
    st.caption(
        "If you already have Oxford 102 as published (a folder with `jpg/` or `102flowers.tgz`, plus "
        "`imagelabels.mat` and `setid.mat`), import it here: 102 named classes and the official "
        "1,020 / 1,020 / 6,149 split. The folder must be inside the data roots (a name alone is a folder in the "
        "data folder)."
    )
    source = st.text_input("Folder", key="dataset_oxford_src", placeholder="oxford102-published").strip()
    folder = source_folder(source)
    name = st.text_input("Dataset name", value="oxford102", key="dataset_oxford_name")
    if st.button("Import Oxford 102", icon=":material/local_florist:", disabled=not folder, key="dataset_oxford_go"):
        progress = common.ThrottledProgress("copying")
        try:
            result = import_oxford102(
                source, common.data_root(), name=name, progress=progress, roots=dataset_choice.roots()
            )
        except (ImportRejected, ImportCancelled, OSError, ValueError) as e:  # OutsideDataRoots is a ValueError
            progress.bar.empty()
            st.error(f"Not imported: {plain.md(e)}", icon=":material/block:")
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
            st.error(plain.md(e))
            return
        progress.bar.empty()
        show_result(result, "demo")
