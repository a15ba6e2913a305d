"""Train: a form for the training settings, Launch (a background process), and the runs, live."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import jobs
from core.config import ConfigError, TrainConfig
from core.device import recommended_batch_size
from core.monitor import batch_curve, epoch_curves, format_duration, phase_boundary, progress
from core.paths import imagenet_weights_cached, imagenet_weights_file
from core.presets import all_presets, preset_name_for, save_preset
from core.runs import RunNotFound, RunState
from pages.ui import common
from pages.ui.navigation import page_file

DEFAULTS = TrainConfig()
IMAGE_SIZES = [32, 64, 96, 128, 160, 192, 224, 256]
LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
FINE_TUNE_RATES = [1e-6, 5e-6, 1e-5, 5e-5, 1e-4]
BATCH_SIZES = [8, 16, 32, 64, 128, 256, 512, 1024]
WEIGHT_CHOICES = {
    "imagenet": "ImageNet (pretrained)",
    "none": "None (random start)",
    "run": "An earlier run's backbone",
    "file": "A weights file",
}
FORCE_STOP_AFTER = 20  # seconds a stop request may take before "Force stop" is offered

st.title("Train")
st.caption(
    "Transfer learning in two phases: first only the new head learns while ResNet-50 stays frozen, "
    "then (optionally) the top ResNet stages are unfrozen and fine-tuned at a lower learning rate."
)


def dataset_picker() -> str | None:
    options = {d["path"]: common.dataset_label(d) for d in common.datasets()}
    current = common.current_dataset()
    if current and current not in options:
        options = {current: f"{Path(current).name} ({current})", **options}
    if not options:
        st.warning("No dataset yet. Add one on the Dataset page first.", icon=":material/photo_library:")
        st.page_link(page_file("dataset"), label="Go to Dataset", icon=":material/arrow_forward:")
        return None
    paths = list(options)
    index = paths.index(current) if current in paths else 0
    chosen = st.selectbox("Dataset", paths, index=index, format_func=options.get, key="train_dataset")
    common.set_current_dataset(chosen)
    return chosen


def weights_picker() -> str | None:
    kind = st.radio(
        "Starting weights",
        list(WEIGHT_CHOICES),
        format_func=WEIGHT_CHOICES.get,
        horizontal=True,
        key="train_weights_kind",
        help="ImageNet weights make transfer learning work; 'none' starts from random weights (tests, teaching).",
    )
    if kind == "imagenet":
        if not imagenet_weights_cached():
            st.caption(
                f":material/cloud_download: Not on this machine yet: Keras downloads them (94 MB) when the run "
                f"starts. Offline? Copy the file to `{imagenet_weights_file()}` or start from none.",
            )
        return "imagenet"
    if kind == "none":
        return "none"
    if kind == "run":
        earlier = [run for run in common.runs() if run.has_model]
        if not earlier:
            st.info("No finished run yet to start from.")
            return None
        run_id = st.selectbox(
            "Run",
            [r.run_id for r in earlier],
            format_func=lambda i: common.run_label(common.store().get(i)),
            key="train_weights_run",
        )
        return f"run:{run_id}"
    path = st.text_input("Weights file (.h5, .weights.h5, .keras)", key="train_weights_file").strip()
    return path or None


def settings_form() -> tuple[str | None, TrainConfig | None]:
    """The training settings as widgets; returns (dataset path, config) or Nones with the reason shown."""
    presets = all_presets(common.data_root())
    data_col, phase1_col, phase2_col = st.columns(3, gap="medium")
    with data_col:
        dataset = dataset_picker()
        weights = weights_picker()
        preset_name = st.selectbox(
            "Augmentation",
            list(presets),
            index=list(presets).index("standard"),
            key="train_augment",
            help="Presets, and any you saved on the Augmentation page.",
        )
        class_weighting = st.radio(
            "Class weights",
            ["auto", "balanced", "none"],
            horizontal=True,
            key="train_class_weights",
            help="auto: weight classes by inverse frequency when the largest is over 1.5x the smallest.",
        )
    with phase1_col:
        image_size = st.select_slider(
            "Image size (px)",
            IMAGE_SIZES,
            value=DEFAULTS.image_size,
            key="train_image_size",
            help="Images are resized to this square. 224 is ResNet-50's native size; smaller is faster.",
        )
        batch_size = st.select_slider("Batch size", BATCH_SIZES, value=DEFAULTS.batch_size, key="train_batch_size")
        device = common.device_info()
        if device.kind == "gpu":
            suggested = recommended_batch_size(device, image_size)
            st.caption(f"On {device.name}, a batch of about {suggested} keeps the GPU busy (fine-tuning).")
        epochs = st.number_input("Head epochs (phase 1)", 0, 500, DEFAULTS.epochs, key="train_epochs")
        learning_rate = st.select_slider(
            "Learning rate",
            LEARNING_RATES,
            value=DEFAULTS.learning_rate,
            format_func=lambda v: f"{v:g}",
            key="train_lr",
        )
        patience = st.number_input(
            "Early stopping patience (0 = off)",
            0,
            50,
            DEFAULTS.early_stopping_patience,
            key="train_patience",
            help="Stop a phase when validation loss has not improved for this many epochs; the best weights are kept.",
        )
    with phase2_col:
        fine_tune_epochs = st.number_input(
            "Fine-tune epochs (phase 2)",
            0,
            500,
            DEFAULTS.fine_tune_epochs,
            key="train_fine_tune_epochs",
            help="0 keeps the backbone frozen. Fine-tuning is slow on a CPU.",
        )
        unfreeze_stages = st.slider(
            "Stages to unfreeze",
            1,
            4,
            DEFAULTS.unfreeze_stages,
            key="train_unfreeze_stages",
            disabled=fine_tune_epochs == 0,
            help="ResNet-50 has four residual stages; 1 unfreezes the last (conv5). BatchNorm layers stay frozen.",
        )
        fine_tune_lr = st.select_slider(
            "Fine-tune learning rate",
            FINE_TUNE_RATES,
            value=DEFAULTS.fine_tune_learning_rate,
            format_func=lambda v: f"{v:g}",
            key="train_fine_tune_lr",
            disabled=fine_tune_epochs == 0,
        )
        head_text = st.text_input(
            "Head (Dense units)",
            ",".join(map(str, DEFAULTS.head)),
            key="train_head",
            help="Dense+Dropout blocks between the pooled features and the softmax: 256, or 512,128; empty for none.",
        )
        dropout = st.slider("Dropout", 0.0, 0.8, DEFAULTS.dropout, 0.05, key="train_dropout")
        label_smoothing = st.slider(
            "Label smoothing", 0.0, 0.3, DEFAULTS.label_smoothing, 0.05, key="train_label_smoothing"
        )
    with st.expander("Advanced", icon=":material/tune:"):
        col1, col2, col3, col4 = st.columns(4)
        feature_cache = col1.toggle(
            "Frozen phase on cached features",
            DEFAULTS.feature_cache,
            key="train_feature_cache",
            help="ResNet-50's output for each image is computed once and reused every epoch: the same training, "
            "many times faster. Augmented views are cached too.",
        )
        views = col2.number_input(
            "Augmented views per image", 0, 16, DEFAULTS.augmented_views, key="train_views", disabled=not feature_cache
        )
        val_fraction = col3.slider("Validation share", 0.05, 0.4, DEFAULTS.val_fraction, 0.05, key="train_val_fraction")
        test_fraction = col4.slider("Test share", 0.05, 0.4, DEFAULTS.test_fraction, 0.05, key="train_test_fraction")
        seed = col1.number_input("Seed", 0, 2**31 - 1, DEFAULTS.seed, key="train_seed")
    if dataset is None or weights is None:
        return None, None
    try:
        config = TrainConfig(
            image_size=image_size,
            weights=weights,
            head=tuple(int(u) for u in head_text.replace(" ", "").split(",") if u),
            dropout=dropout,
            epochs=int(epochs),
            fine_tune_epochs=int(fine_tune_epochs),
            unfreeze_stages=unfreeze_stages,
            batch_size=batch_size,
            learning_rate=learning_rate,
            fine_tune_learning_rate=fine_tune_lr,
            label_smoothing=label_smoothing,
            early_stopping_patience=int(patience),
            class_weighting=class_weighting,
            augment=presets[preset_name],
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=int(seed),
            feature_cache=feature_cache,
            augmented_views=int(views),
        )
    except (ConfigError, ValueError) as e:
        st.error(str(e), icon=":material/error:")
        return dataset, None
    return dataset, config


def plan_text(config: TrainConfig) -> str:
    """What the run will do, in words, for people learning transfer learning."""
    steps = []
    if config.epochs:
        where = "on cached backbone features" if config.feature_cache else "on images through the frozen ResNet-50"
        views = (
            f", {config.augmented_views} augmented view(s) per image"
            if config.feature_cache and config.augment.enabled
            else ""
        )
        steps.append(
            f"**Phase 1**: {config.epochs} epochs training only the head, {where}{views}, "
            f"learning rate {config.learning_rate:g}."
        )
    if config.fine_tune_epochs:
        steps.append(
            f"**Phase 2**: {config.fine_tune_epochs} epochs fine-tuning the top {config.unfreeze_stages} "
            f"ResNet stage(s) (BatchNorm frozen) at {config.fine_tune_learning_rate:g}."
        )
    steps.append("The weights of the epoch with the lowest validation loss are kept and evaluated on the test split.")
    return "\n\n".join(steps)


def launch() -> None:
    """Launch button callback: start the pending config, then show the Runs tab on that run."""
    dataset, config = st.session_state.get("train_pending", (None, None))
    if dataset is None or config is None:
        return
    try:
        submission = jobs.launch(dataset, config, common.models_root(), common.data_root())
    except (ValueError, OSError) as e:
        st.session_state["train_error"] = f"Could not launch: {e}"
        return
    st.session_state["train_run"] = submission.run_id
    st.session_state["train_tab"] = "Runs"
    kind = {jobs.CACHED: "cached", jobs.ACTIVE: "active"}.get(submission.outcome, "new")
    st.session_state["train_notice"] = (kind, submission.run_id)


def prefill_from(run_id: str) -> None:
    """Button callback: copy a run's settings into the New run form and open it."""
    run = common.store().get(run_id)
    config = run.train_config
    state = st.session_state
    if config.weights in ("imagenet", "none"):
        state["train_weights_kind"] = config.weights
    elif config.weights.startswith("run:"):
        state["train_weights_kind"], state["train_weights_run"] = "run", config.weights[4:]
    else:
        state["train_weights_kind"], state["train_weights_file"] = "file", config.weights
    state["train_dataset"] = run.dataset_path
    common.set_current_dataset(run.dataset_path)
    state["train_image_size"] = config.image_size if config.image_size in IMAGE_SIZES else DEFAULTS.image_size
    state["train_batch_size"] = config.batch_size if config.batch_size in BATCH_SIZES else DEFAULTS.batch_size
    state["train_epochs"], state["train_fine_tune_epochs"] = config.epochs, config.fine_tune_epochs
    state["train_unfreeze_stages"] = max(1, config.unfreeze_stages)
    state["train_lr"] = config.learning_rate if config.learning_rate in LEARNING_RATES else DEFAULTS.learning_rate
    if config.fine_tune_learning_rate in FINE_TUNE_RATES:
        state["train_fine_tune_lr"] = config.fine_tune_learning_rate
    state["train_head"] = ",".join(map(str, config.head))
    state["train_dropout"], state["train_label_smoothing"] = config.dropout, config.label_smoothing
    state["train_patience"], state["train_class_weights"] = config.early_stopping_patience, config.class_weighting
    state["train_feature_cache"], state["train_views"] = config.feature_cache, config.augmented_views
    state["train_val_fraction"], state["train_test_fraction"] = config.val_fraction, config.test_fraction
    state["train_seed"] = config.seed
    preset = preset_name_for(config.augment, common.data_root())
    if preset is None:  # a custom augmentation: keep it as a preset so the form can show it
        preset = save_preset(common.data_root(), f"from run {run_id}", config.augment)
    state["train_augment"] = preset
    state["train_tab"] = "New run"


def delete_run(run_id: str) -> None:
    """Button callback: remove a finished, failed or stopped run from the store."""
    try:
        common.store().delete(run_id)
    except (ValueError, OSError) as e:
        st.session_state["train_error_runs"] = str(e)
        return
    st.session_state.pop("train_run", None)


def show_notice() -> None:
    if "train_error_runs" in st.session_state:
        st.error(st.session_state.pop("train_error_runs"), icon=":material/error:")
    notice = st.session_state.pop("train_notice", None)
    if not notice:
        return
    kind, run_id = notice
    if kind == "cached":
        st.info(
            f"Cached: run **{run_id}** already finished with exactly these settings on this data. Showing it.",
            icon=":material/bolt:",
        )
    elif kind == "active":
        st.info(f"Run **{run_id}** with these settings is already training. Showing it.", icon=":material/sync:")
    else:
        st.success(
            f"Launched run **{run_id}** in the background. It keeps going if you close this tab.",
            icon=":material/rocket_launch:",
        )


def runs_table(runs, live_metrics: dict[str, list[dict]]) -> None:
    """The run list; `live_metrics` holds the metrics of the active runs, read once per refresh."""
    rows = []
    for run in runs:
        state = progress(run, live_metrics[run.run_id]) if run.run_id in live_metrics else None
        rows.append(
            {
                "run": run.run_id,
                "state": run.state.value,
                "dataset": run.dataset_name,
                "setup": f"{run.train_config.image_size}px · {run.train_config.weights}",
                "epochs": f"{run.status.epochs_done or 0}/{run.train_config.total_epochs}",
                "progress": state.fraction if state else (1.0 if run.state is RunState.DONE else None),
                "accuracy": f"{run.status.accuracy:.3f}" if run.status.accuracy is not None else "",
            }
        )
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        key="train_runs_table",
        height=min(320, 35 * (len(rows) + 1) + 3),
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1, format="percent"),
            "accuracy": st.column_config.TextColumn("test accuracy"),
        },
    )


def curves_figure(frame: pd.DataFrame, batches: pd.DataFrame, metric: str, boundary: float | None) -> go.Figure:
    title = "Loss" if metric == "loss" else "Accuracy"
    figure = go.Figure()
    if not batches.empty and batches[metric].notna().any():
        figure.add_scatter(
            x=batches["x"],
            y=batches[metric],
            mode="lines",
            name="train (within epoch)",
            line={"width": 1, "color": "rgba(184,51,106,0.35)"},
        )
    if not frame.empty:
        figure.add_scatter(
            x=frame["epoch"], y=frame[metric], mode="lines+markers", name="train", line={"color": "#b8336a"}
        )
        figure.add_scatter(
            x=frame["epoch"],
            y=frame[f"val_{metric}"],
            mode="lines+markers",
            name="validation",
            line={"color": "#2f6db5", "dash": "dash"},
        )
    if boundary is not None:
        figure.add_vline(
            x=boundary,
            line_dash="dot",
            line_color="gray",
            annotation_text="fine-tuning starts",
            annotation_position="top left",
        )
    figure.update_layout(
        title=title,
        height=300,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis_title="epoch",
        legend={"orientation": "h", "y": -0.25},
        hovermode="x unified",
    )
    if metric == "accuracy":
        figure.update_yaxes(range=[0, 1.02])
    return figure


def monitor(run_id: str, metrics: list[dict] | None = None) -> None:
    """The selected run: state, progress and ETA, live curves, Stop, and the result or the error.

    `metrics`: the run's metrics when the caller has just read them (else they are read here).
    """
    store = common.store()
    try:
        run = store.refresh(store.get(run_id))
    except RunNotFound:
        st.warning(f"Run {run_id} is gone from the run store.")
        return
    if metrics is None:
        metrics = store.read_metrics(run_id)
    state = progress(run, metrics)
    header = st.container(horizontal=True, vertical_alignment="center")
    with header:
        st.markdown(f"**Run `{run.run_id}`** · {run.dataset_name}")
        common.state_badge(run.state)
        st.caption(f"{run.status.device or 'device: deciding'} · pid {run.status.pid or '-'}")

    if run.active:
        if state.preparing:  # decoding images or extracting features, before the first epoch
            st.progress(state.stage_fraction, text=state.stage_text)
            if "extracting features" in (state.stage or ""):
                st.caption(
                    "ResNet-50 runs over each image once (and over each augmented view) and the result is "
                    "cached: the epochs then take seconds, and later runs on this data reuse it."
                )
            else:
                st.caption(f"Then {state.epochs_total} epoch(s).")
        else:
            if state.stage and state.stage_fraction is not None:
                st.progress(state.stage_fraction, text=state.stage_text)
            st.progress(state.fraction, text=state.text or "starting")
        if (run.status.parallel or "").startswith("data parallel"):
            st.caption(f"Training {run.status.parallel}.")
        stop_controls(run)
    elif run.state is RunState.FAILED:
        st.error(f"This run failed: {run.status.error or 'no error recorded'}", icon=":material/error:")
    elif run.state in (RunState.DONE, RunState.STOPPED):
        result(run, state)

    frame = epoch_curves(metrics)
    batches = batch_curve(metrics)
    boundary = phase_boundary(metrics)
    if frame.empty and batches.empty:
        st.caption("The curves appear when the first batches are done.")
    else:
        left, right = st.columns(2)
        quiet = {"displayModeBar": False}
        left.plotly_chart(curves_figure(frame, batches, "loss", boundary), key=f"train_loss_{run_id}", config=quiet)
        right.plotly_chart(curves_figure(frame, batches, "accuracy", boundary), key=f"train_acc_{run_id}", config=quiet)
    with st.expander("Log", icon=":material/terminal:", expanded=run.state is RunState.FAILED):
        st.code(store.log_tail(run_id, 40) or "(empty)", language=None)
    with st.expander("Settings of this run", icon=":material/settings:"):
        st.button(
            "New run from these settings",
            icon=":material/content_copy:",
            key=f"train_prefill_{run_id}",
            on_click=prefill_from,
            args=(run_id,),
            help="Opens the New run form filled with this run's settings, to change one thing and compare.",
        )
        st.json(run.config.get("config", {}), expanded=False)
        if not run.active:
            with st.popover("Delete this run", icon=":material/delete:"):
                st.caption("Removes its model, metrics and log from the run store. This cannot be undone.")
                st.button("Delete", type="primary", key=f"train_delete_{run_id}", on_click=delete_run, args=(run_id,))
        split = run.status.split
        if split:
            st.caption(
                f"Split ({split.get('source')}): {split.get('train')} train / {split.get('val')} validation / "
                f"{split.get('test')} test images. " + " ".join(split.get("notes", []))
            )


def stop_controls(run) -> None:
    store = common.store()
    asked_at = store.stop_requested_at(run.run_id)
    if asked_at is None:
        if st.button("Stop", icon=":material/stop:", key=f"train_stop_{run.run_id}"):
            jobs.stop(store, run.run_id)
            st.rerun()
        return
    waited = time.time() - asked_at
    st.caption(f"Stopping after the current batch (asked {format_duration(waited)} ago)…")
    if waited > FORCE_STOP_AFTER and st.button(
        "Force stop", icon=":material/dangerous:", key=f"train_kill_{run.run_id}"
    ):
        jobs.kill(store, run.run_id)
        st.rerun()


def result(run, state) -> None:
    status = run.status
    cols = st.columns(4)
    accuracy = status.accuracy
    cols[0].metric("Test accuracy", f"{accuracy:.3f}" if accuracy is not None else "-")
    cols[1].metric("Macro F1", f"{status.macro_f1:.3f}" if status.macro_f1 is not None else "-")
    cols[2].metric("Best epoch", status.best_epoch or "-")
    cols[3].metric("Time", format_duration(state.elapsed_seconds) if state.elapsed_seconds else "-")
    if run.state is RunState.STOPPED:
        st.caption(
            "Stopped on request"
            + (": it kept its best weights so far." if run.has_model else " before the first epoch finished.")
        )
    if run.has_model:
        st.page_link(
            page_file("evaluate"),
            label="Study it on the Evaluate page",
            icon=":material/grid_on:",
            query_params={"evaluate_run": run.run_id},
        )


def runs_area() -> list:
    """The run list, the run picker and the picked run's monitor; returns the runs as listed."""
    all_runs = common.runs()
    # each active run's metrics.jsonl is read once per refresh, for the table and the monitor alike
    live_metrics = {run.run_id: common.store().read_metrics(run.run_id) for run in all_runs if run.active}
    runs_table(all_runs, live_metrics)
    ids = [run.run_id for run in all_runs]
    if st.session_state.get("train_run") not in ids:
        active = [run.run_id for run in all_runs if run.active]
        st.session_state["train_run"] = (active or ids)[0]
    labels = {run.run_id: common.run_label(run) for run in all_runs}
    selected = st.selectbox("Watch run", ids, format_func=labels.get, key="train_run", bind="query-params")
    monitor(selected, live_metrics.get(selected))
    return all_runs


@st.fragment(run_every=1.5)
def live_runs_area() -> None:
    if not any(run.active for run in runs_area()):
        st.rerun(scope="app")  # all finished: draw once more as a still page and stop polling


all_runs = common.runs()
if "train_tab" not in st.session_state:
    st.session_state["train_tab"] = "Runs" if all_runs else "New run"
runs_tab, new_tab = st.tabs(["Runs", "New run"], key="train_tab", on_change="rerun")

with new_tab:
    dataset, config = settings_form()
    st.session_state["train_pending"] = (dataset, config)
    if config is not None:
        with st.container(border=True):
            st.markdown(plan_text(config))
    if "train_error" in st.session_state:
        st.error(st.session_state.pop("train_error"), icon=":material/error:")
    st.button(
        "Launch training",
        type="primary",
        icon=":material/rocket_launch:",
        disabled=config is None,
        key="train_launch",
        on_click=launch,
    )

with runs_tab:
    show_notice()
    if not all_runs:
        st.caption("No runs yet. Set one up on the New run tab and launch it; it trains in the background.")
    elif runs_tab.open:  # the hidden tab does no polling
        if any(run.active for run in all_runs):
            live_runs_area()
        else:
            runs_area()
