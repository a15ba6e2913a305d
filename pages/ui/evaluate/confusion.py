"""The Evaluate page's confusion matrix: drawn so that 102 classes still lead somewhere (a class
search showing the picked classes' sub-matrix with the rest summed into "(other)", a log colour scale,
an order that puts classes confused with each other side by side)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.results.evaluation.confusion import OTHER, confused_together_order, submatrix
from pages.ui import vega

BY_NAME, WORST_RECALL, CONFUSED_TOGETHER = "by name", "worst recall first", "confused together"
ORDERS = [BY_NAME, WORST_RECALL, CONFUSED_TOGETHER]
CELLS_VIEW = "matrix_cells"  # the layer the cell selection is made in
LABELS = {"labelLimit": 140, "labelOverlap": False}  # every class name whole, none dropped for overlapping


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
) -> dict:
    """The confusion matrix as a Vega-Lite spec of rectangles (pages.ui.vega: ~60 ms of CPU with Altair): a click
    anywhere in a cell selects that cell's (true, predicted) class names (the point selection `cell` over those
    fields), and the colours, numbers and hover text come from the same rows."""
    rows = []
    for r, true_name in enumerate(names):
        for c, predicted_name in enumerate(names):
            share = float(sub[r, c] / row_totals[r])
            hidden = hide_diagonal and r == c and true_name != OTHER
            rows.append(
                {
                    "true": true_name,
                    "predicted": predicted_name,
                    "images": int(sub[r, c]),
                    "share": share,
                    "value": None if hidden else (share if normalised else float(sub[r, c])),
                    "label": "" if hidden else (f"{share:.0%}" if normalised else f"{int(sub[r, c])}"),
                }
            )
    shown = [row["value"] for row in rows if row["value"] is not None]
    top = float(max(shown) or 1) if shown else 1.0
    side = int(min(900, max(360, 28 * len(names) + 120)))
    # cells apart by a gap, not a white stroke: a stroke is drawn over the neighbouring cell, so a click on a
    # cell's white border selected its neighbour; a click in the gap now selects nothing
    gapped = {"scale": {"paddingInner": 0.06}, "sort": names}
    x = vega.field("predicted", "nominal", **gapped, title="predicted", axis={"labelAngle": -45, **LABELS})
    y = vega.field("true", "nominal", **gapped, title="true", axis=LABELS)
    # symlog, not log: most cells of a large matrix are 0, which a log scale cannot place
    scale = (
        {"scheme": "redpurple", "type": "symlog", "constant": 0.01 if normalised else 1, "domainMin": 0}
        if log
        else {"scheme": "redpurple", "domainMin": 0}
    )
    rects = {
        "name": CELLS_VIEW,
        "mark": {"type": "rect", "cursor": "pointer"},
        "encoding": {
            "x": x,
            "y": y,
            "color": {
                "condition": {"test": "datum.value === null", "value": "#eeeeee"},
                "field": "value",
                "type": "quantitative",
                "scale": scale,
                "title": "share of row" if normalised else "images",
            },
            "opacity": {"condition": {"param": "cell", "value": 1.0}, "value": 0.85},
            "tooltip": [
                {"field": "true", "type": "nominal"},
                {"field": "predicted", "type": "nominal"},
                {"field": "images", "type": "quantitative"},
                {"field": "share", "type": "quantitative", "title": "share of true class", "format": ".1%"},
            ],
        },
    }
    layers = [rects]
    if len(names) <= 20:
        colour = {"condition": {"test": f"datum.value > {top / 2}", "value": "white"}, "value": "#26232a"}
        text = {"x": x, "y": y, "text": {"field": "label", "type": "nominal"}, "color": colour}
        layers.append({"mark": {"type": "text", "fontSize": 11}, "encoding": text})
    cell = {"name": "cell", "select": {"type": "point", "fields": ["true", "predicted"], "on": "click", "clear": False}}
    return {
        "$schema": vega.SCHEMA,
        "datasets": {"cells": rows},  # a named dataset, as Altair writes one: Streamlit sends it as Arrow
        "data": {"name": "cells"},
        "layer": layers,
        "params": [{**cell, "views": [CELLS_VIEW]}],
        "width": side,
        "height": side,
    }
