"""The Sweep page's New sweep form: a dataset, the fixed settings, the search space and the budget.

The fixed settings are drawn from core.settings.options.OPTIONS like the Train page's (keys
`sweep_<field>`) and start from the settings last launched on the dataset; those settings are also
the first trial's, where they fall inside the space. The space has one row per searchable setting:
a checkbox (search it or not) and its range or choices. core.sweeps checks the result, so the page
shows the same message the CLI prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from core import workspace
from core.cluster import ADDRESS_ENV
from core.settings.config import CLASS_WEIGHTING_CHOICES, LR_SCHEDULES, ConfigError, TrainConfig
from core.settings.options import BY_FIELD
from core.settings.presets import all_presets, preset_name_for
from core.sweeps import DEFAULT_SPACE, SEARCHABLE, check_request
from pages.ui import auth, common
from pages.ui.train import form as train_form

PREFIX = "sweep"
FORM_DATASET = "sweep_form_dataset"  # the dataset the fixed settings were last filled for
# The fixed settings the form shows; every other one comes from the settings last launched on the data.
FIXED_FIELDS = ("weights", "image_size", "augment", "epochs", "early_stopping_patience", "seed", "split_seed")
RATE_STOPS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
HEAD_CHOICES = ("none", "128", "256", "512", "256,128", "512,128", "512,256")
BATCH_CHOICES = (8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class RangeWidget:
    """How the form lets a person bound one searchable setting."""

    kind: str  # "rate" (log select slider), "range" (slider), "choices" (multiselect)
    low: float = 0.0
    high: float = 1.0
    step: float = 0.05
    options: tuple = ()


WIDGETS = {
    "learning_rate": RangeWidget("rate", options=RATE_STOPS),
    "dropout": RangeWidget("range", 0.0, 0.8, 0.05),
    "label_smoothing": RangeWidget("range", 0.0, 0.3, 0.05),
    "augmented_views": RangeWidget("range", 0, 8, 1),
    "head": RangeWidget("choices", options=HEAD_CHOICES),
    "batch_size": RangeWidget("choices", options=BATCH_CHOICES),
    "class_weighting": RangeWidget("choices", options=CLASS_WEIGHTING_CHOICES),
    "lr_schedule": RangeWidget("choices", options=LR_SCHEDULES),
}


@dataclass
class SweepRequest:
    """What the form asks for, checked: ready to launch when `error` is None."""

    dataset: str | None
    fixed: TrainConfig | None
    space: dict[str, Any]
    trials: int | None
    timeout: float | None
    error: str | None = None
    corrections: dict | None = None  # the label corrections the trials and the promoted run apply
    ray: tuple[str, int] | None = None  # (address, workers): the trials on a Ray cluster; None: this machine


def key(name: str) -> str:
    return f"{PREFIX}_{name}"


def render() -> SweepRequest:
    """Draw the form; returns the request (with the reason it cannot launch yet, if any)."""
    data_col, space_col = st.columns([1, 2], gap="large")
    with data_col:
        st.markdown("**Data and fixed settings** · the same for every trial")
        dataset = train_form.dataset_picker(PREFIX)
        if dataset is not None:
            _start_values(dataset)
        weights = train_form.weights_picker(BY_FIELD["weights"], PREFIX)
        for field in FIXED_FIELDS[1:]:
            train_form.draw_option(BY_FIELD[field], PREFIX)
        corrections = train_form.corrections_choice(dataset, PREFIX)
    fixed, error = _fixed(dataset, weights)
    with space_col:
        st.markdown("**Search space** · what the trials vary (only the head's settings: the features stay cached)")
        space = _space_rows(fixed)
        st.markdown("**Budget**")
        trials_col, time_col = st.columns(2)
        trials = trials_col.number_input("Trials", 1, 500, 20, step=1, key=key("trials"))
        minutes = time_col.number_input(
            "Time budget (minutes, 0 = none)",
            0.0,
            24 * 60.0,
            0.0,
            step=5.0,
            key=key("minutes"),
            help="No new trial starts after this long (features are extracted first). With both, whichever "
            "comes first ends the sweep.",
        )
        ray = ray_choice()
    timeout = float(minutes) * 60 if minutes else None
    if error is None and fixed is not None:
        try:
            check_request(fixed, space, int(trials), timeout)
        except ConfigError as e:
            error = str(e)
    if dataset is None:
        error = error or "Choose a dataset first."
    return SweepRequest(dataset, fixed, space, int(trials), timeout, error, corrections, ray)


def ray_choice() -> tuple[str, int] | None:
    """Where FLORA_RAY_ADDRESS names a Ray cluster: the trials there, on how many workers (the default), or on
    this machine; (address, workers) or None."""
    import os

    configured = os.environ.get(ADDRESS_ENV, "").strip()
    if not configured:
        return None
    st.markdown("**Where the trials run**")
    on = st.toggle(
        "Run the trials on the Ray cluster",
        value=True,
        key=key("on_ray"),
        help="The features are extracted once here; then Ray workers (a GPU, or a CPU, each) share the study and run "
        "the trials at once. Off: this machine runs them one after another.",
    )
    address_col, workers_col = st.columns([2, 1])
    address = address_col.text_input("Ray cluster address", value=configured, key=key("ray_address"), disabled=not on)
    workers = workers_col.number_input(
        "Ray workers", 1, 64, 2, step=1, key=key("ray_workers"), disabled=not on, help="trials running at once"
    )
    if not on:
        return None
    st.caption(
        ":material/hub: The trials table says which worker ran each. Workers pick settings without the results of "
        "trials still running elsewhere, so the best can differ from one worker's with the same seed. The sweep "
        "folder and the photos must be on storage every node mounts (the same paths)."
    )
    return (address.strip() or configured, int(workers))


def _start_values(dataset: str) -> None:
    """Fill the fixed settings from those last launched on `dataset` when the form is new to it."""
    state = st.session_state
    missing = any(key(f) not in state for f in FIXED_FIELDS if f != "weights")
    if state.get(FORM_DATASET) == dataset and not missing:
        return
    config = base_config(dataset)
    for field in FIXED_FIELDS:
        value = getattr(config, field)
        if field == "weights":
            state[key("weights_kind")] = value if value in ("imagenet", "none") else "file"
            if value not in ("imagenet", "none"):
                state[key("weights_file")] = value
        elif field == "augment":
            state[key(field)] = preset_name_for(value, common.data_root()) or "standard"
        else:
            state[key(field)] = value
    state[FORM_DATASET] = dataset


def base_config(dataset: str) -> TrainConfig:
    """The settings last launched on `dataset` (else the defaults): the sweep's other fixed settings."""
    stored = workspace.train_settings(common.data_root(), dataset, person=auth.current_user().id)
    try:
        return TrainConfig.from_dict(stored) if stored else TrainConfig()
    except (ConfigError, TypeError, ValueError):
        return TrainConfig()


def _fixed(dataset: str | None, weights: str | None) -> tuple[TrainConfig | None, str | None]:
    if dataset is None:
        return None, None
    if weights is None:
        return None, "Choose the starting weights."
    state = st.session_state
    presets = all_presets(common.data_root())
    changes: dict[str, Any] = {"weights": weights, "feature_cache": True, "fine_tune_epochs": 0}
    for field in FIXED_FIELDS[1:]:
        value = state.get(key(field), BY_FIELD[field].default)
        if field == "augment":
            value = presets.get(value, BY_FIELD[field].default)
        changes[field] = int(value) if isinstance(BY_FIELD[field].default, int) else value
    try:
        return base_config(dataset).replace(**changes), None
    except ConfigError as e:
        return None, str(e)


def _space_rows(fixed: TrainConfig | None) -> dict[str, Any]:
    """One row per searchable setting (a checkbox, then its range); the space as core.sweeps reads it."""
    augmented = fixed is not None and fixed.augment.enabled
    space: dict[str, Any] = {}
    for name, widget in WIDGETS.items():
        default = DEFAULT_SPACE.get(name)
        views_off = name == "augmented_views" and not augmented
        box, bounds = st.columns([1, 2], vertical_alignment="center")
        on = box.checkbox(
            SEARCHABLE[name].label.capitalize(),
            value=default is not None,
            key=key(f"on_{name}"),
            disabled=views_off,
            help="No augmentation is fixed, so there are no augmented views to vary." if views_off else None,
        )
        with bounds:
            value = _bounds(name, widget, default, disabled=not on or views_off)
        if on and not views_off:
            space[name] = value
    return space


def _bounds(name: str, widget: RangeWidget, default: dict | None, disabled: bool) -> dict[str, Any]:
    label = f"{SEARCHABLE[name].label} range"
    if widget.kind == "rate":
        low, high = (default["low"], default["high"]) if default else (1e-4, 1e-2)
        chosen = st.select_slider(
            label,
            widget.options,
            value=(low, high),
            format_func=lambda v: f"{v:g}",
            key=key(f"range_{name}"),
            disabled=disabled,
            label_visibility="collapsed",
        )
        return {"low": float(chosen[0]), "high": float(chosen[1]), "log": True}
    if widget.kind == "range":
        low, high = (default["low"], default["high"]) if default else (widget.low, widget.high)
        chosen = st.slider(
            label,
            widget.low,
            widget.high,
            (low, high),
            step=widget.step,
            key=key(f"range_{name}"),
            disabled=disabled,
            label_visibility="collapsed",
        )
        return {"low": chosen[0], "high": chosen[1]}
    options = list(widget.options)
    defaults = list(default["choices"]) if default else options
    if name == "head":
        defaults = [c or "none" for c in defaults]
    chosen = st.multiselect(
        label,
        options,
        default=[c for c in defaults if c in options],
        key=key(f"range_{name}"),
        disabled=disabled,
        label_visibility="collapsed",
        accept_new_options=name == "head",
        placeholder="choose at least one" if name != "head" else "none, 256, 512,128…",
    )
    if name == "head":
        chosen = ["" if c == "none" else c for c in chosen]
    return {"choices": chosen}
