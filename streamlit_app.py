"""Flora: page config, navigation over pages/, and the sidebar (workspace, device, jobs)."""

from __future__ import annotations

import streamlit as st

from core.monitor import progress
from pages.ui import common
from pages.ui.navigation import PAGES, page_file

st.set_page_config(page_title="Flora", page_icon="🌸", layout="wide")

navigation = st.navigation(
    [
        st.Page(page.file, title=page.title, icon=page.icon, url_path=page.name, default=i == 0)
        for i, page in enumerate(PAGES)
    ]
)


def jobs_panel() -> None:
    """Active runs with their progress; a link to the Train page for each."""
    active = [run for run in common.runs() if run.active]
    if not active:
        st.caption("No training running.")
        return
    for run in active:
        state = progress(run, common.store().read_metrics(run.run_id))
        st.markdown(f"**{run.run_id}** · {run.dataset_name}")
        if state.preparing:
            st.progress(state.stage_fraction, text=state.stage_text)
        else:
            st.progress(state.fraction, text=state.text or run.state)
        st.page_link(
            page_file("train"), label="Watch it", icon=":material/monitoring:", query_params={"train_run": run.run_id}
        )


@st.fragment(run_every=2)
def live_jobs_panel() -> None:
    jobs_panel()


with st.sidebar:
    st.markdown("### :material/local_florist: Flora")
    st.caption(f"Device: {common.device_info().label}")
    with st.expander("Workspace", icon=":material/folder:"):
        st.caption(f"Datasets: `{common.data_root()}`")
        st.caption(f"Runs: `{common.models_root()}`")
        st.caption("Set FLORA_DATA_DIR / FLORA_MODELS_DIR to use other folders.")
    st.markdown("**Jobs**")
    if any(run.active for run in common.runs()):
        live_jobs_panel()
    else:
        jobs_panel()

navigation.run()
