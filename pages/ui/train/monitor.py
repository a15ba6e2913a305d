"""One run watched on the Train page: its curves (a Plotly figure, rebuilt only when its metrics change), progress,
stop controls, result and settings.
"""

from __future__ import annotations

import time

import plotly.graph_objects as go
import streamlit as st

from core.data.corrections import RELABEL, target_text
from core.data.corrections import summary as correction_summary
from core.data.datasets import SPLIT_NAMES
from core.processes import JobState
from core.runs.curves import RunProgress, batch_curve, epoch_curves, format_duration, phase_boundary
from core.runs.record import MAX_NAME_LENGTH, Run
from core.settings.options import run_command
from core.sharing.people import LOCAL_USER
from core.tracking import background as background_tracking
from core.tracking import run_url
from pages.ui import auth, common, plain, teaching
from pages.ui.navigation import page_file
from pages.ui.train.launch import prefill_from
from pages.ui.train.runs import delete_run, kill_run, save_label, stop_run

FORCE_STOP_AFTER = 20  # seconds a stop request may take before "Force stop" is offered


@st.cache_data(show_spinner=False, max_entries=16)
def curves_figure(run_id: str, stamp: tuple, _metrics: list[dict], metric: str) -> go.Figure:
    """Loss, accuracy or (a multi-label run's) mAP over epochs (and within them), built once per new metrics line
    (`stamp`). mAP is measured on the validation photos only."""
    metrics = _metrics  # not hashed by the cache: the stamp stands for it
    frame, batches, boundary = epoch_curves(metrics), batch_curve(metrics), phase_boundary(metrics)
    title = {"loss": "Loss", "accuracy": "Accuracy", "map": "Validation mAP"}[metric]
    figure = go.Figure()
    if metric in batches and not batches.empty and batches[metric].notna().any():
        figure.add_scatter(
            x=batches["x"],
            y=batches[metric],
            mode="lines+markers" if len(batches) < 3 else "lines",
            name="train (within epoch)",
            line={"width": 1, "color": "rgba(184,51,106,0.35)"},
        )
    if not frame.empty and metric in frame:
        figure.add_scatter(
            x=frame["epoch"], y=frame[metric], mode="lines+markers", name="train", line={"color": "#b8336a"}
        )
    if not frame.empty:
        figure.add_scatter(
            x=frame["epoch"],
            y=frame[f"val_{metric}"],
            mode="lines+markers",
            name="validation",
            line={"color": "#2f6db5", "dash": "dash"},
        )
    if boundary is not None:
        figure.add_vline(
            x=boundary,
            line_dash="dot",
            line_color="gray",
            annotation_text="fine-tuning starts",
            annotation_position="top left",
        )
    figure.update_layout(
        title=title,
        height=300,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis_title="epoch",
        legend={"orientation": "h", "y": -0.25},
        hovermode="x unified",
    )
    if metric in ("accuracy", "map"):
        figure.update_yaxes(range=[0, 1.02])
    return figure


def monitor(run: Run, metrics: list[dict], state: RunProgress) -> None:
    """The selected run: state, progress and ETA, live curves, Stop, and the result or the error."""
    header = st.container(horizontal=True, vertical_alignment="center")
    with header:
        st.markdown(f"**{plain.md(common.run_title(run))}** · {plain.md(run.dataset_name)} · `{run.run_id}`")
        common.state_badge(run)
        where = f" on {run.status.node}" if run.status.node else ""
        owner = " (the process waiting for Ray)" if run.status.node else ""
        runtime = f" · {run.status.runtime}" if run.status.runtime else ""
        device = run.status.device or "device: chosen when its process has started"
        st.caption(f"{device}{runtime}{where} · pid {run.status.pid or '-'}{owner}")
    if run.note:
        st.caption(plain.md(run.note))
    if run.reused_from:
        source = run.reused_from
        st.caption(
            f":material/content_copy: {plain.md(run.owner)}'s own copy of {plain.md(source.get('owner', '?'))}'s "
            f"identical run {plain.code(source['run_id'])} (the same settings and data): its files are shared on "
            "disk, nothing was trained twice."
        )

    if run.active:
        st.progress(state.fraction, text=f"whole run {state.fraction:.0%} · {state.text or 'starting'}")
        if (run.status.parallel or "").startswith("data parallel"):
            st.caption(f"Training {run.status.parallel}.")
        stop_controls(run)
    elif run.state is JobState.FAILED:
        st.error(f"This run failed: {plain.md(run.status.error or 'no error recorded')}", icon=":material/error:")
    if run.evaluated or (run.multilabel and run.has_model and run.has_analysis):  # multi-label: multilabel_evaluation.*
        result(run, state)
    elif run.state is JobState.STOPPED:
        st.info("Stopped on request before its first epoch finished: there is no model to evaluate.")
    common.random_start_notice(run)
    curves(run, metrics, state)
    with st.expander("Log", icon=":material/terminal:", expanded=run.state is JobState.FAILED):
        st.code(common.shown_log(common.store().log_tail(run.run_id, 40)) or "(empty)", language=None)
    settings(run)


def curves(run: Run, metrics: list[dict], state: RunProgress) -> None:
    """Loss and accuracy as soon as there is a point; until then, what the run is doing instead."""
    has_points = any(m.get("kind") in ("batch", "epoch") for m in metrics)
    if not has_points:
        with st.container(border=True, height=160, vertical_alignment="center"):
            if run.active and state.stage_fraction is not None:
                st.progress(state.stage_fraction, text=state.stage_text)
                if (state.stage or "").startswith("extracting features"):
                    st.caption(
                        "ResNet-50 runs over each image once (and over each augmented view) and the result is "
                        f"cached: the {run.train_config.epochs} head epoch(s) then take seconds"
                        + (
                            f" (the {run.train_config.fine_tune_epochs} fine-tuning epoch(s) after them run on "
                            "images, far slower)"
                            if run.train_config.fine_tune_epochs
                            else ""
                        )
                        + ", and their curves appear here."
                    )
                else:
                    st.caption(f"The curves appear here when the first of {state.epochs_total} epoch(s) runs.")
            elif run.active:
                st.caption(f"{state.stage or 'Starting'}… The curves appear here when the first epoch runs.")
            else:
                st.caption("This run ended before its first epoch ran: there are no curves.")
        return
    stamp = (len(metrics), metrics[-1].get("time"))
    left, right = st.columns(2)
    quiet = {"displayModeBar": False}
    left.plotly_chart(curves_figure(run.run_id, stamp, metrics, "loss"), key=f"train_loss_{run.run_id}", config=quiet)
    measure = "map" if run.multilabel else "accuracy"  # a multi-label run's measure: mean average precision
    right.plotly_chart(curves_figure(run.run_id, stamp, metrics, measure), key=f"train_acc_{run.run_id}", config=quiet)
    teaching.explain("curves")


def stop_controls(run: Run) -> None:
    if not auth.can_change(run):
        auth.read_only_note(run)
        return
    if run.stop_requested_at is None:
        st.button("Stop", icon=":material/stop:", key=f"train_stop_{run.run_id}", on_click=stop_run, args=(run.run_id,))
        return
    waited = time.time() - run.stop_requested_at
    st.caption(
        f"Stopping (asked {format_duration(waited)} ago): the current batch finishes, then the best weights so far "
        "are saved and evaluated on the test split."
    )
    if waited > FORCE_STOP_AFTER:
        st.button(
            "Force stop",
            icon=":material/dangerous:",
            key=f"train_kill_{run.run_id}",
            on_click=kill_run,
            args=(run.run_id,),
        )


def result(run: Run, state: RunProgress) -> None:
    status = run.status
    cols = st.columns(4)
    if run.multilabel:
        cols[0].metric(
            "Test mAP",
            f"{status.map:.3f}" if status.map is not None else "-",
            help="Mean average precision over the labels, on the test photos: how well each label's photos rank "
            "above the others (a random scorer gets about each label's share of photos).",
        )
        cols[1].metric("Labels", len(run.classes), help="Each with a threshold tuned on the validation photos.")
    else:
        cols[0].metric("Test accuracy", f"{status.accuracy:.3f}" if status.accuracy is not None else "-")
        cols[1].metric("Macro F1", f"{status.macro_f1:.3f}" if status.macro_f1 is not None else "-")
    cols[2].metric("Best epoch", status.best_epoch or "-")
    cols[3].metric("Time", format_duration(state.elapsed_seconds) if state.elapsed_seconds else "-")
    if run.state is JobState.STOPPED:
        st.caption("Stopped on request: it kept its best weights so far, and they were evaluated.")
    elif status.note:
        st.caption(plain.md(status.note[0].upper() + status.note[1:] + "."))
    mlflow_runs(run)
    if run.multilabel:
        st.caption(
            "A multi-label run: the Evaluate page gives its AP, precision, recall and F1 per label; Predict, Serve and "
            "`python -m core predict` give each photo's labels at or above their thresholds (tuned on the validation "
            "photos) and every label's score; Compare sets multi-label runs' AP per label side by side, with a paired "
            "test; Explore maps its photos by label and lists the label lists it doubts."
        )
    st.page_link(
        page_file("evaluate"),
        label="Study it on the Evaluate page",
        icon=":material/grid_on:",
        query_params={"evaluate_run": run.run_id},
    )


def mlflow_runs(run: Run) -> None:
    """Where the run was logged to MLflow (`--track`, the form's field): the MLflow run, linked to its page; and a
    cached run's logging in the background (launched with the MLflow field filled) while it runs or if it failed."""
    for uri, entry in (run.status.mlflow or {}).items():
        name = f"MLflow run {entry.get('run_id')}"
        url = run_url(uri, entry)
        shown = f"[{plain.md(name)}](<{url.replace('>', '%3E')}>)" if url else plain.code(name)
        st.caption(f"Logged to MLflow at {plain.code(uri)}: {shown}")
    logging = background_tracking.status(run)
    if logging is None or logging.note in (run.status.mlflow or {}):
        return
    if logging.active:
        st.fragment(_watch_logging, run_every=2)(run.run_id)
    elif logging.state is JobState.FAILED:
        st.warning(
            f"Could not log this run to MLflow at {plain.code(logging.note or '')}: {plain.md(logging.error or '')}. "
            "Launch the same settings again with the MLflow field filled to try again (nothing trains).",
            icon=":material/cloud_off:",
        )


def _watch_logging(run_id: str) -> None:
    """The background logging's line, until it ends (then the whole page once more: the link or the failure)."""
    run = common.store().get(run_id)
    logging = background_tracking.status(run)
    if logging is None or not logging.active:
        st.rerun(scope="app")
    since = time.time() - (logging.queued_at or time.time())
    st.caption(
        f":material/cloud_upload: Logging this run to MLflow at {plain.code(logging.note or '')} in the background "
        f"({since:.0f} s so far): these settings were trained already, so nothing trains; the link shows here when "
        "it is logged."
    )


def settings(run: Run) -> None:
    with st.expander("Settings, name and command of this run", icon=":material/settings:"):
        st.markdown("**Reproduce it** from a terminal (the same command finds this run, cached):")
        st.code(
            run_command(run, dataset=common.shown_path(run.dataset_path, argument=True)),
            language="bash",
            wrap_lines=True,
        )
        if run.corrections:
            whose = (
                ""
                if not run.corrections_by
                else ", the marks made on this machine"
                if run.corrections_by == LOCAL_USER
                else f", {plain.md(run.corrections_by)}'s marks"
            )
            st.markdown(f"**Label corrections applied** ({correction_summary(run.corrections)}{whose}):")
            st.dataframe(
                [
                    {
                        "photo": path,
                        "correction": e.get("action"),
                        "to": target_text(e) if e.get("action") == RELABEL else "",
                    }
                    for path, e in run.corrections.items()
                ],
                hide_index=True,
                key=f"train_corrections_{run.run_id}",
            )
        mine = auth.can_change(run)
        if not mine:
            auth.read_only_note(run)
        name_col, note_col = st.columns([1, 2])
        name_col.text_input(
            "Name",
            value=run.name,
            max_chars=MAX_NAME_LENGTH,
            key=f"train_name_{run.run_id}",
            placeholder="e.g. baseline",
            disabled=not mine,  # a classmate's run: read, not typed into beside "you can look at it, not change it"
        )
        note_col.text_input(
            "Note", value=run.note, key=f"train_note_{run.run_id}", placeholder="what you tried", disabled=not mine
        )
        if mine:
            st.button("Save name and note", key=f"train_label_{run.run_id}", on_click=save_label, args=(run.run_id,))
        st.button(
            "New run from these settings",
            icon=":material/content_copy:",
            key=f"train_prefill_{run.run_id}",
            on_click=prefill_from,
            args=(run.run_id,),
            help="Opens the New run form filled with this run's settings, to change one thing and compare.",
        )
        st.json(run.settings, expanded=False)
        split = run.status.split
        if split:
            source = split.get("source")
            name = SPLIT_NAMES.get(source, source)  # as the Dataset page names it
            if source == "random":
                name += f", seed {run.train_config.split_draw_seed}"
            st.caption(
                f"Split ({name}): {split.get('train')} train / {split.get('val')} validation / "
                f"{split.get('test')} test images. " + plain.md(" ".join(split.get("notes", [])))
            )
        if not run.active and auth.can_change(run):
            with st.popover("Delete this run", icon=":material/delete:"):
                whose = "" if run.owner == auth.current_user().id else f"This is {plain.md(run.owner)}'s run. "
                st.caption(f"{whose}Removes its model, metrics and log from the run store. This cannot be undone.")
                st.button(
                    "Delete", type="primary", key=f"train_delete_{run.run_id}", on_click=delete_run, args=(run.run_id,)
                )
