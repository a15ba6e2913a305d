"""Augmentation: every AugmentConfig transform as a control, and a photo beside its augmented versions.

The versions are made by exactly the Keras layers training puts inside the model.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import streamlit as st

from core.data.imaging import ImageError, load_for_model
from core.settings.config import AUGMENT_EXPLANATIONS as EXPLANATIONS
from core.settings.config import AUGMENT_PRESETS, AugmentConfig, ConfigError, cache_size_for
from core.settings.presets import all_presets, preset_owner, save_preset
from pages.ui import auth, common, dataset_choice, plain, teaching
from pages.ui.navigation import page_file

FIELDS = {  # field -> (label, min, max, step, unit)
    "rotation": ("Rotation", 0.0, 90.0, 5.0, "degrees"),
    "width_shift": ("Width shift", 0.0, 0.5, 0.05, "fraction of width"),
    "height_shift": ("Height shift", 0.0, 0.5, 0.05, "fraction of height"),
    "shear": ("Shear", 0.0, 45.0, 5.0, "degrees"),
    "zoom": ("Zoom", 0.0, 0.5, 0.05, "fraction"),
    "brightness": ("Brightness", 0.0, 0.5, 0.05, "fraction of 0-255"),
    "contrast": ("Contrast", 0.0, 0.9, 0.05, "fraction"),
}
FLAGS = {"horizontal_flip": "Horizontal flip", "vertical_flip": "Vertical flip"}

st.title("Augmentation")
st.caption(
    "Augmentation shows the model a slightly different photo every epoch, so it learns what each class looks "
    "like, not the exact pixels. It runs inside the model during training only: evaluation and prediction see the "
    "photo as it is."
)


@st.cache_data(show_spinner="Running the augmentation layers (the first time also loads Keras)…", max_entries=64)
def augmented(path: str, size: int, config: AugmentConfig, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from core.network.augment import preview  # Keras: imported here, so the page draws its controls first

    original = load_for_model(path, size, cache_size_for(size))
    return original, preview(original, config, n=n, seed=seed)


CUSTOM = "custom"


def apply_preset() -> None:
    """Copy the chosen preset into the controls (a callback, before the controls are drawn)."""
    preset = all_presets(common.data_root()).get(st.session_state["augment_preset"])
    if preset is None:  # "custom": the controls are the settings
        return
    for name, value in dataclasses.asdict(preset).items():
        st.session_state[f"augment_{name}"] = value


def matching_preset(config: AugmentConfig) -> str | None:
    """The preset these settings equal, a built-in or this person's own first, else None.

    The preset box is never rewritten to name it: a callback that set the box while the browser still showed its
    old value made the browser's next message (a slider's, Save's) read as picking that old preset again, which
    copied it over the sliders; six students pressing Save saved 20 though their sliders showed 30 to 50 (walk of
    issue 38, item 3)."""
    presets = all_presets(common.data_root())
    me = auth.current_user().id
    order = sorted(presets, key=lambda n: (preset_owner(common.data_root(), n) not in (None, me),))
    return next((name for name in order if presets[name] == config), None)


def describe(config: AugmentConfig) -> str:
    """A preset's values in words: "Rotation 35°, Zoom 0.1, Horizontal flip"."""
    parts = []
    for name, value in dataclasses.asdict(config).items():
        if name in FIELDS and value:
            label, *_, unit = FIELDS[name]
            parts.append(f"{label} {value:g}{'°' if unit == 'degrees' else ''}")
        elif name in FLAGS and value:
            parts.append(FLAGS[name])
    return ", ".join(parts) or "no transform"


def current_config() -> AugmentConfig:
    values = {name: st.session_state.get(f"augment_{name}", 0.0) for name in FIELDS}
    values.update({name: bool(st.session_state.get(f"augment_{name}", False)) for name in FLAGS})
    return AugmentConfig(**values)


SAVED = "augment_saved"  # what the last Save did: ("saved", name) or ("error", message)


def preset_label(name: str) -> str:
    """A preset as the picker names it: whose it is on a shared Flora (built-in ones are nobody's)."""
    owner = preset_owner(common.data_root(), name) if auth.shared() and name != CUSTOM else None
    return f"{name} · {owner}'s" if owner else name


def save_current() -> None:
    """Save the controls as a preset (a callback), and name it in the preset box at once."""
    try:
        user = auth.current_user()
        saved = save_preset(
            common.data_root(),
            st.session_state.get("augment_save_name", ""),
            current_config(),
            owner=user.id,
            may_replace_any=user.admin and auth.shared(),
        )
    except ConfigError as e:
        st.session_state[SAVED] = ("error", str(e))
        return
    st.session_state[SAVED] = ("saved", saved)


datasets = dataset_choice.datasets()
choices = {d["path"]: dataset_choice.dataset_label(d) for d in datasets}
current = dataset_choice.current_dataset()
if current and current not in choices:
    choices = {current: Path(current).name, **choices}
if not choices:
    st.info("No dataset yet. Add one on the Dataset page; its photos appear here.", icon=":material/photo_library:")
    st.page_link(page_file("dataset"), label="Go to Dataset", icon=":material/arrow_forward:")
    st.stop()

controls_col, preview_col = st.columns([4, 8], gap="large")
with controls_col:
    paths = list(choices)
    dataset = st.selectbox(
        "Dataset",
        paths,
        index=paths.index(current) if current in paths else 0,
        format_func=choices.get,
        key="augment_dataset",
    )
    dataset_choice.set_current_dataset(dataset)
    index = dataset_choice.try_scan(dataset)
    if index is None:
        st.stop()
    cls = st.selectbox("Class", index.classes, key="augment_class")
    members = [e.path for e in index.entries if index.classes[e.label] == cls]
    if st.button("Another photo", icon=":material/shuffle:", key="augment_shuffle"):
        st.session_state["augment_image"] = random.choice(members)
    if st.session_state.get("augment_image") not in members:
        st.session_state["augment_image"] = members[0]
    image_path = st.selectbox("Photo", members, key="augment_image", format_func=lambda p: Path(p).name)

    presets = all_presets(common.data_root())
    if "augment_preset" not in st.session_state:
        st.session_state["augment_preset"] = "standard"
        apply_preset()
    st.selectbox(
        "Start from a preset",
        [*presets, CUSTOM],
        key="augment_preset",
        on_change=apply_preset,
        format_func=preset_label,
        help="Fills the controls below; then change any of them (the line below says which preset they equal).",
    )
    for name, (label, low, high, step, unit) in FIELDS.items():
        st.slider(
            f"{label} ({unit})",
            low,
            high,
            step=step,
            key=f"augment_{name}",
            help=EXPLANATIONS[name],
        )
    for name, label in FLAGS.items():  # one per line: two side by side cut their labels short
        st.toggle(label, key=f"augment_{name}", help=EXPLANATIONS[name])
    try:
        equal = matching_preset(current_config())
    except ConfigError:
        equal = None
    st.caption(
        f"These settings are the preset **{plain.md(preset_label(equal))}**."
        if equal
        else "These settings are no preset's (custom): save them as one below."
    )

with preview_col:
    settings = st.columns([2, 2, 2])
    size = settings[0].select_slider("Image size", [64, 96, 128, 160, 224], value=224, key="augment_size")
    count = settings[1].slider("Versions", 4, 16, 8, 4, key="augment_count")
    seed = settings[2].number_input(
        "Seed", 0, 10_000, 0, key="augment_seed", help="The same seed gives the same versions; change it for new ones."
    )
    try:
        config = current_config()
    except ConfigError as e:
        st.error(plain.md(e))
        st.stop()
    try:
        original, versions = augmented(str(index.absolute(image_path)), size, config, count, int(seed))
    except ImageError as e:
        st.error(f"{plain.md(image_path)} cannot be read: {plain.md(e)}", icon=":material/broken_image:")
        st.stop()
    on = [FIELDS.get(n, (FLAGS.get(n),))[0] for n, v in dataclasses.asdict(config).items() if v]
    st.markdown(f"**Original** and {count} augmented versions · " + (", ".join(on) if on else "no transform on"))
    if config.orientation_caveat():
        st.warning(config.orientation_caveat(), icon=":material/screen_rotation:")
    teaching.explain("augmentation", index.classes)
    grid = st.grid(5, min_column_width=120)
    with grid:
        st.image(original, caption="original", width="stretch")
    for i, version in enumerate(versions, start=1):
        with grid:
            st.image(version, caption=f"version {i}", width="stretch")
    with st.container(border=True):
        st.text_input("Save these settings as a preset", placeholder="e.g. gentle flips", key="augment_save_name")
        st.button("Save preset", icon=":material/save:", key="augment_save", on_click=save_current)
        outcome, text = st.session_state.pop(SAVED, (None, ""))
        if outcome == "saved":
            kept = all_presets(common.data_root()).get(text)  # read back: the values saved, not the page's
            st.success(
                f"Saved preset **{plain.md(text)}**: {plain.md(describe(kept)) if kept else 'not found'}. Choose "
                "it under Augmentation on the Train page."
            )
        elif outcome == "error":
            st.error(plain.md(text))

with st.expander("What each transform does", icon=":material/school:"):
    for name, text in EXPLANATIONS.items():
        label = FIELDS.get(name, (FLAGS.get(name),))[0]
        st.markdown(f"**{label}**: {text}")
    st.markdown(
        "Presets: "
        + "; ".join(
            f"**{n}** = " + (", ".join(k for k, v in dataclasses.asdict(p).items() if v) or "nothing")
            for n, p in AUGMENT_PRESETS.items()
        )
    )
