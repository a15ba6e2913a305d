"""The Explore page's map: the validation and test photos placed by their ResNet features, and the photos
a click or a lasso picks, with "photos like this" among the training photos.

Every point carries its image's key ("test:17") as Plotly customdata; a selection is mapped back to
photos through those keys only (Streamlit numbers points per trace, so an index means nothing alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

from core.results import tasks as run_tasks
from core.results.evaluation import embedding
from core.runs.analysis import RunAnalysis
from core.runs.record import Run
from pages.ui import photo_gallery, plain, run_task, teaching
from pages.ui.run_task import task_panel

COLOUR_BY = ("true class", "correct or wrong", "confidence")
NO_HIGHLIGHT = "(none)"
WEBGL_ABOVE = 3000  # points drawn by WebGL past this (SVG slows down); fewer stay SVG, which every browser draws
PAGE_SIZE = 24
NEIGHBOURS = 8
FADED = "rgba(160,160,160,0.25)"
# Green-Armytage's alphabet (26 colours picked to be told apart) without its two greys, the "other classes"
# colour: one colour per class on the map (at most LEGEND_CLASSES of them), none repeated or alike.
PALETTE = [c for c in qualitative.Alphabet if c not in ("#565656", "#E2E2E2")]
LEGEND_CLASSES = 20  # beyond this many classes on the map, the largest keep a colour and the rest share grey


# ----------------------------------------------------------------------------- selection -> photos


def selected_keys(event: Any) -> list[str]:
    """The image keys of the points a chart event selected (clicked, boxed or lassoed), in order, once each."""
    selection = (event or {}).get("selection") or {}
    keys: list[str] = []
    for point in selection.get("points") or []:
        data = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(data, list | tuple):
            data = data[0] if data else None
        if isinstance(data, str) and data not in keys:
            keys.append(data)
    return keys


def selected_photos(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The map table's rows for `keys` (unknown keys ignored), wrong ones first, then least confident."""
    chosen = frame[frame["key"].isin(keys)]
    return chosen.sort_values(["correct", "p_given"], kind="stable").reset_index(drop=True)


def caption(row) -> str:
    """given → predicted (probability), or given ✓ (probability); then the file name."""
    if row.correct:
        said = f"{row.given} ✓ {row.confidence:.2f}"
    else:
        said = f"{row.given} → {row.predicted} {row.confidence:.2f}"
    return f"{said}\n{Path(row.path).name}"


# ----------------------------------------------------------------------------- the figure


def coloured_classes(frame: pd.DataFrame, classes: list[str]) -> set[str]:
    """The classes that get a colour of their own: all of them up to LEGEND_CLASSES, else the largest on the map
    (a legend of 1,000 entries is no legend; "Highlight a class" shows any one)."""
    counts = frame["given"].value_counts()
    if len(counts) <= LEGEND_CLASSES:
        return set(counts.index)
    order = {name: i for i, name in enumerate(classes)}
    ranked = sorted(counts.items(), key=lambda item: (-item[1], order.get(item[0], 0)))
    return {name for name, _ in ranked[:LEGEND_CLASSES]}


def figure(frame: pd.DataFrame, colour_by: str, highlight: str | None, classes: list[str]) -> go.Figure:
    """The map as a Plotly figure: one trace per colour group, each point's customdata its image key."""
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour_by must be one of {COLOUR_BY}. Received: colour_by={colour_by!r}")
    scatter = go.Scattergl if len(frame) > WEBGL_ABOVE else go.Scatter
    traces = []
    shown = frame
    if highlight:
        rest = frame[frame["given"] != highlight]
        shown = frame[frame["given"] == highlight]
        traces.append(_trace(scatter, rest, "other classes", dict(color=FADED, size=6)))
    if colour_by == "true class":
        coloured = coloured_classes(shown, classes)
        rest = shown[~shown["given"].isin(coloured)]
        if len(rest):  # drawn first, so the coloured classes lie on top
            others = rest["given"].nunique()
            traces.append(_trace(scatter, rest, f"{others} other classes", dict(color=FADED, size=_size(highlight))))
        groups = dict(tuple(shown[shown["given"].isin(coloured)].groupby("given", sort=False)))
        for rank, name in enumerate(name for name in classes if name in groups):  # colours by rank: none repeat
            colour = PALETTE[rank % len(PALETTE)]
            traces.append(_trace(scatter, groups[name], plain.chart(name), dict(color=colour, size=_size(highlight))))
    elif colour_by == "correct or wrong":
        traces.append(_trace(scatter, shown[shown["correct"]], "correct", dict(color="#4c78a8", size=_size(highlight))))
        wrong = shown[~shown["correct"]]
        traces.append(_trace(scatter, wrong, "wrong", dict(color="#e45756", size=_size(highlight) + 2, symbol="x")))
    else:
        traces.append(
            _trace(
                scatter,
                shown,
                "confidence",
                dict(
                    color=shown["confidence"],
                    colorscale="Viridis",
                    cmin=0,
                    cmax=1,
                    size=_size(highlight),
                    colorbar=dict(title="confidence", thickness=12),
                ),
            )
        )
    return map_figure(traces)


def map_figure(traces: list) -> go.Figure:
    """The map's figure around its traces (the single- and multi-label maps alike)."""
    fig = go.Figure(traces)
    fig.update_layout(
        height=560,
        margin=dict(l=10, r=10, t=36, b=10),  # room above the plot for Plotly's toolbar (lasso, box)
        legend=dict(itemsizing="constant"),
        xaxis=dict(showticklabels=False, title=None, zeroline=False),
        yaxis=dict(showticklabels=False, title=None, zeroline=False),
    )
    return fig


def _size(highlight: str | None) -> int:
    return 10 if highlight else 7


def _trace(scatter, part: pd.DataFrame, name: str, marker: dict):
    hover = [  # class and file names as text (Plotly reads tags in it)
        f"{plain.chart(Path(r.path).name)}<br>{r.split} · given {plain.chart(r.given)}<br>"
        f"predicted {plain.chart(r.predicted)} ({r.confidence:.2f})"
        for r in part.itertuples()
    ]
    return marker_trace(scatter, part, name, marker, hover)


def marker_trace(scatter, part: pd.DataFrame, name: str, marker: dict, hover: list[str]):
    """One group of the map's points, keyed for a click or a lasso, `hover` its photos' lines."""
    return scatter(
        x=part["x"],
        y=part["y"],
        mode="markers",
        name=name,
        marker=marker,
        customdata=part["key"].tolist(),
        text=hover,
        hovertemplate="%{text}<extra></extra>",
    )


# ----------------------------------------------------------------------------- the section


@st.cache_resource(show_spinner=False, max_entries=8)
def _frame(run_dir: str, method: str, stamp: tuple, temperature: float | None) -> pd.DataFrame:

    analysis = RunAnalysis.load(run_dir)
    return embedding.map_frame(analysis, embedding.run_map(run_dir, method), temperature)


@st.cache_resource(show_spinner=False, max_entries=4)
def stored_train_features(run_dir: str, stamp: float | None) -> run_tasks.TrainFeatures | None:
    """The run's training-split features, read once per file (`stamp`) and shared by the map and Label next."""
    return run_tasks.TrainFeatures.load(run_dir)


def map_section(run: Run, analysis, temperature: float | None) -> None:
    """Method, colouring and highlight; the map; the selected photos; photos like a picked one."""
    teaching.explain("feature_map")
    controls = st.columns([2, 2, 3, 2])
    method = method_picker(controls[0])
    colour_by = controls[1].selectbox("Colour by", COLOUR_BY, key="explore_colour")
    highlight = controls[2].selectbox(
        "Highlight a class", [NO_HIGHLIGHT, *sorted(analysis.classes)], key="explore_highlight"
    )
    splits = controls[3].pills(
        "Photos", ["test", "validation"], selection_mode="multi", default=["test", "validation"], key="explore_splits"
    )
    method = map_method(run, method)
    key = "tsne" if method == "t-SNE" else "pca"
    frame = _frame(str(run.directory), key, (run.analysis_mtime, run.embedding_mtime), temperature)
    wanted = {"val" if s == "validation" else s for s in (splits or [])}
    frame = frame[frame["split"].isin(wanted)]
    if frame.empty:
        st.info("Pick the test or the validation photos (or both) to see them on the map.", icon=":material/info:")
        return
    wrong = int((~frame["correct"]).sum())
    if key == "tsne":
        sample_note(
            analysis, len(_frame(str(run.directory), key, (run.analysis_mtime, run.embedding_mtime), temperature))
        )
    calibrated = f" Probabilities calibrated with the run's temperature ({temperature:.2f})." if temperature else ""
    classes_shown = frame["given"].nunique()
    if colour_by == "true class" and classes_shown > LEGEND_CLASSES and highlight == NO_HIGHLIGHT:
        st.caption(
            f":material/palette: {classes_shown} classes on the map: the {LEGEND_CLASSES} with the most photos here "
            "have a colour each, the others share grey. Highlight a class to see any one; colour by correct or "
            "wrong to see where the mistakes lie."
        )
    st.caption(
        f"{len(frame)} photos ({wrong} predicted wrongly), {method}. Click a point to see its photo below; "
        "to pick several, choose the lasso or the box in the chart's toolbar (top right) and draw around them. "
        f"Hover a point for its file and labels.{calibrated}"
    )
    event = st.plotly_chart(
        figure(frame, colour_by, None if highlight == NO_HIGHLIGHT else highlight, analysis.classes),
        key="explore_map",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        config={"displaylogo": False},
    )
    photos = selected_photos(frame, selected_keys(event))
    selection_gallery(run, photos)
    if len(photos):
        neighbours_section(run, analysis, photos)


def method_picker(column) -> str:
    """The map's method, "PCA" or "t-SNE", picked in `column` (shared by the single- and multi-label maps)."""
    return column.segmented_control(
        "Map", ["PCA", "t-SNE"], default="PCA", key="explore_method", required=True,
        help="PCA: the two directions along which the features vary most (instant, straight lines kept). "
        "t-SNE: keeps each photo near its most similar ones (clusters show better; distances between "
        "clusters mean little).",
    )  # fmt: skip


def map_method(run: Run, method: str) -> str:
    """`method`, or "PCA" while the run's t-SNE map is not computed yet (then it is started, and its panel shown)."""
    if method != "t-SNE" or embedding.load_map(run.directory, "tsne") is not None:
        return method
    st.markdown(
        "The t-SNE map is computed once in the background (about 45 s for 1,300 photos on two busy CPU cores, "
        "longer for more) and kept with the run. "
        "The PCA map is shown meanwhile."
    )
    if run_tasks.task_status(run, "tsne") is None:  # asked for and never tried: start it, no button to find
        run_task.launch(run, "tsne")  # not on someone else's run: the panel says why
    task_panel(run, "tsne", "Compute the t-SNE map", key="explore_tsne")
    return "PCA"


def sample_note(analysis, mapped: int) -> None:
    """Say so when the t-SNE map holds a sample of the photos (`mapped` of them)."""
    total = sum(len(analysis.split(name).paths) for name in ("val", "test"))
    if mapped < total:
        st.caption(
            f":material/scatter_plot: t-SNE of a seeded sample of {mapped:,} of the {total:,} test and validation "
            "photos: beyond that many it would take many minutes and gigabytes. PCA maps every photo."
        )


def selection_gallery(run: Run, photos: pd.DataFrame) -> None:
    if photos.empty:
        st.caption("No photos selected yet.")
        return
    wrong = int((~photos["correct"]).sum())
    st.markdown(f"**{len(photos)} photo(s) selected**, {wrong} predicted wrongly (wrong ones first)")
    pages = max(1, -(-len(photos) // PAGE_SIZE))
    page = st.pagination(pages, key="explore_page") if pages > 1 else 1
    chunk = photos.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    root = Path(run.dataset_path)
    photo_gallery.gallery(
        [(root / row.path, caption(row)) for row in chunk.itertuples()], size=130, key="explore_selected"
    )


def neighbours_section(run: Run, analysis, photos: pd.DataFrame) -> None:
    """'Photos like this': the training photos nearest to a picked one in feature space."""
    st.markdown("#### Photos like this")
    names = {row.key: f"{Path(row.path).name} ({row.given})" for row in photos.itertuples()}
    picked = st.selectbox("Training photos most like", list(names), format_func=names.get, key="explore_like")
    train = stored_train_features(str(run.directory), run.train_features_mtime)
    if train is None:
        st.markdown(
            "To find them, Flora needs the ResNet features of the run's training photos: computed once in the "
            "background (free when the feature cache already has them), then kept with the run."
        )
        task_panel(run, "train-features", "Compute the training photos' features", key="explore_train_features")
        return
    if picked not in names:
        return
    rows, similarity = embedding.nearest(embedding.features_of(analysis, picked), train.features, NEIGHBOURS)
    classes = analysis.classes
    labels = [classes[int(train.labels[r])] for r in rows]
    given = photos.set_index("key").loc[picked, "given"]
    same = sum(1 for label in labels if label == given)
    st.caption(
        f"The {len(rows)} training photos whose features are most similar (cosine similarity): {same} of them are "
        f"labelled {plain.md(given)}. What the model learnt from photos like these is what it applies to this one."
    )
    root = Path(run.dataset_path)
    photo_gallery.gallery(
        [
            (root / train.paths[r], f"{label} · {s:.2f}\n{Path(train.paths[r]).name}")
            for r, label, s in zip(rows, labels, similarity, strict=True)
        ],
        size=120,
        key="explore_neighbours",
    )
