"""The Predict page's "how sure, and why": whether the probabilities are calibrated (with a toggle back to the
raw softmax) and "Where it looked", a Grad-CAM overlay per top class. Keras is imported only when a map is drawn.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from pages.ui import common

OVERLAY_SIZE = 224  # the photo is shown at least this large, whatever the run's image size


def temperature_of(run) -> float | None:
    from core.calibration import stored_temperature

    return stored_temperature(run.directory)


def calibration_toggle(run) -> tuple[float | None, bool]:
    """Say whether the shown probabilities are calibrated; (temperature, show raw) from the toggle."""
    temperature = temperature_of(run)
    if temperature is None:
        st.caption(
            "These probabilities are the model's raw softmax: this run has no calibration temperature yet "
            "(`python -m core calibrate RUN` fits one), so they may be over-confident."
        )
        return None, True
    raw = st.toggle(
        "Raw probabilities",
        key="predict_raw",
        help="The model's own softmax, before temperature scaling; usually more confident than it should be.",
    )
    if raw:
        st.caption(f"Raw softmax, **not calibrated** (the run's temperature T = {temperature:.2f} is switched off).")
    else:
        st.caption(
            f"**Calibrated** probabilities: the logits divided by T = {temperature:.2f}, fitted on the validation "
            "photos so that '80%' means right about 80% of the time."
        )
    return temperature, raw


def shown_top(answer, classes: list[str], temperature: float | None, raw: bool) -> list[tuple[str, float]]:
    """Every class with its shown probability, most likely first (the answers are calibrated where T exists)."""
    probabilities = np.asarray(answer.probabilities, dtype=np.float64)
    if raw and temperature:
        from core.calibration import rescale

        probabilities = rescale(probabilities[None], 1.0 / temperature)[0]  # softmax(T log p) = softmax(z)
    order = np.argsort(-probabilities, kind="stable")
    return [(classes[i], float(probabilities[i])) for i in order]


@st.cache_resource(show_spinner="Preparing Grad-CAM for this run (first time only)…", max_entries=2)
def explainer(run_dir: str, stamp: float):
    from core.explain import Explainer

    run_id = run_dir.rstrip("/").rsplit("/", 1)[-1]
    return Explainer(common.store().get(run_id))


@st.cache_data(show_spinner="Computing where it looked…", max_entries=64)
def overlays(run_dir: str, stamp: float, data: bytes, labels: tuple[str, ...]) -> list[tuple[np.ndarray, float]]:
    """(overlay image, explained logit) per class in `labels` for one photo."""
    from PIL import Image

    from core.explain import Target, overlay, upsample

    model = explainer(run_dir, stamp)
    image = model.load(data)
    heatmaps = model.explain(image, [Target(model.class_index(label)) for label in labels])
    size = max(OVERLAY_SIZE, image.shape[0])
    photo = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((size, size), Image.BILINEAR))
    return [(overlay(photo, upsample(h.values, size), signed=False), h.score) for h in heatmaps]


def where_it_looked(run, stamp: tuple[str, float], data: bytes, labels: list[str], key: str) -> None:
    """An expander that computes the Grad-CAM overlays only once it is opened."""
    section = st.expander(
        "Where it looked", icon=":material/visibility:", key=f"predict_looked_{key}", on_change="rerun"
    )
    if not section.open:
        return
    with section:
        from core.imaging import ImageError

        try:
            images = overlays(*stamp, data, tuple(labels))
        except (ImageError, KeyError, ValueError) as e:
            st.error(f"No heatmap for this photo: {e}")
            return
        st.caption(
            "Grad-CAM: warm colours mark the regions that raised each class's score most (ResNet-50's last "
            "convolutional block, 7×7 at 224 px, so the map is coarse)."
        )
        columns = st.columns(len(images))
        for column, label, (picture, score) in zip(columns, labels, images, strict=True):
            column.image(picture, caption=f"{label} (logit {score:.2f})", width="stretch")
