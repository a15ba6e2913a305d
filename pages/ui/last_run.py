"""The run a person picked last on Evaluate, Explore or Predict: the run the next page opens on, this session and
after a reload (kept in the person's workspace, `core.workspace`, beside the dataset picked last)."""

from __future__ import annotations

import streamlit as st

from core import workspace
from pages.ui import auth
from pages.ui.common import data_root

LAST_RUN = "last_picked_run"  # not a widget's key: it outlives the page it was picked on
PREFERENCE = "last_run"


def opening_run(ids: list[str], fallback: str, across_reloads: bool = True, key: str | None = None) -> str:
    """The run a page opens on: the one a link names (the page's query parameter `key`, e.g. Train's "Study it on the
    Evaluate page"), else the one last picked on Evaluate, Explore or Predict this session, else (with
    `across_reloads`) the one picked before a reload, where this page lists it (walk 54: each page opened on the
    newest run, so the run being studied was picked again on every page; walk 55: and again after every reload;
    a walk of the label-list marks: a link to the new run opened the one picked before). Predict passes
    `across_reloads=False` where a production model exists: on a fresh visit it, the model people mean, comes
    first."""
    linked = st.query_params.get(key) if key else None
    if linked in ids:
        return linked
    last = st.session_state.get(LAST_RUN)
    if last is None and across_reloads:
        last = workspace.preference(data_root(), PREFERENCE, None, person=auth.current_user().id)
    return last if last in ids else fallback


def follow_link(key: str, ids: list[str]) -> None:
    """Before a page's run picker (the selectbox `key`, bound to the query parameter `key`): when the address names
    another run than the one this page showed last, a link brought the person here (Train's "Study it on the
    Evaluate page", Serve's links) and that run opens, even where the picker kept its earlier value this session (a
    newcomer's walk: the link named the new run and the page showed the old one). A pick in the picker changes the
    address only as the picker is drawn, so at the start of the next run the two still agree: a pick is never
    undone here. `remember_run(..., key=key)` notes the address after the picker."""
    linked = st.query_params.get(key)
    if linked in ids and linked != st.session_state.get(_shown(key)):
        st.session_state[key] = linked


def _shown(key: str) -> str:
    return f"{key}__address"  # the run the address named when this page was last drawn


def remember_run(run_id: str, key: str | None = None) -> None:
    """Keep `run_id` as the run picked last (written to the workspace only when it changes); with `key`, also the run
    the page's address names now (see `follow_link`)."""
    if key is not None:
        st.session_state[_shown(key)] = st.query_params.get(key)
    if st.session_state.get(LAST_RUN) == run_id:
        return
    st.session_state[LAST_RUN] = run_id
    workspace.set_preference(data_root(), PREFERENCE, run_id, person=auth.current_user().id)
