"""One sweep on the Sweep page: its header, progress, results and the best trial, the run it promoted, details."""

from __future__ import annotations

import streamlit as st

from core import sweeps
from core.data.corrections import summary as correction_summary
from core.processes import JobState
from core.runs.curves import format_duration
from core.runs.record import RunNotFound
from core.settings.config import TrainConfig
from core.settings.options import describe_config
from core.sweeps import Sweep
from core.sweeps.launch import pinned_corrections
from core.sweeps.results import most_accurate
from pages.ui import auth, common, plain
from pages.ui.navigation import TRAIN_RUN, page_file
from pages.ui.sweep import charts as sweep_charts
from pages.ui.sweep.actions import continue_sweep, delete_sweep, launch_corrections, promote, stop_sweep

QUIET = {"displayModeBar": False}  # the charts' toolbar stays hidden


def notices() -> None:
    if "sweep_error_list" in st.session_state:
        st.error(plain.md(st.session_state.pop("sweep_error_list")), icon=":material/error:")
    notice = st.session_state.pop("sweep_notice", None)
    if notice:
        outcome, sweep_id = notice
        if outcome == sweeps.ACTIVE:
            st.info(f"Sweep **{sweep_id}** is already running. Showing it.", icon=":material/sync:")
        elif outcome == sweeps.FINISHED:
            st.info(
                f"Sweep **{sweep_id}** already searched exactly this, to this many trials. Showing it.",
                icon=":material/bolt:",
            )
        else:
            st.success(
                f"Launched sweep **{sweep_id}** in the background. It keeps going if you close this tab.",
                icon=":material/rocket_launch:",
            )


def header(sweep: Sweep) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(f"**{plain.md(sweep.dataset_name)}** · sweep `{sweep.sweep_id}`")
        common.state_badge(sweep)
        device = sweep.status.device or "device: chosen when its process has started"
        st.caption(f"{device} · pid {sweep.status.pid or '-'}")
    applied = launch_corrections(sweep)
    with_corrections = f" · +{len(applied)} label corrections ({correction_summary(applied)})" if applied else ""
    st.caption(f"Fixed for every trial: {plain.md(describe_config(sweep.fixed))}{with_corrections}.")


def progress(sweep: Sweep) -> None:
    """While it runs: how far, what it is doing now, Stop. Once it ended: how, and Continue."""
    status = sweep.status
    done, target = status.trials_done or 0, status.trials_target
    if sweep.active:
        fraction = min(1.0, done / target) if target else 0.0
        stage = status.stage or "starting"
        if status.stage_progress and status.stage_progress[1]:
            stage += f" · {status.stage_progress[0]} / {status.stage_progress[1]}"
        of = f" of {target}" if target else ""
        st.progress(fraction, text=f"{done}{of} trials finished ({status.trials_pruned or 0} pruned) · {stage}")
        if sweep.stopping:
            st.caption("Stopping: the trial training now is cut short and will be tried again if you continue.")
        elif not auth.can_change(sweep):
            auth.read_only_note(sweep, "sweep")
        else:
            st.button(
                "Stop",
                icon=":material/stop:",
                key=f"sweep_stop_{sweep.sweep_id}",
                on_click=stop_sweep,
                args=(sweep.sweep_id,),
            )
        return
    if sweep.state is JobState.FAILED:
        st.error(f"This sweep failed: {plain.md(status.error or 'no error recorded')}", icon=":material/error:")
    elif status.note:
        st.caption(f"{sweep.state.value.capitalize()}: {plain.md(status.note)}.")
    if not auth.can_change(sweep):
        auth.read_only_note(sweep, "sweep")
        return
    with st.container(horizontal=True, vertical_alignment="bottom"):
        more = st.number_input("More trials", 1, 500, 10, key=f"sweep_more_{sweep.sweep_id}")
        unfinished = sweep.state is not JobState.DONE and target and done < target
        label = f"Continue to {target} trials" if unfinished else f"Run {int(more)} more trials"
        goal = target if unfinished else done + int(more)
        st.button(
            label,
            icon=":material/play_arrow:",
            key=f"sweep_continue_{sweep.sweep_id}",
            on_click=continue_sweep,
            args=(sweep.sweep_id, goal, None),
            help="Finished trials are kept: Optuna's study in the sweep's folder goes on from them.",
        )


def results(sweep: Sweep, snapshot: dict) -> None:
    """The figures, the charts and the table of trials."""
    status, rows = sweep.status, snapshot.get("trials", [])
    names = list(sweep.spec.get("space", {}))
    best = snapshot.get("best")
    top = most_accurate(rows)
    cols = st.columns(5)
    if best and best.get("val_map") is not None:  # a multi-label sweep: chosen by its validation mAP
        _trial_metric(
            cols[0],
            "Best trial's validation mAP",
            f"{best['val_map']:.3f}",
            best,
            "The best trial is the one with the highest validation mAP (mean average precision over the labels): "
            "what the sweep maximises, and what 'Train the best as a run' trains.",
        )
        cols[1].metric("Its validation loss", f"{best['val_loss']:.4f}" if best.get("val_loss") is not None else "-")
    else:
        _trial_metric(
            cols[0],
            "Best trial's validation loss",
            f"{best['val_loss']:.4f}" if best else "-",
            best,
            "The best trial is the one with the lowest validation loss: what the sweep minimises, and what "
            "'Train the best as a run' trains.",
        )
        cols[1].metric("Its validation accuracy", f"{best['val_accuracy']:.3f}" if best else "-")
        _trial_metric(
            cols[2],
            "Highest validation accuracy",
            f"{top['val_accuracy']:.3f}" if top else "-",
            top,
            "Of any complete trial. It can be another trial than the best: a trial can get more photos right while "
            "being surer of its mistakes (a higher loss).",
        )
    cols[3].metric(  # the pruned count beneath: "20 (13 pruned)" was cut off in a quarter of the page
        "Trials finished",
        status.trials_done or 0,
        delta=f"{status.trials_pruned or 0} pruned",
        delta_color="off",
        delta_arrow="off",
    )
    features = status.features_seconds
    cols[4].metric("Features (once)", format_duration(features) if features else "-")
    if best and top and top["number"] != best["number"]:
        st.caption(
            f"'Best' means the lowest validation loss: trial {best['number']} ({best['val_accuracy']:.3f} accuracy). "
            f"Trial {top['number']} got more validation photos right ({top['val_accuracy']:.3f}) with a higher loss "
            f"({top['val_loss']:.4f}): it is surer of its mistakes, which generalises worse as a rule."
        )
    if not rows:
        st.caption("The trials appear here as they finish (after the features are extracted).")
        return
    left, right = st.columns(2)
    left.plotly_chart(sweep_charts.best_so_far_figure(rows), key=f"sweep_best_{sweep.sweep_id}", config=QUIET)
    importance = snapshot.get("importance") or {}
    if importance:
        right.plotly_chart(
            sweep_charts.importance_figure(importance), key=f"sweep_importance_{sweep.sweep_id}", config=QUIET
        )
        right.caption("Optuna's importance of each setting for the validation loss: rough with few trials.")
    else:
        right.caption("Which settings mattered most shows here once three trials have completed.")
    parallel = sweep_charts.parallel_figure(rows, names)
    if parallel is not None:
        st.markdown(f"**{sweep_charts.PARALLEL_CAPTION}**")
        st.plotly_chart(parallel, key=f"sweep_parallel_{sweep.sweep_id}", config=QUIET)
        st.caption("Drag along an axis to keep only some of the trials.")
    st.dataframe(
        sweep_charts.trials_frame(rows, names),
        hide_index=True,
        width="stretch",  # every column in view (the last was cut off at its natural width)
        key="sweep_trials_table",
        column_config={
            "val accuracy": st.column_config.NumberColumn(format="%.3f"),
            "val loss": st.column_config.NumberColumn(format="%.4f"),
            "seconds": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    st.caption("✂ pruned: stopped early because its validation loss was worse than the median of earlier trials.")
    workers = {row.get("worker") for row in rows if row.get("worker")}
    if workers:
        st.caption(
            f":material/hub: These trials ran on {len(workers)} Ray worker(s) at once, sharing the study (the "
            "worker column). Parallel search is not the serial one: a worker chooses its next settings without "
            "the results of trials still running elsewhere, so the same seed and trial count can find another "
            "best than one worker would."
        )


def best_trial(sweep: Sweep, best: dict | None) -> None:
    """The best trial's settings and "Train the best as a run"."""
    if not best:
        return
    with st.container(border=True):
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in best.get("shown", {}).items())
        st.markdown(f"**Best so far: trial {best['number']}** · {shown}")
        if best["number"] == 0 and not sweep.active:
            st.caption(
                "Trial 0 is your own settings (where they fall inside the space): none of the other trials beat "
                "them on validation loss. Try more trials or a wider space, or keep your settings."
            )
        config = TrainConfig.from_dict(best["config"])
        applied = launch_corrections(sweep)
        with_corrections = f" · +{len(applied)} label corrections" if applied else ""
        st.caption(f"As a run: {plain.md(describe_config(config))}{with_corrections}")
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.number_input(
                "Fine-tune epochs on top (0 = none)",
                0,
                100,
                0,
                key=f"sweep_ft_{sweep.sweep_id}",
                help="Phase 2 after the head: the top ResNet stage unfrozen at a low rate. Slow on a CPU.",
            )
            st.button(
                "Train the best as a run"
                if auth.can_change(sweep)
                else f"Only {plain.md(sweep.owner)} can train its best",
                type="primary",
                icon=":material/model_training:",
                key=f"sweep_promote_{sweep.sweep_id}",
                on_click=promote,
                args=(sweep.sweep_id,),
                disabled=sweep.active or not auth.can_change(sweep),
                help="An ordinary run in the run store, evaluated on the test split: it shows on Train and Evaluate.",
            )
        promoted_run(sweep)


def promoted_run(sweep: Sweep) -> None:
    notice = st.session_state.pop("sweep_promoted", None)
    run_id = sweep.status.promoted_run or (notice[1] if notice else None)
    if not run_id:
        return
    try:
        run = common.store().refresh(common.store().get(run_id))
    except RunNotFound:
        st.caption(f"The run trained from it ({run_id}) is gone from the run store.")
        return
    if notice and notice[0] == "cached":
        st.info(f"Run **{run_id}** with exactly these settings had already finished.", icon=":material/bolt:")
    accuracy = f", test accuracy **{run.status.accuracy:.3f}**" if run.status.accuracy is not None else ""
    st.markdown(f"Trained as run `{run_id}`: {run.state.value}{accuracy}.")
    with st.container(horizontal=True):
        st.page_link(
            page_file("train"),
            label="Watch it on Train",
            icon=":material/monitoring:",
            query_params={TRAIN_RUN: run_id},
        )
        if run.evaluated:
            st.page_link(
                page_file("evaluate"),
                label="Its test metrics on Evaluate",
                icon=":material/grid_on:",
                query_params={"evaluate_run": run_id},
            )


def _shown_corrections(pinned: str) -> str:
    """The command's `--corrections` value: "none", or its file as a shared Flora shows a path."""
    return pinned if pinned == "none" else common.shown_path(pinned)


def details(sweep: Sweep) -> None:
    with st.expander("Log", icon=":material/terminal:", expanded=sweep.state is JobState.FAILED):
        st.code(common.shown_log(common.sweep_store().log_tail(sweep.sweep_id, 40)) or "(empty)", language=None)
    with st.expander("What this sweep searches, and the same from a terminal", icon=":material/settings:"):
        space = sweep.spec.get("space", {})
        applied = launch_corrections(sweep)
        st.code(
            sweeps.sweep_command(
                common.shown_path(sweep.dataset_path, argument=True),  # `flowers` on a shared Flora, as Train's
                sweep.fixed,
                space,
                sweep.status.trials_target,
                sweep.status.timeout_seconds,
                corrections=_shown_corrections(pinned_corrections(sweep, common.data_root())),
            ),
            language="bash",
            wrap_lines=True,
        )
        if applied:
            st.caption(
                f"It applied {len(applied)} label correction(s): {correction_summary(applied)}. The command names "
                "a file in the sweep's folder holding exactly those, so it repeats this sweep even after later "
                "corrections."
            )
        st.json({"space": space, "fixed": sweep.spec.get("fixed", {})}, expanded=False)
        if not sweep.active and auth.can_change(sweep):
            with st.popover("Delete this sweep", icon=":material/delete:"):
                st.caption("Removes its trials and study. Runs trained from it stay in the run store.")
                st.button(
                    "Delete",
                    type="primary",
                    key=f"sweep_delete_{sweep.sweep_id}",
                    on_click=delete_sweep,
                    args=(sweep.sweep_id,),
                )


def _trial_metric(column, label: str, value: str, trial: dict | None, help_text: str) -> None:
    """A figure of one trial, its number beneath (no arrow: it is a name, not a change)."""
    column.metric(
        label,
        value,
        delta=f"trial {trial['number']}" if trial else None,
        delta_color="off",
        delta_arrow="off",
        help=help_text,
    )
