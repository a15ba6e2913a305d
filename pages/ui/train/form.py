"""The Train page's New run form, drawn from core.settings.options.OPTIONS: one widget per TrainConfig field.

Widget keys are `train_<field>`. The form starts from the settings last launched on the chosen
dataset (remembered on disk), keeps its values while the person visits other pages, and can be
filled from any run (`fill_from_config`, for "New run from these settings").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core import workspace
from core.cluster import ADDRESS_ENV
from core.data.corrections import describe, summary
from core.data.ingest import disk_plan
from core.data.tasks import MULTI_LABEL
from core.device import recommended_batch_size
from core.paths import imagenet_weights_cached, imagenet_weights_file
from core.runs.estimate import estimate
from core.settings.config import ConfigError, TrainConfig, canonical_json
from core.settings.options import (
    ADVANCED,
    DATA,
    FINE_TUNE,
    FIXED,
    HEAD,
    NUMBER,
    OPTIONS,
    PRESET,
    RADIO,
    SELECT_SLIDER,
    SLIDER,
    TEXT,
    TOGGLE,
    WEIGHTS,
    TrainOption,
    format_head,
    parse_head,
    weights_run_id,
)
from core.settings.presets import all_presets, preset_name_for, save_preset
from core.train.jobs import dataset_corrections
from pages.ui import auth, common, dataset_choice, device_status, plain, teaching
from pages.ui.navigation import page_file
from pages.ui.train import lr_finder
from pages.ui.train.task import task_note

FORM_DATASET = "train_form_dataset"  # the dataset the widgets were last filled for
FORM_VALUES = "train_form_values"  # the form's last config (a dict): survives visits to other pages
WEIGHT_KINDS = {
    "imagenet": "ImageNet (pretrained)",
    "none": "None (random start)",
    "run": "An earlier run's backbone",
    "file": "A weights file",
}


def key(field: str, prefix: str = "train") -> str:
    """The widget key of a field on a page's form: `train_lr`; the Sweep page draws some as `sweep_...`."""
    return f"{prefix}_{field}"


def fill_from_config(config: TrainConfig) -> None:
    """Put `config` into the form's widgets (call before they are drawn, e.g. from a callback)."""
    state = st.session_state
    for option in OPTIONS:
        value = getattr(config, option.field)
        if option.kind == WEIGHTS:
            run_id = weights_run_id(value)
            if value in ("imagenet", "none"):
                state["train_weights_kind"] = value
            elif run_id:
                state["train_weights_kind"], state["train_weights_run"] = "run", run_id
            else:
                state["train_weights_kind"], state["train_weights_file"] = "file", value
        elif option.kind == PRESET:
            name = preset_name_for(value, common.data_root())
            if name is None:  # a custom augmentation: keep it as a preset so the form can show it
                digest = hashlib.sha256(canonical_json(value.to_dict()).encode()).hexdigest()[:6]
                name = save_preset(common.data_root(), f"custom {digest}", value, owner=auth.current_user().id)
            state[key(option.field)] = name
        elif option.kind == TEXT:
            state[key(option.field)] = format_head(value)
        elif option.kind in (NUMBER, SLIDER) and option.minimum is not None and value is not None:
            state[key(option.field)] = type(option.minimum)(min(max(value, option.minimum), option.maximum))
        else:
            state[key(option.field)] = value
    state[FORM_VALUES] = config.to_dict()


def render() -> tuple[str | None, TrainConfig | None]:
    """The dataset picker and every setting; returns (dataset path, config), or Nones with the reason shown."""
    data_col, phase1_col, phase2_col = st.columns(3, gap="medium")
    with data_col:
        dataset = dataset_picker()
        if dataset is not None:
            _start_values(dataset)
            task_note(next((d for d in dataset_choice.datasets() if d["path"] == dataset), None), key)
    with data_col:
        weights = _draw_section(DATA)
        teaching.explain("resize", random_start=weights == "none")  # ImageNet's 224 px and recipe, or not
    finders: dict = {}  # a place beside each learning-rate field, filled once the settings are read
    with phase1_col:
        st.markdown("**Phase 1** · the head learns, ResNet-50 frozen")
        teaching.explain("freezing", random_start=weights == "none")
        _draw_section(HEAD, finders=finders)
    with phase2_col:
        st.markdown("**Phase 2** · fine-tuning (optional)")
        _draw_section(FINE_TUNE, finders=finders)
    with st.expander("Advanced", icon=":material/tune:"):
        teaching.explain("feature_cache")
        teaching.explain("seeds")
        brought = shares_not_applying(dataset)
        if brought:
            st.caption(
                f":material/info: This dataset brings its own {' and '.join(brought.values())} photos, so the "
                f"{' and '.join(s.split('_')[0] for s in brought)} share does not apply (greyed out below)."
            )
        _draw_section(ADVANCED, columns=4, not_applying=set(brought))
    config = None
    if dataset is not None and weights is not None:
        try:
            config = _config_from_widgets(weights)
        except (ConfigError, ValueError) as e:
            st.error(plain.md(e), icon=":material/error:")
    for field, slot in finders.items():
        lr_finder.panel(slot, field, key(field), dataset, config, corrections_applied(dataset))
    if config is not None:
        st.session_state[FORM_VALUES] = config.to_dict()
    return dataset, config


def remember(dataset: str, config: TrainConfig) -> None:
    """Keep `config` as the settings this dataset's form starts from next time (on disk)."""
    workspace.remember_train_settings(common.data_root(), dataset, config.to_dict(), person=auth.current_user().id)


def corrections_choice(dataset: str | None, prefix: str = "train") -> dict | None:
    """Which label corrections the new run (or sweep) applies, said on the form with a way to leave them out.

    Returns the effective corrections to apply, None for none (also when the dataset has none kept).
    """
    if dataset is None:
        return None
    kept = dataset_corrections(common.data_root(), dataset, auth.current_user().id)
    if not kept:
        return None
    what = "sweep" if prefix == "sweep" else "run"
    apply = st.toggle(
        f"Apply {len(kept)} label correction(s)",
        value=True,
        key=key("apply_corrections", prefix),
        help="Marked among the suspected label errors (Explore; a multi-label run's also on Evaluate). They change "
        "what the run trains on (and, for validation and test photos, what it is tuned and tested against), so "
        "the run gets its own id and its name says '+N corrections'. Off: the photos' own labels.",
    )
    if apply:
        st.caption(
            f"Kept for this dataset: {summary(kept)}. This {what} will apply them ({describe(kept)}); the same "
            f"settings without them are another {what}."
        )
        return kept
    st.caption(
        f"{len(kept)} correction(s) kept for this dataset ({summary(kept)}) are left out: the photos train and test "
        "with their folders' labels."
    )
    return None


def corrections_applied(dataset: str | None, prefix: str = "train") -> dict | None:
    """The corrections `corrections_choice` applies, read before its toggle is drawn (what the run would apply)."""
    if dataset is None or not st.session_state.get(key("apply_corrections", prefix), True):
        return None
    return dataset_corrections(common.data_root(), dataset, auth.current_user().id)


def disk_note(dataset: str | None, config) -> None:
    """Under the plan: the disk decoding will take (or that the photos are decoded already); a warning when it
    does not fit, said before launching rather than by a failed run."""
    found = next((d for d in dataset_choice.datasets() if d["path"] == dataset), None)
    if not found or not found.get("fingerprint"):
        return
    plan = disk_plan(dataset_choice.cache_root(), found["fingerprint"], found["images"], config.cache_size)
    sentence = plan.sentence(found["images"], config.cache_size) + (
        f" (Squares of {config.cache_size} px for {config.image_size} px training: 8/7 of it, room for the crops.)"
    )
    if plan.fits:
        st.caption(f":material/hard_drive: {sentence}")
    else:
        st.warning(
            f"{sentence} That does not fit: free some space (the Dataset page's Disk tab lists stale caches), "
            "choose a smaller image size, or move the data folder (FLORA_DATA_DIR) to a larger disk.",
            icon=":material/hard_drive:",
        )


def duration_note(dataset: str | None, config) -> None:
    """Under the plan: how long the run will take on this device, priced from the runs that finished on it."""
    found = next((d for d in dataset_choice.datasets() if d["path"] == dataset), None)
    if not found or not found.get("images"):
        return
    device = device_status.device_info().label
    guess = estimate(config, int(found["images"]), common.runs(), device, found.get("fingerprint") or "")
    if guess is None:
        st.caption(
            ":material/schedule: No run has finished on this device yet: once one has, the plan says how long a "
            "run like this takes here."
        )
        return
    st.caption(f":material/schedule: Training takes {guess.text}. Early stopping can end it sooner.")


def dataset_picker(prefix: str = "train") -> str | None:
    options = {d["path"]: dataset_choice.dataset_label(d) for d in dataset_choice.datasets()}
    current = dataset_choice.current_dataset()
    if current and current not in options:
        options = {current: current, **options}
    if not options:
        st.warning("No dataset yet. Add one on the Dataset page first.", icon=":material/photo_library:")
        st.page_link(page_file("dataset"), label="Go to Dataset", icon=":material/arrow_forward:")
        return None
    paths = list(options)
    if st.session_state.get(key("dataset", prefix)) not in paths:
        st.session_state[key("dataset", prefix)] = current if current in paths else paths[0]
    chosen = st.selectbox("Dataset", paths, format_func=options.get, key=key("dataset", prefix))
    dataset_choice.set_current_dataset(chosen)
    return chosen


def _start_values(dataset: str) -> None:
    """Fill the widgets when the form is new to this dataset, or when its widgets were forgotten.

    A new dataset starts from the settings last launched on it (else the defaults); a form whose
    widgets Streamlit dropped (the person was on another page) gets its own last values back.
    """
    state = st.session_state
    widgets_missing = any(key(o.field) not in state for o in OPTIONS if o.kind not in (WEIGHTS, FIXED))
    if state.get(FORM_DATASET) != dataset:
        stored = workspace.train_settings(common.data_root(), dataset, person=auth.current_user().id)
        fill_from_config(_config_or_default(stored))
    elif widgets_missing:
        fill_from_config(_config_or_default(state.get(FORM_VALUES)))
    state[FORM_DATASET] = dataset


def starting_config(dataset: str) -> tuple[TrainConfig, str]:
    """The settings the Train form holds (or will start from) for `dataset`, and which they are in words: the
    form's own values when it was last filled for this dataset in this session, else the settings last launched on
    it, else the defaults (what `_start_values` fills). The Dataset page previews the split these draw."""
    state = st.session_state
    if state.get(FORM_VALUES) and _same_folder(state.get(FORM_DATASET), dataset):
        return _config_or_default(state[FORM_VALUES]), "the settings on the Train page's form"
    stored = workspace.train_settings(common.data_root(), dataset, person=auth.current_user().id)
    try:
        if stored:
            return TrainConfig.from_dict(stored), "the settings last launched on this dataset"
    except (ConfigError, TypeError, ValueError):
        pass  # unreadable: the form starts from the defaults too
    return TrainConfig(), "the Train page's defaults"


def _same_folder(a: str | None, b: str) -> bool:
    try:
        return a is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _config_or_default(data: dict | None) -> TrainConfig:
    try:
        return TrainConfig.from_dict(data) if data else TrainConfig()
    except (ConfigError, TypeError, ValueError):
        return TrainConfig()


def shares_not_applying(dataset: str | None) -> dict[str, str]:
    """{field: split} of the val/test shares a dataset makes moot by bringing that split itself (a share
    only carves a split the dataset lacks out of its train photos)."""
    found = next((d for d in dataset_choice.datasets() if d["path"] == dataset), None)
    given = set(found.get("given_splits", [])) if found else set()
    return {f"{split}_fraction": split for split in ("val", "test") if split in given}


def _draw_section(
    section: str, columns: int = 1, not_applying: set[str] = frozenset(), finders: dict | None = None
) -> str | None:
    """Draw the section's widgets (greyed where `not_applying`); returns the weights (only the data section has
    them). `finders` gets a place under each learning-rate field, for its finder."""
    weights = None
    options = [o for o in OPTIONS if o.section == section and o.kind != FIXED]
    slots = st.columns(columns) if columns > 1 else [st.container()]
    for number, option in enumerate(options):
        with slots[number % len(slots)]:
            if option.kind == WEIGHTS:
                weights = weights_picker(option)
            else:
                draw_option(option, disabled=option.field in not_applying)
            if finders is not None and option.field in lr_finder.FIELDS:
                finders[option.field] = st.container()
    return weights


def draw_option(option: TrainOption, prefix: str = "train", disabled: bool = False) -> None:
    """The widget of one TrainConfig field, as the options table describes it, keyed `<prefix>_<field>`."""
    state = st.session_state
    disabled = disabled or (bool(option.needs) and not state.get(key(option.needs, prefix), True))
    common_args = {"key": key(option.field, prefix), "help": option.help, "disabled": disabled}
    if option.kind == SELECT_SLIDER:
        choices = sorted({*option.choices, state.get(key(option.field, prefix), option.default)})
        fmt = (lambda v: f"{v:g}") if isinstance(option.default, float) else str
        st.select_slider(option.label, choices, format_func=fmt, **common_args)
    elif option.kind == NUMBER and option.default is None:  # optional: empty means "as the default rule"
        st.number_input(
            option.label,
            int(option.minimum),
            int(option.maximum),
            value=None,
            step=int(option.step),
            placeholder="same as the seed",
            **common_args,
        )
    elif option.kind == NUMBER:
        st.number_input(option.label, int(option.minimum), int(option.maximum), step=int(option.step), **common_args)
    elif option.kind == SLIDER:
        st.slider(option.label, option.minimum, option.maximum, step=option.step, **common_args)
    elif option.kind == RADIO:
        st.radio(option.label, list(option.choices), horizontal=True, **common_args)
    elif option.kind == TOGGLE:
        st.toggle(option.label, **common_args)
    elif option.kind == TEXT:
        st.text_input(option.label, **common_args)
    elif option.kind == PRESET:
        presets = list(all_presets(common.data_root()))
        if state.get(key(option.field, prefix)) not in presets:
            state[key(option.field, prefix)] = "standard"
        st.selectbox(option.label, presets, **common_args)
        st.caption("Presets, and any you saved on the Augmentation page.")
        chosen = all_presets(common.data_root()).get(state.get(key(option.field, prefix)))
        caveat = chosen.orientation_caveat() if chosen is not None else None
        if caveat:
            st.caption(f":orange[{caveat}]")
    if option.field == "batch_size":
        device = device_status.device_info()
        if device.kind == "gpu":
            suggested = recommended_batch_size(device, state.get(key("image_size", prefix), 224))
            st.caption(f"On {device.name}, a batch of about {suggested} keeps the GPU busy (fine-tuning).")


def weights_picker(option: TrainOption, prefix: str = "train") -> str | None:
    """The starting-weights choice (ImageNet, none, an earlier run, a file); None until one is complete."""
    state = st.session_state
    kind = st.radio(
        option.label,
        list(WEIGHT_KINDS),
        format_func=WEIGHT_KINDS.get,
        horizontal=True,
        key=f"{prefix}_weights_kind",
        help=option.help,
    )
    if kind == "imagenet":
        if not imagenet_weights_cached():
            st.caption(
                f":material/cloud_download: Not on this machine yet: Keras downloads them (94 MB) when the run "
                f"starts. Offline? Copy `{imagenet_weights_file().name}` to {common.keras_cache_words()}, set "
                "`FLORA_IMAGENET_WEIGHTS_URL` to a mirror, or choose *A weights file* with its path."
            )
        return "imagenet"
    if kind == "none":
        figure = "a far lower mAP" if state.get(key("task", prefix)) == MULTI_LABEL else "far lower accuracy"
        st.caption(
            ":material/warning: A random start: ResNet-50 knows nothing yet, so the head learns from colour and "
            f"rough texture only. Expect {figure} than with ImageNet weights."
        )
        return "none"
    if kind == "run":
        earlier = [run for run in common.runs() if run.has_model]
        if not earlier:
            st.info("No finished run yet to start from.")
            return None
        ids = [r.run_id for r in earlier]
        if state.get(f"{prefix}_weights_run") not in ids:
            state[f"{prefix}_weights_run"] = ids[0]
        labels = {r.run_id: common.run_label(r) for r in earlier}
        run_id = st.selectbox("Run", ids, format_func=labels.get, key=f"{prefix}_weights_run")
        return f"run:{run_id}"
    path = st.text_input("Weights file (.h5, .weights.h5, .keras)", key=f"{prefix}_weights_file").strip()
    return path or None


def _config_from_widgets(weights: str) -> TrainConfig:
    state = st.session_state
    presets = all_presets(common.data_root())
    values = {}
    for option in OPTIONS:
        if option.kind == WEIGHTS:
            values[option.field] = weights
            continue
        value = state.get(key(option.field), option.default)
        if option.kind == PRESET:
            value = presets.get(value, option.default)
        elif option.kind == TEXT:
            value = parse_head(value)
        elif option.kind == NUMBER:
            value = None if value is None else int(value)
        values[option.field] = value
    return TrainConfig(**values)


def ray_choice() -> str | None:
    """Where FLORA_RAY_ADDRESS names a Ray cluster: train there (the default) or on this machine; the address."""
    import os

    configured = os.environ.get(ADDRESS_ENV, "").strip()
    if not configured:
        return None
    on = st.toggle(
        "Train on the Ray cluster",
        value=True,
        key="train_on_ray",
        help="Ray starts the run as a task on a node with a free GPU (or CPU); it shows here like any run, and its "
        "status and log name the node. Off: this machine trains it.",
    )
    address = st.text_input("Ray cluster address", value=configured, key="train_ray_address", disabled=not on)
    if on:
        st.caption(
            ":material/hub: When the cluster is full the run waits its turn in a line of its own, round-robin between "
            "people. The run folder and the photos must be on storage every node mounts (the same paths); Stop works "
            "as for a local run, and a node that goes down marks the run failed with the reason."
        )
    return address.strip() or configured if on else None
