"""The Sweep page's charts, from the rows of trials.json: progress over time, settings vs accuracy, importance."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core.sweeps import SEARCHABLE

TRIAL_COLOURS = {"complete": "#2f6db5", "pruned": "#e08a1e"}
LAYOUT = {"height": 320, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}}


def measure(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """What the trials are shown by: a multi-label sweep's validation mAP (what chose its best), else accuracy."""
    if any(r.get("val_map") is not None for r in rows):
        return "val_map", "validation mAP"
    return "val_accuracy", "validation accuracy"


def trials_frame(rows: list[dict[str, Any]], names: list[str]) -> pd.DataFrame:
    """One row per trial: number, state, validation figures, epochs, seconds, each setting (shown), note, and the
    Ray worker that ran it (sweeps on Ray)."""
    records = []
    for row in rows:
        state = row["state"]
        record = {
            "trial": row["number"],
            "state": "✂ pruned" if state == "pruned" else state,
            "val accuracy": row.get("val_accuracy"),
            "val loss": row.get("val_loss"),
            **({"val mAP": row.get("val_map")} if row.get("val_map") is not None else {}),
            "epochs": row.get("epochs_run"),
            "seconds": row.get("seconds"),
        }
        shown = row.get("shown", {})
        for name in names:
            record[name] = shown.get(name, "")
        record["note"] = row.get("note") or ""
        if any(r.get("worker") for r in rows):  # a sweep on Ray: which worker ran each trial
            record["worker"] = row.get("worker") or "the sweep's process"
        records.append(record)
    return pd.DataFrame(records)


def best_so_far_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Each finished trial's validation accuracy (a multi-label sweep's mAP) at the time it ended, and the best so
    far as a step line."""
    key, words = measure(rows)
    finished = sorted(
        (r for r in rows if r["state"] in TRIAL_COLOURS and r.get("finished_at") and r.get(key) is not None),
        key=lambda r: r["finished_at"],
    )
    figure = go.Figure()
    unit = "minutes"
    if finished:
        start = min(r["started_at"] or r["finished_at"] for r in finished)
        span = max(r["finished_at"] for r in finished) - start
        unit, scale = ("seconds", 1.0) if span < 120 else ("minutes", 60.0)  # a 23 s sweep read 0.04-0.08 min
        minutes = [(r["finished_at"] - start) / scale for r in finished]
        best, running = [], -math.inf
        for row in finished:
            running = max(running, row[key])
            best.append(running)
        figure.add_scatter(
            x=minutes, y=best, mode="lines", line_shape="hv", name="best so far", line={"color": "#b8336a"}
        )
        for state, colour in TRIAL_COLOURS.items():
            picked = [(m, r) for m, r in zip(minutes, finished, strict=True) if r["state"] == state]
            if picked:
                figure.add_scatter(
                    x=[m for m, _ in picked],
                    y=[r[key] for _, r in picked],
                    mode="markers",
                    name=state,
                    marker={"color": colour, "symbol": "x" if state == "pruned" else "circle", "size": 9},
                    text=[f"trial {r['number']}" for _, r in picked],
                    hovertemplate="%{text}: %{y:.3f}<extra></extra>",
                )
    chosen = "it" if key == "val_map" else "loss"
    figure.update_layout(
        title=f"Highest {words} so far (the best trial is chosen by {chosen})",
        xaxis_title=f"{unit} since the first trial",
        yaxis={"range": [0, 1.02], "title": words},
        legend={"orientation": "h", "y": -0.3},
        **LAYOUT,
    )
    return figure


def parallel_figure(rows: list[dict[str, Any]], names: list[str]) -> go.Figure | None:
    """Settings against validation accuracy, one line per completed trial (None before there are two)."""
    key, _ = measure(rows)
    complete = [r for r in rows if r["state"] == "complete" and r.get(key) is not None]
    if len(complete) < 2:
        return None
    dimensions = [_dimension(name, [r["params"].get(name) for r in complete]) for name in names]
    accuracy = [r[key] for r in complete]
    dimensions.append({"label": "val mAP" if key == "val_map" else "val accuracy", "values": accuracy, "range": [0, 1]})
    figure = go.Figure(
        go.Parcoords(
            line={"color": accuracy, "colorscale": "Viridis", "cmin": 0, "cmax": 1, "showscale": True},
            dimensions=dimensions,
        )
    )
    # the outer axes' labels and the colour bar need room: with 10 px margins they were cut off. No title in
    # the figure: it sat on the axis names (the page captions the chart instead).
    figure.update_layout(**{**LAYOUT, "height": 380, "margin": {"l": 70, "r": 90, "t": 50, "b": 30}})
    return figure


PARALLEL_CAPTION = (
    "Settings of each completed trial (one line each) against its validation accuracy (a multi-label sweep's mAP): the "
    "colour."
)


def _dimension(name: str, values: list[Any]) -> dict[str, Any]:
    label = SEARCHABLE[name].label
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric and name == "learning_rate":  # a log axis: equal steps for each factor of ten
        logs = [math.log10(v) for v in values]
        ticks = list(range(math.floor(min(logs)), math.ceil(max(logs)) + 1))
        return {"label": label, "values": logs, "tickvals": ticks, "ticktext": [f"1e{t}" for t in ticks]}
    if numeric:
        distinct = sorted(set(values))
        if len(distinct) > 8:
            return {"label": label, "values": values}
        # few values: ticks at exactly those (a batch size of 32 everywhere read 28.8-35.2; 1 and 2 views, 1.2)
        low, high = (distinct[0], distinct[-1]) if len(distinct) > 1 else (distinct[0] - 1, distinct[0] + 1)
        return {
            "label": label,
            "values": values,
            "range": [low, high],
            "tickvals": distinct,
            "ticktext": [f"{v:.3g}" for v in distinct],  # 0.078, not 0.0780093
        }
    order = sorted({str(v) for v in values})
    shown = ["none" if (name == "head" and v == "") else v for v in order]
    return {
        "label": label,
        "values": [order.index(str(v)) for v in values],
        "tickvals": list(range(len(order))),
        "ticktext": shown,
    }


def importance_figure(importance: dict[str, float]) -> go.Figure:
    """Optuna's importance of each setting, largest at the top."""
    ranked = sorted(importance.items(), key=lambda item: item[1])
    figure = go.Figure(
        go.Bar(
            x=[v for _, v in ranked],
            y=[SEARCHABLE[k].label if k in SEARCHABLE else k for k, _ in ranked],
            orientation="h",
            marker={"color": "#2f6db5"},
            hovertemplate="%{y}: %{x:.0%}<extra></extra>",
        )
    )
    figure.update_layout(title="Which settings mattered most", xaxis={"tickformat": ".0%"}, **LAYOUT)
    return figure
