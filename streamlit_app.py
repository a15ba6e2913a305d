"""Flora: page config, navigation over pages/, and the sidebar (workspace, device, jobs)."""

from __future__ import annotations

import streamlit as st

from core.processes import JobState
from core.runs.curves import progress
from core.train.queue import places
from pages.ui import auth, common, device_status, plain, teaching
from pages.ui.navigation import SWEEP_PICK, TRAIN_RUN, page_file, pages_for
from pages.ui.script_runs import keep_keras_session
from pages.ui.server_log import quiet_closed_browsers

ACTIVE_IDS = "flora_active_runs"  # the active runs the page was last drawn with
LIVE_EVERY, IDLE_EVERY = 2.0, 3.0  # seconds between sidebar polls with and without a run going


def jobs_panel() -> None:
    """Active runs and sweeps with their progress and a link to watch each.

    It polls in every page, cheaply (a stat per run and sweep folder): when a job starts or ends
    anywhere (another tab, the CLI) the whole page is drawn again, so its own live parts take over.
    """
    active = common.active_runs()
    active_sweeps = common.active_sweeps()
    ids = tuple(run.run_id for run in active) + tuple(sweep.sweep_id for sweep in active_sweeps)
    if st.session_state.get(ACTIVE_IDS, ids) != ids:
        st.session_state[ACTIVE_IDS] = ids
        st.rerun(scope="app")
    st.session_state[ACTIVE_IDS] = ids
    if not ids:
        st.caption("No training running.")
        return
    line = places(common.runs()) if any(run.state is JobState.QUEUED for run in active) else {}
    for run in active:
        state = progress(run, common.store().read_metrics(run.run_id))
        whose = f" · {plain.md(run.owner)}'s" if common.shared() else ""
        st.markdown(f"**{plain.md(common.run_title(run))}** · {plain.md(run.dataset_name)}{whose}")
        if run.run_id in line:
            st.progress(0.0, text=line[run.run_id].waiting_text)
        elif state.preparing:
            st.progress(state.stage_fraction, text=state.stage_text)
        else:
            st.progress(state.fraction, text=state.text or state.state_label)
        st.page_link(
            page_file("train"), label="Watch it", icon=":material/monitoring:", query_params={TRAIN_RUN: run.run_id}
        )
    for sweep in active_sweeps:
        status = sweep.status
        done, target = status.trials_done or 0, status.trials_target
        st.markdown(f"**Sweep** · {plain.md(sweep.dataset_name)}")
        text = f"{done}/{target} trials" if target else f"{done} trials"
        st.progress(min(1.0, done / target) if target else 0.0, text=f"{text} · {status.stage or 'starting'}")
        st.page_link(
            page_file("sweep"), label="Watch it", icon=":material/tune:", query_params={SWEEP_PICK: sweep.sweep_id}
        )


def sidebar(user, pages) -> None:
    """Who is signed in, the page list, the device, the teaching toggle, the workspace and the jobs."""
    with st.sidebar:
        st.markdown("### :material/local_florist: Flora")
        auth.sidebar(user)
        for page in pages:
            st.page_link(page.file, label=page.title, icon=page.icon)
        st.divider()
        checking = device_status.device_check() is not None and device_status.device_check().result() is None
        st.fragment(device_status.device_caption, run_every=2.0 if checking else None)()
        teaching.toggle()
        with st.expander("Workspace", icon=":material/folder:"):
            if common.shared():  # the server's folders are its admin's business
                st.caption(
                    "Datasets and runs live in this server's data folder and run store, shared by everyone here."
                )
            else:
                st.caption(f"Datasets: `{common.data_root()}`")
                st.caption(f"Runs: `{common.models_root()}`")
                st.caption("Set FLORA_DATA_DIR / FLORA_MODELS_DIR to use other folders.")
        st.markdown("**Jobs**")
        st.session_state.pop(ACTIVE_IDS, None)  # a whole-page run: the panel starts from what it sees now
        busy = common.active_runs() or common.active_sweeps()
        st.fragment(jobs_panel, run_every=LIVE_EVERY if busy else IDLE_EVERY)()


def main() -> None:
    st.set_page_config(page_title="Flora", page_icon="🌸", layout="wide")
    quiet_closed_browsers()  # a closed tab is not an error in the log where error ids are looked up
    keep_keras_session()  # no Keras clear_session (a full garbage collection) after every script run
    user = auth.gate()  # shared: the sign-in page and nothing else until signed in
    if user is None:  # the script returns (no st.stop): Streamlit then drops the signed-in page's fragments
        return
    common.warm_up()
    # The sidebar's page list is drawn below (st.page_link): Streamlit's own list is off in
    # .streamlit/config.toml, so its legacy pages/ listing never shows (pages/ui/navigation.py).
    pages = pages_for(auth.shared(), user.admin)
    navigation = st.navigation(
        [
            st.Page(page.file, title=page.title, icon=page.icon, url_path=page.name, default=i == 0)
            for i, page in enumerate(pages)
        ],
        position="hidden",
    )
    sidebar(user, pages)
    auth.run_page(navigation)


main()
