"""Monitor: what a served model has been asked and answered, from the prediction log, with drift tests."""

from __future__ import annotations

import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.results.probabilities.reference import Reference, reference_stamp
from core.runs.record import RunNotFound
from core.serving import drift
from core.serving.log import PredictionLog
from pages.ui import common, plain, teaching
from pages.ui.navigation import page_file

LIVE_EVERY = 5.0
WINDOWS = {"last hour": 3600, "last 24 hours": 86400, "last 7 days": 7 * 86400, "everything": None}

st.title("Monitor")
st.caption(
    "Every prediction of a single-label run, by the server, the Predict page and (when asked) the CLI, is logged. "
    "Here they are set against what the model saw in training and validation, so a change in what it is sent shows."
)
teaching.explain("monitoring")


def not_logged_words(runs) -> str:
    """What Monitor leaves out: the multi-label runs, whose predictions no predictor logs yet (walk 54: the page
    sent a person to classify photos with one and come back, to find nothing)."""
    ids = ", ".join(run.run_id[:6] for run in runs[:5]) + (", …" if len(runs) > 5 else "")
    return (
        f"Monitor covers single-label runs only. A multi-label run's predictions (here: run {ids}) are not logged, "
        "on the server, on Predict or from the CLI (the log keeps one class a photo), so classifying photos with "
        "one adds nothing to this page. Its test figures are on Evaluate."
    )


models = [run for run in common.runs() if run.has_model]
multilabel_runs = [run for run in models if run.multilabel]
log = PredictionLog.of_store(common.models_root())
seen = log.models()
if not seen:
    how = "Start the server on the Serve page (or classify photos on Predict) and come back."
    if multilabel_runs and all(run.multilabel for run in models):
        how = "Only a single-label run's predictions are logged, and there is no such model yet."
    elif multilabel_runs:
        how = (
            "Start the server on the Serve page (or classify photos on Predict) with a single-label run and come back."
        )
    st.info(f"Nothing logged yet. {how}", icon=":material/monitoring:")
    if multilabel_runs:
        st.caption(not_logged_words(multilabel_runs))
    st.page_link(page_file("serve"), label="Go to Serve", icon=":material/arrow_forward:")
    st.stop()
if multilabel_runs:
    st.caption(not_logged_words(multilabel_runs))

run_ids = list(dict.fromkeys(run_id for _, run_id, _ in seen))
names = {run_id: sorted({m for m, r, _ in seen if r == run_id}) for run_id in run_ids}
controls = st.columns([3, 1])
run_id = controls[0].selectbox(
    "Model", run_ids, format_func=lambda r: f"{r} (asked as {', '.join(names[r])})", key="monitor_run"
)
window = controls[1].selectbox("Period", list(WINDOWS), index=1, key="monitor_window")


@st.cache_data(show_spinner=False, max_entries=8)
def load_reference(run_dir: str, stamp: float) -> Reference | None:
    return Reference.load(run_dir)


@st.fragment(run_every=LIVE_EVERY)
def panel() -> None:
    try:
        run = common.store().get(run_id)
    except RunNotFound:
        st.warning(f"Run {run_id} is no longer in the store; its log rows remain.")
        return
    seconds = WINDOWS[window]
    rows = log.read(since=time.time() - seconds if seconds else None, run_id=run_id, with_features=True)
    reference = load_reference(str(run.directory), reference_stamp(run.directory))
    report = drift.report(rows, run.classes, reference)
    if not report.rows:
        st.info("No prediction of this model in that period.")
        return
    if report.repeats is not None:  # the alarms below are then about who sends, not about the photos people send
        st.warning(f"**Mostly repeated inputs.** {plain.md(report.repeats.text)}", icon=":material/repeat:")
    for alarm in report.alarms:
        if report.repeats is not None:  # an alarm about who sends: said in its headline, and not in red
            st.warning(
                f"**{alarm.name}: {alarm.value:.3g}**, over its threshold ({alarm.threshold}) because of the "
                f"repeated inputs above, not (as far as this window can tell) a change in what people send. "
                f"Otherwise it would mean: {alarm.meaning}",
                icon=":material/repeat:",
            )
            continue
        st.error(
            f"**{alarm.name}: {alarm.value:.3g}** (threshold {alarm.threshold}). {alarm.meaning}",
            icon=":material/warning:",
        )
    if reference is None:
        st.warning(
            "This run has no reference yet (it is computed when the server or the Predict page first loads it), "
            "so the drift tests against training and validation are not shown."
        )
    top = st.columns(4)
    top[0].metric("Predictions", report.rows)
    top[1].metric("Latency p50", f"{report.latency['p50']:.0f} ms")
    top[2].metric("Latency p95", f"{report.latency['p95']:.0f} ms")
    ood = next(c for c in report.checks if c.name == "out-of-distribution rate")
    top[3].metric("Out of distribution", "-" if ood.value is None else f"{ood.value:.1%}")

    left, right = st.columns(2)
    with left:
        st.markdown("**Requests over time**")
        st.bar_chart(report.traffic, y="requests", height=220)
    with right:
        st.markdown("**Confidence over time** (mean top probability; dashed: validation)")
        figure = go.Figure(
            go.Scatter(x=report.confidence.index, y=report.confidence["confidence"], mode="lines+markers")
        )
        if reference is not None:
            figure.add_hline(y=float(np.mean(reference.val_confidence)), line_dash="dash", line_color="gray")
        figure.update_layout(height=220, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis={"range": [0, 1]})
        st.plotly_chart(figure, key="monitor_confidence", config={"displayModeBar": False})
    st.markdown("**Predicted classes vs the training mix**")
    mix = report.class_mix.set_index("class")
    st.bar_chart(mix, stack=False, height=240)
    st.markdown("**Drift tests**")
    st.dataframe(
        [
            {
                "test": c.name,
                "value": c.value,
                "threshold": c.threshold,
                "alarm": c.alarm,
                "note": ("mostly repeated inputs: about the sender. " if c.alarm and report.repeats else "") + c.detail,
            }
            for c in report.checks
        ],
        hide_index=True,
        width="stretch",
        column_config={"value": st.column_config.NumberColumn(format="%.3g")},
    )
    feedback = report.feedback
    if feedback.get("count"):
        st.metric(
            "Accuracy on feedback",
            f"{feedback['accuracy']:.0%}",
            help="Of the predictions people corrected or confirmed",
        )
        st.caption(
            f"{feedback['right']} of {feedback['count']} predictions with feedback were right. **Biased**: people "
            "mostly report mistakes, so this is far below the real accuracy; read it as a count of known errors."
        )
    else:
        st.caption('No feedback yet: correct predictions on the Predict page ("wrong? it is …").')


panel()
