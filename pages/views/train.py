"""Train: a form for the training settings, Launch (a background process), and the runs, live."""

from __future__ import annotations

import shlex

import streamlit as st

from core.processes import keep_warm_launcher
from core.runs.curves import progress
from core.runs.record import Run, RunNotFound, RunUnreadable
from core.settings.options import train_command
from core.train.queue import places
from pages.ui import auth, common, plain
from pages.ui.navigation import TRAIN_RUN, page_file
from pages.ui.train import form as train_form
from pages.ui.train import tracking
from pages.ui.train.launch import launch, plan_text, prefilled_note, take_prefill_link
from pages.ui.train.monitor import monitor
from pages.ui.train.runs import runs_table, show_notice, unreadable_runs

LIVE_EVERY = 2.0  # seconds between redraws of the runs while one is active

st.title("Train")
# The runs (and learning-rate searches) launched from this server after its first fork from a process that imported
# Keras already (core.processes.launcher): each starts ~4 s sooner.
keep_warm_launcher(now=False)
st.caption(
    "Transfer learning in two phases: first only the new head learns while ResNet-50 stays frozen, "
    "then (optionally) the top ResNet stages are unfrozen and fine-tuned at a lower learning rate."
)


# ----------------------------------------------------------------------------- the runs


def runs_area() -> list[Run]:
    """The run list, the run picker and the picked run's monitor; returns the runs as listed."""
    everyone = common.runs()
    all_runs = auth.scope_runs(everyone, "train_scope")
    if not all_runs:  # "Mine" and none yet (the choice says so)
        return everyone
    # each active run's metrics.jsonl is read once per redraw, for the table and the monitor alike
    metrics = {run.run_id: common.store().read_metrics(run.run_id) for run in all_runs if run.active}
    states = {run.run_id: progress(run, metrics[run.run_id]) for run in all_runs if run.active}
    runs_table(all_runs, states, places(everyone))
    if auth.current_user().admin:
        unreadable_runs(common.unreadable_runs())
    ids = [run.run_id for run in all_runs]
    labels = {run.run_id: common.run_label(run) for run in all_runs}
    selected = common.job_picker("Watch run", all_runs, ids, labels, TRAIN_RUN)
    try:
        run = common.store().refresh(common.store().get(selected))
    except RunNotFound:
        st.warning(f"Run {selected} is gone from the run store.")
        return all_runs
    except RunUnreadable as e:
        st.warning(plain.md(e), icon=":material/broken_image:")
        return all_runs
    run_metrics = metrics.get(selected)
    if run_metrics is None:
        run_metrics = common.store().read_metrics(selected)
    monitor(run, run_metrics, states.get(selected) or progress(run, run_metrics))
    return all_runs


@st.fragment(run_every=LIVE_EVERY)
def live_runs_area() -> None:
    if not any(run.active for run in runs_area()):
        st.rerun(scope="app")  # all finished: draw once more as a still page and stop polling


take_prefill_link()
all_runs = common.runs()
if "train_tab" not in st.session_state:
    st.session_state["train_tab"] = "Runs" if all_runs else "New run"
runs_tab, new_tab = st.tabs(["Runs", "New run"], key="train_tab", on_change="rerun")

with new_tab:
    prefilled_note()
    dataset, config = train_form.render()
    corrections = train_form.corrections_choice(dataset)
    ray_address = train_form.ray_choice()
    track = tracking.track_choice()
    if config is not None:
        with st.container(border=True):
            st.markdown(plan_text(config))
            train_form.disk_note(dataset, config)
            train_form.duration_note(dataset, config)
            st.caption("The same run from a terminal (copy it with the button at the right):")
            flag = "kept" if corrections else "none"
            command = train_command(
                common.shown_path(dataset, argument=True), config, corrections=flag
            )  # shared: a name
            command += f" --ray {shlex.quote(ray_address)}" if ray_address else ""
            command += f" --track {shlex.quote(track)}" if track else ""
            st.code(command, language="bash", wrap_lines=True)
            if corrections:
                st.caption(
                    "`--corrections kept` applies the corrections kept for the dataset when the command runs. Once "
                    "launched, the run's own command (under its settings) pins exactly these, as "
                    "`--corrections run:<its id>`."
                )
    st.page_link(
        page_file("sweep"),
        label="Not sure which learning rate, head or dropout? A sweep tries many on cached features in minutes",
        icon=":material/tune:",
    )
    if "train_error" in st.session_state:
        st.error(st.session_state.pop("train_error"), icon=":material/error:")
    st.button(
        "Launch training",
        type="primary",
        icon=":material/rocket_launch:",
        disabled=config is None,
        key="train_launch",
        on_click=launch,
        args=(dataset, config, corrections, ray_address, track),
    )

with runs_tab:
    show_notice()
    if not all_runs:
        st.caption("No runs yet. Set one up on the New run tab and launch it; it trains in the background.")
    elif runs_tab.open:  # the hidden tab does no polling
        if any(run.active for run in all_runs):
            live_runs_area()
        else:
            runs_area()
