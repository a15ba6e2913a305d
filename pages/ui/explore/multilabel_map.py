"""Explore's feature map for a multi-label run: the validation and test photos placed by their features (the same PCA
and t-SNE maps as a single-label run's, pages.ui.explore.map), coloured by whether each photo has a label picked (and
whether the model answered it) or by how many labels it has; a click or a lasso shows the photos with their label
lists, and one photo's every label score beside its threshold.

The rows come from core.results.evaluation.multilabel_map; points carry their image key as customdata, like the
single-label map's.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.results.evaluation import embedding, multilabel_map
from core.results.probabilities import label_thresholds
from core.runs.analysis import RunAnalysis
from core.runs.record import Run
from pages.ui import photo_gallery, plain, teaching
from pages.ui.explore.map import (
    WEBGL_ABOVE,
    map_figure,
    map_method,
    marker_trace,
    method_picker,
    sample_note,
    selected_keys,
)

COLOUR_BY = ("a label", "number of labels")
PAGE_SIZE = 24
HAS, LACKS = "#f58518", "#4c78a8"  # has the label / does not; a cross where the model's answer differs


@st.cache_resource(show_spinner=False, max_entries=16)
def _frame(run_dir: str, method: str, stamp: tuple, label: str) -> pd.DataFrame:
    analysis = RunAnalysis.load(run_dir)
    points = embedding.run_map(run_dir, method)
    return multilabel_map.map_frame(analysis, points, label_thresholds.load(run_dir), label)


def figure(frame: pd.DataFrame, colour_by: str, label: str) -> go.Figure:
    """The map: by `label`, four traces (has it or not, answered rightly or not); by number of labels, one scale."""
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour_by must be one of {COLOUR_BY}. Received: colour_by={colour_by!r}")
    scatter = go.Scattergl if len(frame) > WEBGL_ABOVE else go.Scatter
    name = plain.chart(label)
    if colour_by == "a label":
        groups = [
            ("left out", f"lacks '{name}'", dict(color=LACKS, size=7)),
            ("added", f"lacks '{name}', answered it", dict(color=LACKS, size=9, symbol="x")),
            ("found", f"has '{name}', answered it", dict(color=HAS, size=7)),
            ("missed", f"has '{name}', not answered", dict(color=HAS, size=9, symbol="x")),
        ]
        traces = [_trace(scatter, frame[frame["cell"] == cell], title, marker) for cell, title, marker in groups]
    else:
        most = int(frame["n_labels"].max()) if len(frame) else 1
        marker = dict(
            color=frame["n_labels"].tolist(),
            colorscale="Viridis",
            cmin=0,
            cmax=max(1, most),
            size=7,
            colorbar=dict(title="labels", thickness=12, dtick=1),
        )
        traces = [_trace(scatter, frame, "number of labels", marker)]
    return map_figure(traces)


def _trace(scatter, part: pd.DataFrame, name: str, marker: dict):
    hover = [
        f"{plain.chart(Path(r.path).name)}<br>{r.split} · has {plain.chart(r.labels or 'none')}<br>"
        f"answered {plain.chart(r.predicted or 'none')}"
        for r in part.itertuples()
    ]
    return marker_trace(scatter, part, name, marker, hover)


def caption(row) -> str:
    """has: its labels · answered: the model's (a ✓ when they agree); then the file name."""
    mark = " ✓" if row.exact else ""
    return f"has: {row.labels or 'none'} · answered: {row.predicted or 'none'}{mark}\n{Path(row.path).name}"


def section(run: Run, analysis: RunAnalysis) -> None:
    """Method, colouring and label; the map; the selected photos; one photo's scores."""
    teaching.explain("feature_map_multilabel")
    labels = list(analysis.classes)
    controls = st.columns([2, 2, 3, 2])
    method = method_picker(controls[0])
    colour_by = controls[1].selectbox("Colour by", COLOUR_BY, key="explore_ml_colour")
    label = controls[2].selectbox(
        "Label",
        labels,
        key="explore_ml_label",
        disabled=colour_by != "a label",
        help="Colour each photo by whether it has this label, a cross where the model's answer (its score against "
        "the label's threshold, tuned on the validation photos) differs.",
    )
    splits = controls[3].pills(
        "Photos", ["test", "validation"], selection_mode="multi", default=["test", "validation"], key="explore_splits"
    )
    method = map_method(run, method)
    key = "tsne" if method == "t-SNE" else "pca"
    full = _frame(str(run.directory), key, (run.analysis_mtime, run.embedding_mtime), label)
    if key == "tsne":
        sample_note(analysis, len(full))
    wanted = {"val" if s == "validation" else s for s in (splits or [])}
    frame = full[full["split"].isin(wanted)]
    if frame.empty:
        st.info("Pick the test or the validation photos (or both) to see them on the map.", icon=":material/info:")
        return
    st.caption(plain.md(map_words(frame, colour_by, label)) + f", {method}. " + _how_to_pick())
    event = st.plotly_chart(
        figure(frame, colour_by, label),
        key="explore_ml_map",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        config={"displaylogo": False},
    )
    keys = selected_keys(event)
    chosen = frame[frame["key"].isin(keys)].sort_values(["exact", "n_labels"], kind="stable")
    selection_gallery(run, chosen)
    if len(chosen):
        photo_scores(run, analysis, chosen)


def map_words(frame: pd.DataFrame, colour_by: str, label: str) -> str:
    """How many photos, how many with every label right, and (by a label) its 2x2 counts on the map, in words."""
    said = f"{len(frame)} photos, {int(frame['exact'].sum())} with every label right at the tuned thresholds"
    if colour_by != "a label":
        most = int(frame["n_labels"].max())
        return f"{said}; each has 0 to {most} labels ({int((frame['n_labels'] == 0).sum())} with none)"
    count = frame["cell"].value_counts()
    has = int(count.get("found", 0) + count.get("missed", 0))
    return (
        f"{said}; {has} have '{label}', the model answers it for {int(count.get('found', 0))} of them and for "
        f"{int(count.get('added', 0))} photos without it (crosses: the model's answer differs)"
    )


def _how_to_pick() -> str:
    return (
        "Click a point to see its photo below; to pick several, choose the lasso or the box in the chart's toolbar "
        "(top right) and draw around them. Hover a point for its file and labels."
    )


def selection_gallery(run: Run, photos: pd.DataFrame) -> None:
    if photos.empty:
        st.caption("No photos selected yet.")
        return
    wrong = int((~photos["exact"]).sum())
    said = f"{wrong} with a label answered wrongly (those first)" if wrong else "every label of each answered rightly"
    st.markdown(f"**{len(photos)} photo(s) selected**, {said}")
    pages = max(1, -(-len(photos) // PAGE_SIZE))
    page = st.pagination(pages, key="explore_page") if pages > 1 else 1
    chunk = photos.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    root = Path(run.dataset_path)
    photo_gallery.gallery(
        [(root / row.path, caption(row)) for row in chunk.itertuples()], size=130, key="explore_ml_selected"
    )


def photo_scores(run: Run, analysis: RunAnalysis, photos: pd.DataFrame) -> None:
    """One selected photo large, with every label's score against its threshold."""
    st.markdown("#### Its labels and the model's scores")
    names = {row.key: f"{Path(row.path).name} (has: {row.labels or 'none'})" for row in photos.itertuples()}
    picked = st.selectbox("Photo", list(names), format_func=names.get, key="explore_ml_photo")
    if picked not in names:
        return
    row = photos.set_index("key").loc[picked]
    table = multilabel_map.photo_scores(analysis, picked, label_thresholds.load(run.directory))
    photo_col, table_col = st.columns([1, 2], gap="medium")
    image, error = photo_gallery.thumb(Path(run.dataset_path) / row["path"], 224)
    photo_col.image(image, caption=plain.md(Path(row["path"]).name + (f" — {error}" if error else "")), width=224)
    wrong = table[~table["right"]]
    with table_col:
        st.markdown(
            plain.md(
                f"Has: {row['labels'] or 'none'}. The model answers: {row['predicted'] or 'none'}"
                + ("." if wrong.empty else f" ({len(wrong)} label(s) wrong: {', '.join(wrong['label'])}).")
            )
        )
        st.dataframe(
            table,
            hide_index=True,
            key="explore_ml_scores",
            column_config={
                "score": st.column_config.ProgressColumn("score", min_value=0, max_value=1, format="%.3f"),
                "threshold": st.column_config.NumberColumn("threshold", format="%.3f"),
            },
        )
        st.caption(
            "Each label's probability (its sigmoid: labels do not compete, so they need not add up to 1) against its "
            "threshold, tuned on the validation photos; answered: at or above it. On a weak model a right answer "
            "can be a lucky one: the Evaluate page gives each label's AP against a random scorer's."
        )
