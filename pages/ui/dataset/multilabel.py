"""The Dataset page's parts for a multi-label dataset: its labels (photos per label, labels per photo, which come
together), a sample grid filtered by label, and its split (iterative stratification, per label)."""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core.data.datasets import LAYOUT_SPLITS, SPLIT_NAMES, DatasetError, DatasetIndex
from core.data.multilabel import NO_LABEL, label_statistics, names_of
from core.data.multilabel_split import counts_by_label
from core.data.split_rule import split_rule
from core.settings.config import TrainConfig
from pages.ui import marks, photo_gallery, plain

PAGE_SIZE = 24
HEATMAP_LABELS = 40  # more labels than this: the pairs as a table, not a heatmap


@st.cache_data(show_spinner=False, max_entries=8)
def statistics(root: str, fingerprint: str, _index: DatasetIndex) -> dict:
    return label_statistics(_index.targets, _index.classes)


def headline(index: DatasetIndex) -> dict:
    """The metrics row: labels, photos, labels a photo, split."""
    stats = statistics(str(index.root), index.fingerprint, index)
    cols = st.columns(4)
    cols[0].metric("Labels", len(index.classes), help="Several labels a photo (multi-label).")
    cols[1].metric("Images", len(index.entries))
    cols[2].metric(
        "Labels a photo",
        f"{stats['mean_labels']:.2f}",
        help=f"On average; {stats['without_label']} photo(s) have none.",
    )
    cols[3].metric("Split", SPLIT_NAMES["dataset" if index.has_split else "random"], help=LAYOUT_SPLITS[index.layout])
    st.caption(
        ":material/label: A **multi-label** dataset: a photo has any number of these labels, or none. Training "
        "answers each label yes or no on its own (a sigmoid per label), each with its own threshold."
    )
    return stats


def labels_tab(index: DatasetIndex, stats: dict) -> None:
    per_label = pd.DataFrame({"label": list(stats["per_label"]), "photos": list(stats["per_label"].values())})
    per_label = per_label.sort_values(["photos", "label"], ascending=[False, True], kind="stable")
    chart = px.bar(per_label.assign(label=per_label["label"].map(plain.chart)), x="label", y="photos", height=340)
    chart.update_traces(marker_color="#b8336a", hovertemplate="%{x}: %{y} photos<extra></extra>")
    chart.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="Photos per label")
    st.plotly_chart(chart, key="dataset_ml_per_label", config={"displayModeBar": False})
    left, right = st.columns(2)
    sizes = pd.DataFrame(
        {"labels on the photo": list(stats["labels_per_photo"]), "photos": list(stats["labels_per_photo"].values())}
    )
    figure = px.bar(sizes, x="labels on the photo", y="photos", height=300, title="How many labels a photo has")
    figure.update_traces(marker_color="#2f6db5")
    figure.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10})
    left.plotly_chart(figure, key="dataset_ml_sizes", config={"displayModeBar": False})
    left.caption(f"{stats['without_label']} photo(s) with no label: the model learns to answer '{NO_LABEL}'.")
    with right:
        cooccurrence(index, stats)


def cooccurrence(index: DatasetIndex, stats: dict) -> None:
    """Which labels come together: a heatmap of photos having both (few labels), else the top pairs."""
    if len(index.classes) <= HEATMAP_LABELS:
        matrix = index.targets.cooccurrence()
        names = [plain.chart(n) for n in index.classes]
        figure = px.imshow(
            matrix, x=names, y=names, color_continuous_scale="Purples", height=300, title="Photos having both labels"
        )
        figure.update_traces(hovertemplate="%{y} and %{x}: %{z} photos<extra></extra>")
        figure.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10})
        st.plotly_chart(figure, key="dataset_ml_cooccurrence", config={"displayModeBar": False})
    pairs = pd.DataFrame(stats["pairs"][:50], columns=["label", "with", "photos"])
    if len(pairs):
        st.dataframe(pairs, hide_index=True, key="dataset_ml_pairs", height=200)
    else:
        st.caption("No two labels share a photo.")


def samples_tab(index: DatasetIndex, dims: pd.DataFrame) -> None:
    """A grid of photos having the picked labels (any or all of them), each captioned with its labels."""
    filters = st.columns([3, 1, 1])
    options = [*index.classes, NO_LABEL]
    picked = filters[0].multiselect(
        "Labels", options, default=index.classes[: min(2, len(index.classes))], key="dataset_ml_sample_labels"
    )
    mode = filters[1].segmented_control("Photos with", ["any", "all"], default="any", key="dataset_ml_sample_mode")
    size = filters[2].select_slider("Thumbnail", [96, 128, 160, 200], value=128, key="dataset_ml_thumb")
    if not picked:
        st.caption("Pick at least one label.")
        return
    dense = index.targets.dense()
    wanted = [index.classes.index(name) for name in picked if name != NO_LABEL]
    hits = dense[:, wanted].astype(bool)
    chosen = hits.all(axis=1) if mode == "all" and wanted else hits.any(axis=1)
    if NO_LABEL in picked:
        none = dense.sum(axis=1) == 0
        chosen = (chosen & none) if mode == "all" and wanted else (chosen | none)
    rows = np.flatnonzero(chosen)
    marked = marks.of_dataset(index.root)
    paths = [index.entries[int(i)].path for i in rows]
    if marks.sample_filter(marked, paths, "dataset_ml_only_marked", what="labels"):
        rows = np.array([i for i in rows if index.entries[int(i)].path in marked], dtype=int)
        if not len(rows):
            return  # the filter said why
    if not len(rows):
        st.caption("No photo has " + (" and " if mode == "all" else " or ").join(map(plain.md, picked)) + ".")
        return
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = st.pagination(pages, key="dataset_ml_page") if pages > 1 else 1
    said = "labels, size, file name and your marks" if marked else "labels, size and file name"
    photos = f"{len(rows)} photo" + ("" if len(rows) == 1 else "s")
    st.caption(f"{photos} · page {page} of {pages} · captions give each photo's {said}")
    items = []
    for i in rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]:
        entry = index.entries[int(i)]
        row = dims.loc[entry.path] if entry.path in dims.index else None
        size_text = f"{row.width}×{row.height}" if row is not None and row.width else "?"
        labels = ", ".join(names_of(index.targets, int(i), index.classes)) or NO_LABEL
        caption = f"{labels} · {size_text}{marks.caption_of(marked, entry.path)}\n{PurePosixPath(entry.path).name}"
        items.append((index.absolute(entry), caption))
    photo_gallery.gallery(items, size=size)


def split_tab(index: DatasetIndex, kept: list[int]) -> None:
    """The split training will draw (iterative stratification, seed 42), with its photos per label in each part."""
    defaults = TrainConfig()
    paths = [index.entries[i].path for i in kept]
    given = [index.entries[i].split for i in kept] if index.has_split else None
    try:
        split = split_rule(
            np.zeros(len(kept), dtype=np.int64), paths, index, defaults.val_fraction, defaults.test_fraction,
            defaults.seed, given,
        )  # fmt: skip
    except DatasetError as e:
        st.error(f"This dataset cannot be split for training: {plain.md(e)}", icon=":material/call_split:")
        return
    what = (
        "the dataset's own split"
        if split.source == "dataset"
        else "iterative stratification with seed 42 (Sechidis et al., 2011): each label spread over the three parts "
        "in proportion, as far as its photos allow"
    )
    sizes_text = ", ".join(f"{n} {name}" for name, n in split.sizes().items())
    st.markdown(f"Training uses {what}: {sizes_text}.")
    for note in split.notes:
        st.caption(plain.md(note))
    table = pd.DataFrame(counts_by_label(index.targets.take(kept), index.classes, split)).T
    st.dataframe(table, key="dataset_ml_split_table")
