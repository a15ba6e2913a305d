"""Home's start path: the steps a person has taken that leave nothing on disk by themselves.

A dataset, a run and a finished model are on disk, so Home ticks those steps from them. A prediction on the Predict
page is not always kept (a multi-label run's is not logged for Monitor), so Predict marks it here, in the person's
workspace, and Home reads the mark (walk 54: the Predict step never got its tick).
"""

from __future__ import annotations

import streamlit as st

from core import workspace
from pages.ui import auth, common

PREDICTED = "predicted_on_page"  # the workspace preference: this person has classified a photo on Predict
_MARKED = "steps_predicted_marked"  # this session has written the mark already


def mark_predicted() -> None:
    """The Predict page classified a photo: Home's Predict step is done (written once a session)."""
    if st.session_state.get(_MARKED):
        return
    workspace.set_preference(common.data_root(), PREDICTED, True, person=auth.current_user().id)
    st.session_state[_MARKED] = True


def predicted() -> bool:
    """Whether this person has classified a photo on the Predict page (any run, any session)."""
    return bool(workspace.preference(common.data_root(), PREDICTED, False, person=auth.current_user().id))
