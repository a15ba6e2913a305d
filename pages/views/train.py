"""Train: a form for the training settings, Launch (a background process), and the runs, live."""

from __future__ import annotations

import shlex
import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import sharing
from core.data.corrections import summary as correction_summary
from core.processes import JobState
from core.runs.curves import RunProgress, batch_curve, epoch_curves, format_duration, phase_boundary, progress
from core.runs.record import MAX_NAME_LENGTH, Run, RunNotFound, RunUnreadable
from core.settings.config import TrainConfig
from core.settings.options import describe_weights, run_command, train_command
from core.train import jobs
from core.train.jobs import dataset_corrections
from core.train.queue import Place, places
from pages.ui import auth, common, plain, teaching, train_form
from pages.ui.navigation import page_file

FORCE_STOP_AFTER = 20  # seconds a stop request may take before "Force stop" is offered
LIVE_EVERY = 2.0  # seconds between redraws of the runs while one is active

st.title("Train")
st.caption(
    "Transfer learning in two phases: first only the new head learns while ResNet-50 stays frozen, "
    "then (optionally) the top ResNet stages are unfrozen and fine-tuned at a lower learning rate."
)


SCHEDULE_WORDS = {
    "constant": "",
    "cosine": ", decaying to zero along a cosine",
    "plateau": ", lowered whenever validation loss stalls",
}


def plan_text(config: TrainConfig) -> str:
    """What the run will do, in words, for people learning transfer learning."""
    steps = []
    if config.weights == "none":
        steps.append(
            "**Random start**: ResNet-50 begins with random weights, so its 2,048 features are random mixes of "
            "the pixels. The head can still learn colour and rough texture, but expect much lower accuracy than "
            "from ImageNet weights, and confident mistakes."
        )
    else:
        steps.append(f"**Start**: ResNet-50 with {describe_weights(config.weights)} weights, a new head on top.")
    if config.epochs:
        where = "on cached backbone features" if config.feature_cache else "on images through the frozen ResNet-50"
        views = (
            f", {config.augmented_views} augmented view(s) per image besides the clean one"
            if config.feature_cache and config.augment.enabled
            else ""
        )
        steps.append(
            f"**Phase 1**: {config.epochs} epochs training only the head, {where}{views}, "
            f"learning rate {config.learning_rate:g}{SCHEDULE_WORDS[config.lr_schedule]}."
        )
    if config.fine_tune_epochs:
        steps.append(
            f"**Phase 2**: {config.fine_tune_epochs} epochs fine-tuning the top {config.unfreeze_stages} "
            f"ResNet stage(s) (BatchNorm frozen) at {config.fine_tune_learning_rate:g}"
            f"{SCHEDULE_WORDS[config.lr_schedule]}."
        )
    steps.append("The weights of the epoch with the lowest validation loss are kept and evaluated on the test split.")
    return "\n\n".join(steps)


# ----------------------------------------------------------------------------- callbacks


def launch(dataset: str, config: TrainConfig, corrections: dict | None, ray_address: str | None = None) -> None:
    """Launch button: start the run in the background (or as a task on the Ray cluster), then show it on the
    Runs tab."""
    try:
        user = auth.current_user()
        submission = jobs.launch(
            dataset,
            config,
            common.models_root(),
            common.data_root(),
            corrections=corrections or {},
            owner=user.id,
            max_queued=sharing.max_queued_runs() if auth.shared() else None,
            ray_address=ray_address,
        )
    except (ValueError, OSError) as e:
        st.session_state["train_error"] = f"Could not launch: {e}"
        return
    train_form.remember(dataset, config)
    st.session_state["train_run"] = submission.run_id
    st.session_state["train_tab"] = "Runs"
    kind = {jobs.CACHED: "cached", jobs.ACTIVE: "active"}.get(submission.outcome, "new")
    st.session_state["train_notice"] = (kind, submission.run_id)


def prefill_from(run_id: str) -> None:
    """Copy a run's settings into the New run form and open it."""
    run = common.store().get(run_id)
    train_form.fill_from_config(run.train_config)
    st.session_state[train_form.key("dataset")] = run.dataset_path
    st.session_state[train_form.FORM_DATASET] = run.dataset_path
    common.set_current_dataset(run.dataset_path)
    st.session_state["train_tab"] = "New run"


PREFILL = "train_prefill"  # ?train_prefill=<run id>: open New run filled with that run's settings (Explore's link)


PREFILL_NOTE = "train_prefill_note"


def take_prefill_link() -> None:
    """A run's settings arrived by link (Explore's "Train again with these corrections"): fill the form and open
    it (before the tabs are drawn), and keep what the new run changes for `prefilled_note`."""
    run_id = st.query_params.get(PREFILL)
    if not run_id:
        return
    del st.query_params[PREFILL]
    try:
        run = common.store().find(run_id)
    except (KeyError, ValueError) as e:  # not in the store, not an id, or unreadable
        st.session_state[PREFILL_NOTE] = ("warning", f"Cannot open that run: {e}")
        return
    prefill_from(run.run_id)
    kept = dataset_corrections(common.data_root(), run.dataset_path)
    on_test = _test_photos_among(run, kept)
    test_note = (
        f" {on_test} of them are test photos: the two runs will then be compared on the test photos they still "
        "share (Compare says which dropped out)."
        if on_test
        else ""
    )
    st.session_state[PREFILL_NOTE] = (
        "info",
        f"The form holds run {run.run_id[:6]}'s settings. With the label corrections kept for its dataset now "
        f"({correction_summary(kept)}; the run had {correction_summary(run.corrections)}), the new run differs "
        f"from it only in those.{test_note} Launch it below, or change a setting first.",
    )


def _test_photos_among(run: Run, corrections: dict | None) -> int:
    """How many of `corrections` are photos of the run's test split (0 when it has no stored evaluation)."""
    from core.results.evaluation import Evaluation, EvaluationMissing

    if not corrections:
        return 0
    try:
        test = set(Evaluation.load(run.directory).paths)
    except (EvaluationMissing, OSError, ValueError):
        return 0
    return sum(1 for path in corrections if path in test)


def prefilled_note() -> None:
    kind, text = st.session_state.pop(PREFILL_NOTE, (None, ""))
    if kind == "info":
        st.info(text, icon=":material/edit_note:")
    elif kind == "warning":
        st.warning(text)


def allowed(run_id: str) -> bool:
    """Whether the signed-in user may change this run (the buttons only show when so; this checks again)."""
    try:
        run = common.store().get(run_id)
    except (KeyError, ValueError):
        return False
    if auth.can_change(run):
        return True
    st.session_state["train_error_runs"] = f"Run {run_id} is {run.owner}'s: only they or an admin can change it."
    return False


def stop_run(run_id: str) -> None:
    if allowed(run_id):
        jobs.stop(common.store(), run_id)


def kill_run(run_id: str) -> None:
    if allowed(run_id):
        jobs.kill(common.store(), run_id)


def delete_run(run_id: str) -> None:
    """Remove a finished, failed or stopped run from the store."""
    if not allowed(run_id):
        return
    try:
        common.store().delete(run_id)
    except (ValueError, OSError) as e:
        st.session_state["train_error_runs"] = str(e)
        return
    st.toast(f"Deleted run {run_id}.", icon=":material/delete:")
    st.session_state.pop("train_run", None)


def save_label(run_id: str) -> None:
    if not allowed(run_id):
        return
    try:
        common.store().set_label(
            run_id,
            name=st.session_state.get(f"train_name_{run_id}", ""),
            note=st.session_state.get(f"train_note_{run_id}", ""),
        )
    except (ValueError, OSError) as e:
        st.session_state["train_error_runs"] = str(e)


# ----------------------------------------------------------------------------- the runs


def show_notice() -> None:
    if "train_error_runs" in st.session_state:
        st.error(st.session_state.pop("train_error_runs"), icon=":material/error:")
    notice = st.session_state.pop("train_notice", None)
    if not notice:
        return
    kind, run_id = notice
    if kind == "cached":
        st.info(
            f"Cached: run **{run_id}** already finished with exactly these settings on this data. Showing it.",
            icon=":material/bolt:",
        )
    elif kind == "active":
        st.info(f"Run **{run_id}** with these settings is already training. Showing it.", icon=":material/sync:")
    else:
        st.success(
            f"Launched run **{run_id}** in the background. It keeps going if you close this tab.",
            icon=":material/rocket_launch:",
        )


def runs_table(runs: list[Run], states: dict[str, RunProgress], line: dict[str, Place] | None = None) -> None:
    """The run list: whose, what tells each run apart, what it is doing now (its place in line while it waits
    for the device), and how far the whole run is."""
    rows = []
    line = line or {}
    owners = auth.shared() or len({run.owner for run in runs}) > 1
    for run in runs:
        state = states.get(run.run_id)
        now = state.short_text if state else ""
        if run.run_id in line:
            now = line[run.run_id].waiting_text
        rows.append(
            {
                "run": common.run_title(run),
                **({"owner": run.owner} if owners else {}),
                "dataset": run.dataset_name,
                "state": state.state_label if state else run.state.value,
                "now": now,
                "progress": state.fraction if state else (1.0 if run.state is JobState.DONE else None),
                "accuracy": f"{run.status.accuracy:.3f}" if run.status.accuracy is not None else "",
                "id": run.run_id,
            }
        )
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        key="train_runs_table",
        height=min(320, 35 * (len(rows) + 1) + 3),
        column_config={
            "run": st.column_config.TextColumn("run", help="its name, or the settings that tell it apart"),
            "now": st.column_config.TextColumn("doing now"),
            "progress": st.column_config.ProgressColumn(
                "progress",
                min_value=0,
                max_value=1,
                format="percent",
                help="the whole run: decoding, feature extraction, epochs and evaluation",
            ),
            "accuracy": st.column_config.TextColumn("test accuracy"),
        },
    )


@st.cache_data(show_spinner=False, max_entries=16)
def curves_figure(run_id: str, stamp: tuple, _metrics: list[dict], metric: str) -> go.Figure:
    """Loss or accuracy over epochs (and within them), built once per new metrics line (`stamp`)."""
    metrics = _metrics  # not hashed by the cache: the stamp stands for it
    frame, batches, boundary = epoch_curves(metrics), batch_curve(metrics), phase_boundary(metrics)
    title = "Loss" if metric == "loss" else "Accuracy"
    figure = go.Figure()
    if not batches.empty and batches[metric].notna().any():
        figure.add_scatter(
            x=batches["x"],
            y=batches[metric],
            mode="lines+markers" if len(batches) < 3 else "lines",
            name="train (within epoch)",
            line={"width": 1, "color": "rgba(184,51,106,0.35)"},
        )
    if not frame.empty:
        figure.add_scatter(
            x=frame["epoch"], y=frame[metric], mode="lines+markers", name="train", line={"color": "#b8336a"}
        )
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
    if metric == "accuracy":
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
        st.caption(f"{run.status.device or 'device: deciding'}{where} · pid {run.status.pid or '-'}{owner}")
    if run.note:
        st.caption(run.note)

    if run.active:
        st.progress(state.fraction, text=f"whole run {state.fraction:.0%} · {state.text or 'starting'}")
        if (run.status.parallel or "").startswith("data parallel"):
            st.caption(f"Training {run.status.parallel}.")
        stop_controls(run)
    elif run.state is JobState.FAILED:
        st.error(f"This run failed: {run.status.error or 'no error recorded'}", icon=":material/error:")
    if run.evaluated:
        result(run, state)
    elif run.state is JobState.STOPPED:
        st.info("Stopped on request before its first epoch finished: there is no model to evaluate.")
    common.random_start_notice(run)
    curves(run, metrics, state)
    with st.expander("Log", icon=":material/terminal:", expanded=run.state is JobState.FAILED):
        st.code(common.store().log_tail(run.run_id, 40) or "(empty)", language=None)
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
    right.plotly_chart(
        curves_figure(run.run_id, stamp, metrics, "accuracy"), key=f"train_acc_{run.run_id}", config=quiet
    )
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
    cols[0].metric("Test accuracy", f"{status.accuracy:.3f}" if status.accuracy is not None else "-")
    cols[1].metric("Macro F1", f"{status.macro_f1:.3f}" if status.macro_f1 is not None else "-")
    cols[2].metric("Best epoch", status.best_epoch or "-")
    cols[3].metric("Time", format_duration(state.elapsed_seconds) if state.elapsed_seconds else "-")
    if run.state is JobState.STOPPED:
        st.caption("Stopped on request: it kept its best weights so far, and they were evaluated.")
    elif status.note:
        st.caption(status.note[0].upper() + status.note[1:] + ".")
    st.page_link(
        page_file("evaluate"),
        label="Study it on the Evaluate page",
        icon=":material/grid_on:",
        query_params={"evaluate_run": run.run_id},
    )


def settings(run: Run) -> None:
    with st.expander("Settings, name and command of this run", icon=":material/settings:"):
        st.markdown("**Reproduce it** from a terminal (the same command finds this run, cached):")
        st.code(run_command(run), language="bash", wrap_lines=True)
        if run.corrections:
            st.markdown(f"**Label corrections applied** ({correction_summary(run.corrections)}):")
            st.dataframe(
                [
                    {"photo": path, "correction": e.get("action"), "to": e.get("to") or ""}
                    for path, e in run.corrections.items()
                ],
                hide_index=True,
                key=f"train_corrections_{run.run_id}",
            )
        if not auth.can_change(run):
            auth.read_only_note(run)
        name_col, note_col = st.columns([1, 2])
        name_col.text_input(
            "Name",
            value=run.name,
            max_chars=MAX_NAME_LENGTH,
            key=f"train_name_{run.run_id}",
            placeholder="e.g. baseline",
        )
        note_col.text_input("Note", value=run.note, key=f"train_note_{run.run_id}", placeholder="what you tried")
        st.button(
            "Save name and note",
            key=f"train_label_{run.run_id}",
            on_click=save_label,
            args=(run.run_id,),
            disabled=not auth.can_change(run),
        )
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
            st.caption(
                f"Split ({split.get('source')}): {split.get('train')} train / {split.get('val')} validation / "
                f"{split.get('test')} test images. " + " ".join(split.get("notes", []))
            )
        if not run.active and auth.can_change(run):
            with st.popover("Delete this run", icon=":material/delete:"):
                whose = "" if run.owner == auth.current_user().id else f"This is {plain.md(run.owner)}'s run. "
                st.caption(f"{whose}Removes its model, metrics and log from the run store. This cannot be undone.")
                st.button(
                    "Delete", type="primary", key=f"train_delete_{run.run_id}", on_click=delete_run, args=(run.run_id,)
                )


def unreadable_runs(problems: list[RunUnreadable]) -> None:
    """Run folders that cannot be read: each with why and where, and a way to remove it."""
    if not problems:
        return
    with st.expander(f"{len(problems)} run folder(s) cannot be read", icon=":material/broken_image:"):
        st.caption(
            "Their config.json or status.json is cut short, not JSON, or holds a value of the wrong kind (a crash "
            "mid-write, or a hand edit). They are left as they are; fix the file, or delete the folder."
        )
        for problem in problems:
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.text(f"{problem.run_id}  unreadable: {problem.reason}\n{problem.directory}")
            right.button(
                "Delete",
                key=f"train_delete_unreadable_{problem.run_id}",
                on_click=delete_unreadable,
                args=(problem.run_id,),
                help="Removes this folder from the run store. This cannot be undone.",
            )


def delete_unreadable(run_id: str) -> None:
    try:
        common.store().delete_unreadable(run_id)
    except (KeyError, ValueError, OSError) as e:
        st.session_state["train_error_runs"] = str(e)


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
    if st.session_state.get("train_run") not in ids:
        active = [run.run_id for run in all_runs if run.active]
        st.session_state["train_run"] = (active or ids)[0]
    labels = {run.run_id: common.run_label(run) for run in all_runs}
    selected = st.selectbox("Watch run", ids, format_func=labels.get, key="train_run", bind="query-params")
    try:
        run = common.store().refresh(common.store().get(selected))
    except RunNotFound:
        st.warning(f"Run {selected} is gone from the run store.")
        return all_runs
    except RunUnreadable as e:
        st.warning(str(e), icon=":material/broken_image:")
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
    if config is not None:
        with st.container(border=True):
            st.markdown(plan_text(config))
            train_form.disk_note(dataset, config)
            st.caption("The same run from a terminal (copy it with the button at the right):")
            flag = "kept" if corrections else "none"
            command = train_command(dataset, config, corrections=flag)
            command += f" --ray {shlex.quote(ray_address)}" if ray_address else ""
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
        args=(dataset, config, corrections, ray_address),
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
