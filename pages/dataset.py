"""Dataset: choose or add a dataset; its classes, photos, image sizes, split and health."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from core.config import TrainConfig
from core.datasets import DatasetError, split_indices
from pages import common

PAGE_SIZE = 24
IMBALANCE_RATIO = 1.5

st.title("Dataset")

SOURCES = ["In the data folder", "A folder on this machine"]
source = st.segmented_control("Dataset from", SOURCES, default=SOURCES[0], key="dataset_source", required=True)

chosen: str | None = None
if source == SOURCES[0]:
    found = common.datasets()
    if not found:
        st.info(
            f"No dataset in `{common.data_root()}` yet. Use a folder on this machine, or add one below.",
            icon=":material/info:",
        )
    else:
        options = {d["path"]: f"{d['name']} ({d['classes']} classes, {d['images']} images)" for d in found}
        current = common.current_dataset()
        paths = list(options)
        chosen = st.selectbox(
            "Dataset",
            paths,
            index=paths.index(current) if current in paths else 0,
            format_func=options.get,
            key="dataset_pick",
        )
else:
    typed = st.text_input(
        "Folder",
        key="dataset_folder",
        placeholder="/path/to/photos (class folders inside, or train/val/test)",
        help="A folder of class folders (DATA/<class>/<image>), or one already split into train/val/test.",
    ).strip()
    if typed:
        if Path(typed).expanduser().is_dir():
            chosen = typed
        else:
            st.error(f"No folder at `{typed}`.", icon=":material/folder_off:")

index = common.try_scan(chosen)
if index is None:
    st.stop()
common.set_current_dataset(index.root)

if index.meta.get("synthetic"):
    st.warning(
        "This is a **synthetic** demo set, drawn by a program so you can try Flora without internet. "
        "It is not real photos; accuracy on it says nothing about flowers.",
        icon=":material/science:",
    )
description = index.meta.get("description")
if description:
    st.caption(description)

counts = index.class_counts()
sizes = pd.Series(counts)
cols = st.columns(4)
cols[0].metric("Classes", len(index.classes))
cols[1].metric("Images", len(index.entries))
cols[2].metric("Largest / smallest class", f"{sizes.max()} / {sizes.min()}")
layout_text = {
    "classes": "none (split at training, seeded)",
    "presplit": "train/val/test folders",
    "manifest": "the dataset's own (recorded)",
}[index.layout]
cols[3].metric("Split", "own" if index.has_split else "seeded", help=layout_text)
if index.empty_classes:
    st.warning(f"Empty class folder(s) left out: {', '.join(index.empty_classes)}", icon=":material/folder_off:")
if index.ignored_files:
    with st.expander(f"{len(index.ignored_files)} file(s) ignored: not images by their name"):
        st.write(index.ignored_files[:200])

classes_tab, samples_tab, split_tab = st.tabs(["Classes", "Samples", "Split"])

with classes_tab:
    ratio = float(sizes.max() / max(sizes.min(), 1))
    frame = pd.DataFrame({"class": sizes.index, "images": sizes.values})
    frame["note"] = ["small" if n < sizes.max() / IMBALANCE_RATIO else "" for n in frame["images"]]
    figure = px.bar(
        frame,
        x="class",
        y="images",
        color="note",
        color_discrete_map={"": "#b8336a", "small": "#e8a33d"},
        height=380 if len(frame) <= 30 else 520,
    )
    figure.update_layout(
        showlegend=ratio > IMBALANCE_RATIO, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend_title_text=""
    )
    st.plotly_chart(figure, key="dataset_counts")
    if ratio > IMBALANCE_RATIO:
        st.warning(
            f"Imbalanced: the largest class has {ratio:.1f}x the images of the smallest "
            f"({sizes.idxmax()}: {sizes.max()}, {sizes.idxmin()}: {sizes.min()}). Training turns on class weights "
            '("auto"), so rare classes are not ignored; the per-class metrics will show how they fare.',
            icon=":material/balance:",
        )
    else:
        st.caption(f"Balanced enough: largest / smallest = {ratio:.2f}.")

with samples_tab:
    filters = st.columns([3, 1])
    picked = filters[0].multiselect(
        "Classes", index.classes, default=index.classes[: min(5, len(index.classes))], key="dataset_sample_classes"
    )
    size = filters[1].select_slider("Thumbnail", [96, 128, 160, 200], value=128, key="dataset_thumb")
    entries = [e for e in index.entries if index.classes[e.label] in set(picked)]
    if not entries:
        st.caption("Pick at least one class.")
    else:
        pages = max(1, -(-len(entries) // PAGE_SIZE))
        page = st.pagination(pages, key="dataset_page") if pages > 1 else 1
        chunk = entries[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        st.caption(f"{len(entries)} photos · page {page} of {pages}")
        common.gallery(
            [(index.absolute(e), f"{index.classes[e.label]} · {Path(e.path).name}") for e in chunk], size=size
        )

with split_tab:
    try:
        defaults = TrainConfig()
        split = split_indices(
            index.labels,
            index.classes,
            [e.split for e in index.entries] if index.has_split else None,
            defaults.val_fraction,
            defaults.test_fraction,
            defaults.seed,
        )
    except DatasetError as e:
        st.error(f"This dataset cannot be split for training: {e}", icon=":material/call_split:")
    else:
        table = pd.DataFrame(split.counts_by_class(index.labels, index.classes)).T
        what = (
            "the dataset's own split"
            if split.source == "dataset"
            else "a stratified split with seed 42 (the Train page's default)"
        )
        sizes_text = ", ".join(f"{n} {name}" for name, n in split.sizes().items())
        st.markdown(f"Training uses {what}: {sizes_text}.")
        for note in split.notes:
            st.caption(note)
        st.dataframe(table, key="dataset_split_table")
