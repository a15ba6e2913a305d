"""Flora: page config, navigation over pages/, and the sidebar (workspace, device, jobs)."""

from __future__ import annotations

import streamlit as st

from core.monitor import progress
from pages import common

st.set_page_config(page_title="Flora", page_icon="🌸", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/dataset.py", title="Dataset", icon=":material/photo_library:"),
    st.Page("pages/augmentation.py", title="Augmentation", icon=":material/auto_fix_high:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/grid_on:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/local_florist:"),
]
navigation = st.navigation(PAGES)


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
            "pages/train.py", label="Watch it", icon=":material/monitoring:", query_params={"train_run": run.run_id}
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
