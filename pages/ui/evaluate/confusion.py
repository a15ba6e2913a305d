"""The Evaluate page's confusion matrix: drawn so that 102 classes still lead somewhere (a class
search showing the picked classes' sub-matrix with the rest summed into "(other)", a log colour scale,
an order that puts classes confused with each other side by side)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.results.evaluation.confusion import OTHER, confused_together_order, submatrix

BY_NAME, WORST_RECALL, CONFUSED_TOGETHER = "by name", "worst recall first", "confused together"
ORDERS = [BY_NAME, WORST_RECALL, CONFUSED_TOGETHER]


@st.cache_data(show_spinner=False, max_entries=16)
def together_order(counts: np.ndarray) -> list[int]:
    return confused_together_order(counts)


def ordered_classes(evaluation, counts: np.ndarray, order: str) -> list[str]:
    """All class names in the chosen order."""
    if order == WORST_RECALL:
        return list(evaluation.classes_by_error())
    if order == CONFUSED_TOGETHER:
        return [evaluation.classes[i] for i in together_order(counts)]
    return sorted(evaluation.classes)


def shown_matrix(evaluation, counts: np.ndarray, ordered: list[str], picked: list[str], limit: int):
    """(names, counts of the shown cells, each row's total images): the picked classes plus "(other)",
    or `limit` classes of the most frequent mistakes (both sides of each pair), in the order of `ordered`."""
    if picked:
        names = [name for name in ordered if name in set(picked)]
        sub, names = submatrix(counts, list(evaluation.classes), names)
        return names, sub.astype(float), np.maximum(sub.sum(axis=1), 1)
    chosen = set(evaluation.classes_of_top_mistakes(limit)) if limit < evaluation.num_classes else set(ordered)
    index = [evaluation.classes.index(name) for name in ordered if name in chosen]
    names = [evaluation.classes[i] for i in index]
    return names, counts[np.ix_(index, index)].astype(float), np.maximum(counts[index].sum(axis=1), 1)


def matrix_chart(
    names: list[str], sub: np.ndarray, row_totals: np.ndarray, normalised: bool, hide_diagonal: bool, log: bool
) -> alt.LayerChart:
    """The confusion matrix as Altair rectangles: a click anywhere in a cell selects that cell's
    (true, predicted) class names (a point selection over those fields), and the colours, numbers
    and hover text come from the same rows."""
    rows = []
    for r, true_name in enumerate(names):
        for c, predicted_name in enumerate(names):
            share = sub[r, c] / row_totals[r]
            hidden = hide_diagonal and r == c and true_name != OTHER
            rows.append(
                {
                    "true": true_name,
                    "predicted": predicted_name,
                    "images": int(sub[r, c]),
                    "share": share,
                    "value": None if hidden else (share if normalised else sub[r, c]),
                    "label": "" if hidden else (f"{share:.0%}" if normalised else f"{int(sub[r, c])}"),
                }
            )
    frame = pd.DataFrame(rows)
    top = float(frame["value"].max() or 1) if frame["value"].notna().any() else 1.0
    cell = alt.selection_point(name="cell", fields=["true", "predicted"], on="click", clear=False)
    side = int(min(900, max(360, 28 * len(names) + 120)))
    base = alt.Chart(frame).encode(
        # cells apart by a gap, not a white stroke: a stroke is drawn over the neighbouring cell, so a click on a
        # cell's white border selected its neighbour; a click in the gap now selects nothing
        x=alt.X(
            "predicted:N",
            scale=alt.Scale(paddingInner=0.06),
            sort=names,
            title="predicted",
            axis=alt.Axis(labelAngle=-45, labelLimit=140, labelOverlap=False),
        ),
        y=alt.Y(
            "true:N",
            scale=alt.Scale(paddingInner=0.06),
            sort=names,
            title="true",
            axis=alt.Axis(labelLimit=140, labelOverlap=False),
        ),
    )
    # symlog, not log: most cells of a large matrix are 0, which a log scale cannot place
    scale = (
        alt.Scale(scheme="redpurple", type="symlog", constant=0.01 if normalised else 1, domainMin=0)
        if log
        else alt.Scale(scheme="redpurple", domainMin=0)
    )
    rects = (
        base.mark_rect(cursor="pointer")
        .encode(
            color=alt.condition(
                "datum.value === null",
                alt.value("#eeeeee"),
                alt.Color("value:Q", scale=scale, title="share of row" if normalised else "images"),
            ),
            opacity=alt.condition(cell, alt.value(1.0), alt.value(0.85)),
            tooltip=[
                alt.Tooltip("true:N"),
                alt.Tooltip("predicted:N"),
                alt.Tooltip("images:Q"),
                alt.Tooltip("share:Q", title="share of true class", format=".1%"),
            ],
        )
        .add_params(cell)
    )
    layers = [rects]
    if len(names) <= 20:
        layers.append(
            base.mark_text(fontSize=11).encode(
                text="label:N",
                color=alt.condition(f"datum.value > {top / 2}", alt.value("white"), alt.value("#26232a")),
            )
        )
    return alt.layer(*layers).properties(width=side, height=side)
