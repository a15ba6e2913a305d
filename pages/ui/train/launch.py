"""Launching a run from the Train page: the plan in words, the launch itself, and a New run form filled from
another run (Explore's and a run's own "train again" links).
"""

from __future__ import annotations

import streamlit as st

from core import sharing
from core.data.corrections import summary as correction_summary
from core.data.datasets import LABELLED_IN_FLORA, DatasetError, scan_dataset
from core.results.evaluation.metrics import test_photos_among
from core.settings.config import TrainConfig
from core.settings.options import describe_weights
from core.train import jobs
from core.train.jobs import dataset_corrections
from pages.ui import auth, common, dataset_choice, plain
from pages.ui.navigation import TRAIN_PREFILL, TRAIN_RUN
from pages.ui.train import form as train_form

SCHEDULE_WORDS = {
    "constant": "",
    "cosine": ", decaying to zero along a cosine",
    "plateau": ", lowered whenever {watched} stalls",
}


def watched(config: TrainConfig) -> str:
    """What picks the best epoch, stops early and lowers a plateau's rate: the validation loss, or a multi-label run's
    validation mAP (core.train.multilabel.monitored)."""
    return "validation mAP" if config.multilabel else "validation loss"


def plan_text(config: TrainConfig) -> str:
    """What the run will do, in words, for people learning transfer learning."""
    steps = []
    if config.weights == "none":
        steps.append(
            "**Random start**: ResNet-50 begins with random weights, so its 2,048 features are random mixes of "
            "the pixels. The head can still learn colour and rough texture, but expect "
            f"{'a much lower mAP' if config.multilabel else 'much lower accuracy'} than from ImageNet weights, and "
            "confident mistakes."
        )
    else:
        steps.append(
            f"**Start**: ResNet-50 with {plain.md(describe_weights(config.weights))} weights, a new head on top."
        )
    if config.epochs:
        where = "on cached backbone features" if config.feature_cache else "on images through the frozen ResNet-50"
        views = (
            f", {config.augmented_views} augmented view(s) per image besides the clean one"
            if config.feature_cache and config.augment.enabled
            else ""
        )
        steps.append(
            f"**Phase 1**: {config.epochs} epochs training only the head, {where}{views}, "
            f"learning rate {config.learning_rate:g}{schedule_words(config)}."
        )
    if config.fine_tune_epochs:
        steps.append(
            f"**Phase 2**: {config.fine_tune_epochs} epochs fine-tuning the top {config.unfreeze_stages} "
            f"ResNet stage(s) (BatchNorm frozen) at {config.fine_tune_learning_rate:g}"
            f"{schedule_words(config)}."
        )
    best = "highest validation mAP" if config.multilabel else "lowest validation loss"
    steps.append(f"The weights of the epoch with the {best} are kept and evaluated on the test split.")
    return "\n\n".join(steps)


def schedule_words(config: TrainConfig) -> str:
    return SCHEDULE_WORDS[config.lr_schedule].format(watched=watched(config))


def launch(
    dataset: str,
    config: TrainConfig,
    corrections: dict | None,
    ray_address: str | None = None,
    track: str | None = None,
) -> None:
    """Launch button: start the run in the background (or as a task on the Ray cluster), then show it on the
    Runs tab; `track`: the MLflow tracking URI it is logged to when it ends."""
    try:
        dataset_choice.scan(dataset)  # inside the data roots, links too (OutsideDataRoots is a ValueError)
        user = auth.current_user()
        submission = jobs.launch(
            dataset,
            config,
            common.models_root(),
            common.data_root(),
            corrections=corrections or {},
            owner=user.id,
            max_queued=sharing.max_queued_runs() if auth.shared() else None,
            ray_address=ray_address,
            track=track,
        )
    except (ValueError, OSError) as e:
        st.session_state["train_error"] = f"Could not launch: {plain.md(e)}"  # shown as Markdown
        return
    train_form.remember(dataset, config)
    st.session_state[TRAIN_RUN] = submission.run_id
    st.session_state["train_tab"] = "Runs"
    kind = {jobs.CACHED: "cached", jobs.ACTIVE: "active"}.get(submission.outcome, "new")
    st.session_state["train_notice"] = (kind, submission.run_id)


def prefill_from(run_id: str) -> None:
    """Copy a run's settings into the New run form and open it."""
    run = common.store().get(run_id)
    train_form.fill_from_config(run.train_config)
    st.session_state[train_form.key("dataset")] = run.dataset_path
    st.session_state[train_form.FORM_DATASET] = run.dataset_path
    dataset_choice.set_current_dataset(run.dataset_path)
    st.session_state["train_tab"] = "New run"


PREFILL = TRAIN_PREFILL


PREFILL_NOTE = "train_prefill_note"


def take_prefill_link() -> None:
    """A run's settings arrived by link (Explore's "Train again with these corrections"): fill the form and open
    it (before the tabs are drawn), and keep what the new run changes for `prefilled_note`."""
    run_id = st.query_params.get(PREFILL)
    if not run_id:
        return
    del st.query_params[PREFILL]
    try:
        run = common.store().find(run_id)
    except (KeyError, ValueError) as e:  # not in the store, not an id, or unreadable
        st.session_state[PREFILL_NOTE] = ("warning", f"Cannot open that run: {plain.md(e)}")  # the id came in a link
        return
    outside = dataset_choice.outside_reason(run.dataset_path)
    if outside:  # a shared Flora's roots: its photos are not read, its settings not taken over on another dataset
        st.session_state[PREFILL_NOTE] = ("warning", f"Run {run.run_id[:6]}'s dataset is {outside}: nothing to fill.")
        return
    prefill_from(run.run_id)
    kept = dataset_corrections(common.data_root(), run.dataset_path, auth.current_user().id)
    on_test = test_photos_among(run.directory, kept or ())
    test_note = (
        f" {on_test} of them are test photos: the two runs will then be compared on the test photos they still "
        "share (Compare says which dropped out)."
        if on_test
        else ""
    )
    photos_note = dataset_change(run)
    if (kept or None) == (run.corrections or None) and not photos_note:  # the second walk: "differs only in those"
        st.session_state[PREFILL_NOTE] = (
            "info",
            f"The form holds run {run.run_id[:6]}'s settings, and it already applied the label corrections kept for "
            f"its dataset now ({correction_summary(kept)}): launched as it is, the form finds that run again. Change "
            "a setting (or your marks) first for a new one.",
        )
        return
    st.session_state[PREFILL_NOTE] = (
        "info",
        f"The form holds run {run.run_id[:6]}'s settings. With the label corrections kept for its dataset now "
        f"({correction_summary(kept)}; the run had {correction_summary(run.corrections)}), the new run differs "
        f"from it {'in those' + photos_note if photos_note else 'only in those'}.{test_note} Launch it below, or "
        "change a setting first.",
    )


def dataset_change(run) -> str:
    """', and in its photos: ...' when the run's dataset folder no longer holds the photos it trained on, else ''."""
    try:
        index = scan_dataset(run.dataset_path, max_seconds=10)
    except DatasetError:
        return ""
    if index.fingerprint == run.dataset_fingerprint:
        return ""
    labelled = len(index.meta.get(LABELLED_IN_FLORA) or [])
    then = run.dataset_images
    words = f", and in its photos: {len(index.entries):,} now" + (f", {then:,} when it trained" if then else "")
    if labelled:
        words += f"; {labelled} of its photos were labelled in Flora: they join training, the others keep their split"
    return words


def prefilled_note() -> None:
    kind, text = st.session_state.pop(PREFILL_NOTE, (None, ""))
    if kind == "info":
        st.info(text, icon=":material/edit_note:")
    elif kind == "warning":
        st.warning(text)
