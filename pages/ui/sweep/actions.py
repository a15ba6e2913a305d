"""The Sweep page's actions: launch, continue, stop, promote the best trial to a run, delete; who may do them."""

from __future__ import annotations

import streamlit as st

from core import sweeps
from core.sweeps import Sweep
from core.sweeps.launch import sweep_corrections
from pages.ui import auth, common, dataset_choice
from pages.ui.navigation import SWEEP_PICK
from pages.ui.sweep import form as sweep_form


def launch_corrections(sweep: Sweep) -> dict | None:
    """The label corrections the sweep applied (recorded with it)."""
    return sweep_corrections(sweep, common.data_root())


def launch(request: sweep_form.SweepRequest) -> None:
    """Launch button: check, then start the sweep in the background and show it."""
    try:
        dataset_choice.scan(request.dataset)  # inside the data roots, links too (OutsideDataRoots: a ValueError)
        submission = sweeps.submit(
            common.models_root(),
            request.dataset,
            request.fixed,
            request.space,
            request.trials,
            request.timeout,
            corrections=request.corrections,
            owner=auth.current_user().id,
        )
        submission = sweeps.launch(submission, common.models_root(), common.data_root(), ray=request.ray)
    except (ValueError, OSError) as e:
        st.session_state["sweep_error"] = f"Could not launch: {e}"
        return
    _show(submission)


def _refused(sweep_id: str, what: str, reads_photos: bool = False) -> bool:
    """True (and why, on the page) when the signed-in user may not `what` this sweep: it is someone else's, or
    (`reads_photos`) its dataset lies outside a shared Flora's data roots."""
    try:
        sweep = common.sweep_store().find(sweep_id)
    except KeyError as e:
        st.session_state["sweep_error_list"] = str(e)
        return True
    outside = dataset_choice.outside_reason(sweep.dataset_path) if reads_photos else None
    if outside:
        st.session_state["sweep_error_list"] = (
            f"Sweep {sweep_id}'s dataset is {outside}: nobody can {what} it from the app."
        )
        return True
    if auth.can_change(sweep):
        return False
    st.session_state["sweep_error_list"] = f"Sweep {sweep_id} is {sweep.owner}'s: only they or an admin can {what} it."
    return True


def continue_sweep(sweep_id: str, trials: int | None, timeout: float | None) -> None:
    """Continue a stopped, failed or finished sweep: its finished trials are kept."""
    if _refused(sweep_id, "continue", reads_photos=True):
        return
    try:
        submission = sweeps.resubmit(common.models_root(), sweep_id, trials, timeout)
        submission = sweeps.launch(submission, common.models_root(), common.data_root())
    except (ValueError, OSError, KeyError) as e:
        st.session_state["sweep_error_list"] = f"Could not continue: {e}"
        return
    _show(submission)


def _show(submission: sweeps.SweepSubmission) -> None:
    st.session_state[SWEEP_PICK] = submission.sweep.sweep_id
    st.session_state["sweep_tab"] = "Sweeps"
    st.session_state["sweep_notice"] = (submission.outcome, submission.sweep.sweep_id)


def stop_sweep(sweep_id: str) -> None:
    if not _refused(sweep_id, "stop"):
        sweeps.stop(common.models_root(), sweep_id)


def promote(sweep_id: str) -> None:
    """Train the best trial as an ordinary run (optionally fine-tuned), evaluated on the test split."""
    epochs = int(st.session_state.get(f"sweep_ft_{sweep_id}", 0))
    fine_tune = {"fine_tune_epochs": epochs, "unfreeze_stages": 1} if epochs else None
    if _refused(sweep_id, "train the best of", reads_photos=True):
        return
    try:
        submission = sweeps.promote(common.models_root(), common.data_root(), sweep_id, fine_tune, background=True)
    except (ValueError, OSError, KeyError) as e:
        st.session_state["sweep_error_list"] = f"Could not train the best trial: {e}"
        return
    st.session_state["sweep_promoted"] = (submission.outcome, submission.run_id)


def delete_sweep(sweep_id: str) -> None:
    if _refused(sweep_id, "delete"):
        return
    try:
        common.sweep_store().delete(sweep_id)
    except (ValueError, OSError) as e:
        st.session_state["sweep_error_list"] = str(e)
        return
    st.session_state.pop(SWEEP_PICK, None)
