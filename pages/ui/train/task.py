"""The Train form's word on the dataset's kind: a multi-label dataset is found and said, with what that changes.

The task is never chosen: it is the dataset's (core.train.jobs.submit sets it too), so the form puts it into its
values and, for a multi-label dataset, offers the one setting only that kind has: the precision its per-label
thresholds should reach (none: each label's best F1).
"""

from __future__ import annotations

import streamlit as st

from core.data.tasks import MULTI_LABEL, SINGLE_LABEL
from core.settings.options import BY_FIELD

PRECISION_FIELD = "threshold_precision"


def task_of(dataset: dict | None) -> str:
    return MULTI_LABEL if dataset and dataset.get("task") == MULTI_LABEL else SINGLE_LABEL


def task_note(dataset: dict | None, key) -> None:
    """Put the dataset's task into the form (`key(field)` is a field's widget key) and, for a multi-label dataset,
    say what training does differently and offer the thresholds' precision."""
    task = task_of(dataset)
    st.session_state[key("task")] = task
    if task != MULTI_LABEL:
        st.session_state[key(PRECISION_FIELD)] = None  # a single-label run has no per-label thresholds
        return
    st.info(
        f"**A multi-label dataset** ({dataset['classes']} labels, any number a photo, or none). Training changes "
        "for it: a **sigmoid** per label instead of the softmax, **binary cross-entropy** with each label's positive "
        "photos weighed by how rare they are (class weighting), validation **mAP** (mean average precision) in the "
        "curves, for early stopping and the best epoch, and a **threshold per label** tuned on the validation photos "
        "(never the test ones) that decides which labels a photo gets.",
        icon=":material/label:",
    )
    option, widget = BY_FIELD[PRECISION_FIELD], key(PRECISION_FIELD)
    start = {} if widget in st.session_state else {"value": None}  # the form's value (None: best F1) when it has one
    st.number_input(
        "Thresholds: precision to reach (optional)",
        min_value=0.05,
        max_value=1.0,
        step=0.05,
        placeholder="none: each label's best F1",
        key=widget,
        help=option.help,
        **start,
    )
