"""Home: what Flora is, what is on disk, the device, and where to start."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.tasks import MULTI_LABEL
from core.importers.sources import KNOWN_SOURCES
from pages.ui import common, dataset_choice, device_status, plain, steps
from pages.ui.navigation import page_file

st.title(":material/local_florist: Flora")
st.markdown(
    "Transfer learning on your photos, every step in view: browse a dataset and its augmentations, "
    "train a ResNet-50 classifier in the background with live curves, then find out which images "
    "were confused with which, and classify a photo of your own."
)

datasets = dataset_choice.datasets()
runs = common.runs()
finished = [run for run in runs if run.has_model]
device = device_status.device_info()

left, middle, right, last = st.columns(4)
left.metric("Datasets", len(datasets))
middle.metric("Training runs", len(runs))
right.metric("Finished models", len(finished))
last.metric("Device", device.kind.upper(), help=device.label, border=False)
st.caption(f"Training runs on **{device.label}**.")

st.subheader("Start here")
steps = [
    (
        page_file("dataset"),
        "1 · Pick or add a dataset",
        "A folder of class folders, a zip, tf_flowers, Oxford 102 or the demo set; check its health.",
        bool(datasets),
    ),
    (
        page_file("augmentation"),
        "2 · Preview augmentation",
        "See what rotation, zoom, flips and colour do to a photo.",
        None,
    ),
    (
        page_file("train"),
        "3 · Train",
        "Launch a run in the background; watch loss and accuracy (a multi-label run's mAP) live.",
        bool(runs),
    ),
    (
        page_file("evaluate"),
        "4 · Evaluate",
        "Per-class metrics and a confusion matrix that opens the mistakes; per-label AP and thresholds for a "
        "multi-label run.",
        bool(finished),
    ),
    (
        page_file("predict"),
        "5 · Predict",
        "Upload or take a photo: which of the run's classes is it (or, for a multi-label run, which labels)?",
        steps.predicted(),
    ),
]
step_cols = st.columns(len(steps))
for col, (target, title, text, done) in zip(step_cols, steps, strict=True):
    with col, st.container(border=True, height="stretch"):
        st.markdown(f"**{title}**" + (" :material/check_circle:" if done else ""))
        st.caption(text)
        st.page_link(target, label="Open", icon=":material/arrow_forward:")

st.subheader("Datasets on disk")
if datasets:
    table = pd.DataFrame(datasets)[["name", "classes", "images", "split", "synthetic", "path"]]
    table["path"] = [common.shown_path(path) for path in table["path"]]
    multilabel = [d.get("task") == MULTI_LABEL for d in datasets]
    if any(multilabel):  # walk 54: '4 classes' for a set of labels, and nothing said it was multi-label
        table.insert(1, "kind", ["multi-label" if m else "single-label" for m in multilabel])
        table = table.rename(columns={"classes": "classes or labels"})
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "kind": st.column_config.TextColumn(
                "kind", help="single-label: one class a photo (its folder); multi-label: any number of labels a photo"
            ),
            "classes or labels": st.column_config.NumberColumn(
                "classes or labels", help="a multi-label dataset's labels, a single-label one's classes"
            ),
            "synthetic": st.column_config.CheckboxColumn("synthetic", help="made by `data get demo`, not real photos"),
            "path": st.column_config.TextColumn("folder"),
        },
        key="home_datasets",
    )
else:
    st.info(
        f"No dataset under {plain.code(common.shown_path(common.data_root()))} yet. To get one:\n\n"
        f"- open **Dataset** and choose *Get tf_flowers* ({KNOWN_SOURCES['tf_flowers'].size_mb:.0f} MB download), "
        "*Oxford 102*, or upload a zip "
        "of class folders;\n"
        "- or point it at any folder of class folders on this machine (e.g. `../shared/data/flowers5-128`);\n"
        "- or, with no internet, create the small synthetic demo set: `python -m core data get demo`.",
        icon=":material/info:",
    )

dataset_choice.show_hidden_for_links()

st.subheader("Recent runs")
if runs:
    rows = [
        {
            "run": run.run_id,
            "state": run.state.value,
            "dataset": run.dataset_name,
            "size": run.train_config.image_size,
            "weights": run.train_config.weights,
            "accuracy": run.status.accuracy,
            "mAP": run.status.map,  # a multi-label run's test figure (walk 54: 'test accuracy: None')
        }
        for run in runs[:10]
    ]
    table = pd.DataFrame(rows)
    if all(run.multilabel for run in runs[:10]):  # a figure's column only for the kinds listed: no column of Nones
        table = table.drop(columns="accuracy")
    if not any(run.multilabel for run in runs[:10]):
        table = table.drop(columns="mAP")
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "accuracy": st.column_config.NumberColumn("test accuracy", format="%.3f", help=common.TEST_ACCURACY_HELP),
            "mAP": st.column_config.NumberColumn("test mAP", format="%.3f", help=common.TEST_MAP_HELP),
        },
        key="home_runs",
    )
else:
    st.caption("No training runs yet: they appear here once you launch one on the Train page.")
