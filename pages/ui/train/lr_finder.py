"""The New run form's "Find a learning rate": the range test in the background, its curve, one click to use it.

The test runs as a job of its own (core.train.lr_find_job), so decoding and feature extraction (a minute or
more on a CPU) do not hold the page: the panel beside the rate's field starts it, watches it in a fragment,
then draws the curve with the suggestion marked and a button that puts the suggestion into the field.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st

from core.data.datasets import DatasetError
from core.processes import JobState
from core.settings.config import TrainConfig
from core.train import lr_find_job
from core.train.lr_find import FINE_TUNE, HEAD, RangeTest, rate_field, rounded
from pages.ui import common, dataset_choice, plain, teaching

POLL_SECONDS = 1.0
# The form field each phase's panel sits beside.
FIELDS = {rate_field(phase): phase for phase in (HEAD, FINE_TUNE)}
COLOURS = {"smoothed": "#2f6db5", "raw": "#9aa7b8", "suggested": "#b8336a", "steepest": "#e08a1e", "minimum": "#2e8b57"}


def short(rate: float) -> str:
    """3.2e-4, as a button says it (Python's 3.2e-04 has a zero people do not type)."""
    mantissa, exponent = f"{rounded(rate):.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def panel(slot, field: str, widget_key: str, dataset: str | None, config: TrainConfig | None, corrections) -> None:
    """Draw the finder of `field`'s phase into `slot` (beside the field): the button, its progress or its result."""
    phase = FIELDS[field]
    with slot:
        if phase == FINE_TUNE and (config is None or not config.fine_tune_epochs):
            return  # no phase 2, no rate to find for it
        if dataset is None or config is None:
            st.button("Find a learning rate", key=f"train_lr_find_{phase}", disabled=True, help="Complete the form.")
            return
        try:
            fingerprint = dataset_choice.scan(dataset).fingerprint
        except (DatasetError, OSError) as e:
            st.caption(f"No range test: {plain.md(e)}")
            return
        finder = lr_find_job.read(common.data_root(), fingerprint, config, phase, corrections)
        if finder is not None and finder.active:
            st.fragment(_watch, run_every=POLL_SECONDS)(finder.key, phase)
        elif finder is not None and finder.result is not None:
            _result(finder.result, field, widget_key)
        else:
            _offer(finder, phase, (dataset, fingerprint, config, phase, corrections))


def _offer(finder, phase: str, request: tuple) -> None:
    if finder is not None and finder.state is JobState.FAILED:
        st.error(
            f"The range test failed: {plain.md(finder.status.error or 'no reason recorded')}", icon=":material/error:"
        )
        log = common.shown_log(finder.log_tail(20))
        if log:
            with st.expander("Its log", icon=":material/description:"):
                st.code(log, language=None)
    elif finder is not None and finder.state is JobState.STOPPED:
        st.caption("The range test was stopped before it finished.")
    what = (
        "the head on the cached features, as phase 1 trains it (seconds, once the features are cached)"
        if phase == HEAD
        else "phase 1's head first, then the unfrozen stages on photos (slow on a CPU)"
    )
    st.button(
        "Find a learning rate",
        key=f"train_lr_find_{phase}",
        icon=":material/search_insights:",
        on_click=_start,
        args=request,
        help=f"A range test: a few hundred steps of {what}, the rate growing from 1e-7 to 10, the loss recorded; "
        "then a suggested rate and why.",
    )


def _start(dataset: str, fingerprint: str, config: TrainConfig, phase: str, corrections) -> None:
    lr_find_job.launch(common.data_root(), common.models_root(), dataset, fingerprint, config, phase, corrections)


def _watch(key: str, phase: str) -> None:
    finder = lr_find_job.read_key(common.data_root(), key)
    if finder is None or not finder.active:
        st.rerun(scope="app")  # it ended: draw the form again with its curve (or its error)
    done, total = finder.status.stage_progress or (0, 0)
    stage = finder.status.stage or ("waiting to start" if finder.state is JobState.QUEUED else "starting")
    st.progress(min(1.0, done / total) if total else 0.0, text=common.progress_text(stage, done, total))
    if stage.startswith(("decoding", "extracting")):
        st.caption(
            "The photos are decoded and passed through the backbone once (a minute or more on a CPU); a run on "
            "these settings reuses them. The range test itself then takes seconds."
        )
    st.button("Stop", key=f"train_lr_find_stop_{phase}", icon=":material/stop:", on_click=_stop, args=(key,))


def _stop(key: str) -> None:
    finder = lr_find_job.read_key(common.data_root(), key)
    if finder is not None:
        lr_find_job.stop(finder)


def _result(result: RangeTest, field: str, widget_key: str) -> None:
    st.plotly_chart(curve_figure(result), key=f"train_lr_find_chart_{result.phase}", config={"displayModeBar": False})
    st.caption(
        "Dots: each step's own loss; line: smoothed. :red[●] the suggestion; :orange[▼] the steepest fall; "
        ":green[■] the lowest loss's rate / 10; dashed: the loss of guessing every class equally (ln of the number "
        "of classes): below it the head has learnt something."
    )
    rate = rounded(result.suggested_lr)
    st.caption(f"Suggested: **{short(rate)}**. {result.reason}")  # the engine's words, not a person's
    st.caption(
        f"Beside it: the steepest fall at {short(result.steepest_lr)}, and the lowest loss's rate / 10 at "
        f"{short(result.min_lr_over_10)}. {result.steps} steps in {result.seconds:.0f} s; it ended when "
        f"{result.stopped}."
    )
    current = st.session_state.get(widget_key)
    usable = 0 < rate < 1
    st.button(
        f"Use {short(rate)}",
        key=f"train_lr_use_{result.phase}",
        icon=":material/check:",
        on_click=_use,
        args=(widget_key, rate),
        disabled=not usable or current == rate,
        help="Put the suggestion into the learning-rate field." if usable else "A rate must be between 0 and 1.",
    )
    teaching.explain("lr_finder")


def _use(widget_key: str, rate: float) -> None:
    st.session_state[widget_key] = rate  # before the widget is drawn: the select slider offers it from now on


def curve_figure(result: RangeTest) -> go.Figure:
    """The smoothed loss against the rate (log scale), each step's own loss faint under it, the suggestion marked."""
    lrs = [lr for lr, _ in result.curve]
    smoothed = [loss for _, loss in result.curve]
    figure = go.Figure()
    figure.add_scatter(
        x=lrs,
        y=result.raw_losses,
        mode="markers",
        name="each step",
        marker={"size": 3, "color": COLOURS["raw"]},
        opacity=0.6,
    )
    figure.add_scatter(x=lrs, y=smoothed, mode="lines", name="smoothed", line={"color": COLOURS["smoothed"]})
    for name, rate, colour, symbol in (
        ("steepest", result.steepest_lr, COLOURS["steepest"], "triangle-down"),
        ("lowest / 10", result.min_lr_over_10, COLOURS["minimum"], "square"),
        ("suggested", result.suggested_lr, COLOURS["suggested"], "circle"),
    ):
        at = min(range(len(lrs)), key=lambda i, rate=rate: abs(math.log(lrs[i] / rate)))
        suggested = name == "suggested"
        figure.add_scatter(
            x=[lrs[at]],
            y=[smoothed[at]],
            mode="markers+text" if suggested else "markers",
            name=name,
            text=[short(rate)] if suggested else None,
            textposition="top right",
            textfont={"color": colour},
            marker={"size": 13 if suggested else 10, "color": colour, "symbol": symbol},
        )
    classes = int(result.config.get("classes") or 0)
    chance = math.log(classes) if classes > 1 else None
    if chance is not None:
        figure.add_hline(y=chance, line_dash="dash", line_color="#888", line_width=1)
    lowest, highest = min(smoothed), max(smoothed)
    top = highest + 0.05 * (highest - lowest) + 1e-3  # the whole curve, the explosion included (it stops at 4x)
    bottom = min(lowest, chance if chance is not None else lowest)
    figure.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        showlegend=False,  # the column is narrow: the caption under the chart says what is what
        xaxis={"type": "log", "title": "learning rate (log scale)", "exponentformat": "power"},
        yaxis={"title": "loss", "range": [max(0.0, bottom - 0.08 * (top - bottom)), top]},
    )
    return figure
