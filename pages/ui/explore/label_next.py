"""The Explore page's "Label next": the unlabelled photos worth labelling first, labelled in place, and whether
Flora's way of picking them saves labels over picking at random on this data (measured, not promised).

A labelled photo is copied into its class folder (core.data.unlabelled): the next run trains on it, the original
stays in unlabelled/. Every card of a batch stays where it was until the person asks for the next batch, across a
reload too (the batch is kept in the run folder: core.results.label_next.batch; a labelled card says so and offers
Undo, a skipped one likewise), so a quick click lands on the card it was aimed at: a batch that
vanished the moment its last photo was answered would put the next batch's buttons under a click meant for the old
one (an Undo, a second click). "Next batch" retrains the head on the stored features (a second) and draws the next
batch, so it uses what was just learned.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import streamlit as st

from core.data.datasets import DatasetError
from core.data.unlabelled import Unlabelled
from core.results.label_next import batch as kept_batch
from core.results.label_next import tasks as label_next_tasks
from core.results.label_next.data import UnlabelledFeatures, workbench
from core.results.label_next.picking import RANDOM, STRATEGY, next_batch
from core.results.label_next.simulation import saving
from core.results.train_features import TrainFeatures
from core.runs.files import run_files
from core.runs.record import Run
from pages.ui import auth, common, dataset_choice, photo_gallery, plain, teaching, vega
from pages.ui.dataset.unlabelled import upload_section
from pages.ui.explore.map import stored_train_features
from pages.ui.run_task import task_panel

BUTTONS_UP_TO = 8  # classes shown as one button each; more: a picker
_DRAWING = threading.Lock()  # a batch is put in place by one run of the page at a time (a moment, not the retrain)
STRATEGY_NAMES = {STRATEGY: "Flora's picking (uncertain, varied)", RANDOM: "at random"}


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


@st.cache_resource(show_spinner=False, max_entries=4)
def _unlabelled_features(run_dir: str, stamp: float | None) -> UnlabelledFeatures | None:
    """The unlabelled photos' features through the run, read once per file (`stamp`)."""
    return UnlabelledFeatures.load(run_dir)


def _unlabelled(run: Run) -> Unlabelled:
    return Unlabelled.load(common.data_root(), run.dataset_path)


def _state(run: Run) -> dict:
    """This session's batch for the run: its number, the picks shown, the ones skipped, how the head was last
    retrained, and whether it is retraining now (the clicks that arrive meanwhile are dropped). The batch itself is
    the one kept in the run folder (core.results.label_next.batch): a reload or another tab shows the same cards,
    and one drawn or skipped in another tab replaces this session's (never while this one draws)."""
    key = f"label_next_{run.run_id}"
    state = st.session_state.get(key)
    if state is None:
        state = st.session_state[key] = {"batch": 0, "picks": [], "skipped": [], "retrained": None, "retraining": False}
    kept = kept_batch.load(run.directory)
    if kept is not None and not state.get("retraining") and not kept_batch.same(kept, state):
        state.update(kept)
    return state


def _keep(run: Run, state: dict) -> None:
    """Keep the batch on show in the run folder, when this person may write there (their run)."""
    if not may_label(run):
        return
    try:
        kept_batch.save(run.directory, state)
    except OSError as e:  # a read-only run folder: the batch lasts as long as this session
        st.session_state["label_next_error"] = f"The batch could not be kept for a reload ({e.strerror or e})."


def _current(run: Run, batch: int, path: str) -> bool:
    """True when a click on `path` of batch `batch` still means something: the batch is the one shown and the head
    is not retraining. A button pressed on the greyed page while the next batch is drawn belongs to the old batch
    (Streamlit still delivers it), so it does nothing."""
    state = _state(run)
    return (
        not state.get("retraining") and state.get("batch") == batch and any(p["path"] == path for p in state["picks"])
    )


def may_label(run: Run) -> bool:
    """Whether the signed-in user may label into `run`'s dataset folder: their run (or an admin), in a folder this
    Flora reads, by the rule the Dataset page lists folders by (dataset_choice.roots: one rule for both)."""
    return auth.can_change(run) and dataset_choice.outside_reason(run.dataset_path) is None


def label_photo(run: Run, path: str, label: str | None, batch: int) -> None:
    """Button callback: give the photo its class (a copy into the class folder) or set it aside, once: a second
    click on the same photo (or one made while the head retrains) changes nothing."""
    if not _current(run, batch, path) or not may_label(run):
        return
    unlabelled = _unlabelled(run)
    done = unlabelled.record.get(path)
    if done is not None:  # already answered (a double click, or another tab): one copy, whatever the clicks
        said = f"labelled **{plain.md(done['label'])}**" if done.get("label") else "set aside"
        st.session_state["label_next_done"] = f"{Path(path).name} is already {said}: Undo changes it."
        return
    try:
        copied = unlabelled.label(path, label, run.classes or [], by=auth.current_user().id)
    except DatasetError as e:
        st.session_state["label_next_error"] = str(e)
        return
    st.session_state["label_next_done"] = (
        f"{Path(path).name}: labelled **{plain.md(label)}** (copied to {plain.code(common.shown_path(copied))})"
        if label
        else f"{Path(path).name}: set aside as none of these classes"
    )


def undo(run: Run, path: str, batch: int) -> None:
    if _current(run, batch, path):
        _unlabelled(run).undo(path)


def skip(run: Run, path: str, batch: int) -> None:
    state = _state(run)
    if _current(run, batch, path) and path not in state["skipped"]:
        state["skipped"].append(path)
        _keep(run, state)


def unskip(run: Run, path: str, batch: int) -> None:
    state = _state(run)
    if _current(run, batch, path) and path in state["skipped"]:
        state["skipped"].remove(path)
        _keep(run, state)


def ask_next(run: Run, batch: int) -> None:
    """Button callback: the person asks for the batch after `batch` (drawn in the run of the page that follows); a
    click on an older batch's button, or one made while the head retrains, does nothing."""
    state = _state(run)
    if not state.get("retraining") and state.get("batch") == batch:
        state["advance"] = batch


def batch_summary(picks: list[str], record: dict, skipped: list[str]) -> str:
    """What happened to a finished batch, each photo counted once by what it ended as."""
    given = sum(1 for p in picks if (record.get(p) or {}).get("label"))
    aside = sum(1 for p in picks if p in record and not record[p].get("label"))
    passed = sum(1 for p in picks if p not in record and p in skipped)
    return f"Last batch: {given} labelled, {aside} set aside, {passed} skipped."


def draw_batch(
    run: Run,
    state: dict,
    finished: list[dict],
    unlabelled: Unlabelled,
    computed: UnlabelledFeatures,
    train: TrainFeatures,
    size: int,
) -> None:
    """Retrain the head on the labels given so far and draw the next batch into `state`, keeping the finished one
    (its photos and the ones skipped) for the summary. `finished`: the batch this run of the page found done.

    A click on the greyed page starts a second run of the page while this one retrains (Streamlit's fast reruns), and
    that run finds the same finished batch and retrains too: whichever finishes first puts its batch in place, and a
    run that finds its finished batch already replaced keeps the one in place, so a batch is never summed up as the
    one before it."""
    with _DRAWING:
        if state["picks"] is not finished:  # another run of the page drew the next batch meanwhile
            return
        state["retraining"] = True  # until the new batch is in place, a click on the old one does nothing
    started = time.perf_counter()
    bench = workbench(run.classes or [], train.features, train.labels, unlabelled, computed, labelled_paths=train.paths)
    skipped = list(state["skipped"])
    waiting = [p for p in bench.pending_paths if p not in skipped]
    offered_again = not waiting  # every waiting photo was skipped: offer them again
    if offered_again:
        waiting = bench.pending_paths
    keep = [i for i, p in enumerate(bench.pending_paths) if p in set(waiting)]
    picks = next_batch(
        bench.labelled_x, bench.labelled_y, bench.pending_x[keep], [bench.pending_paths[i] for i in keep],
        bench.classes, size,
    )  # fmt: skip
    with _DRAWING:
        if state["picks"] is not finished:  # another run of the page drew the next batch meanwhile: keep it
            return
        if finished:
            state["last"] = {"paths": [p["path"] for p in finished], "skipped": skipped}
        if offered_again:
            state["skipped"] = []
        state["picks"] = [p.to_dict() for p in picks]
        state["retrained"] = (len(bench.labelled_y), bench.labelled_here, time.perf_counter() - started)
        state["batch"] = state.get("batch", 0) + 1
        _keep(run, state)  # before the flag drops: a run of the page that reads the kept batch finds this one
        state["retraining"] = False


def label_next_section(run: Run) -> None:
    teaching.explain("label_next")
    unlabelled = _unlabelled(run)
    if not unlabelled.photos:
        st.info(
            "This dataset has no unlabelled photos. Put photos without a label in a folder named **unlabelled** "
            "inside the dataset's folder (beside the class folders), or add them below: Flora will rank them by "
            "how much labelling each would teach the model.",
            icon=":material/label_off:",
        )
        upload_section(run.dataset_path, expanded=True, key=f"label_next_upload_{run.run_id}")
        simulation_section(run)
        return
    st.caption(
        f"{len(unlabelled.pending)} photo(s) waiting for a label · {len(unlabelled.labelled)} labelled here (copied "
        f"into their class folders, the originals kept in unlabelled/) · {len(unlabelled.set_aside)} set aside as "
        "none of these classes. Labelled photos are trained on by the **next** run on this dataset."
    )
    upload_section(run.dataset_path, expanded=False, key=f"label_next_upload_{run.run_id}")
    computed = _unlabelled_features(str(run.directory), _mtime(run_files(run).label_next))
    train = stored_train_features(str(run.directory), run.train_features_mtime)  # read once, not at every click
    if computed is None or train is None or computed.fingerprint != unlabelled.index().fingerprint:
        st.markdown(
            "First Flora computes the features of the training photos and of the unlabelled ones through this "
            "run's network, in the background (seconds to minutes, once; again when photos are added)."
        )
        task_panel(run, "label-next", "Prepare the unlabelled photos", key="explore_label_next")
    else:
        if not unlabelled.pending:
            st.success("Every unlabelled photo has been labelled or set aside.", icon=":material/done_all:")
        if unlabelled.pending or _state(run)["picks"]:  # the last batch stays in place, its Undo buttons too
            batch_section(run, unlabelled, computed, train)
    simulation_section(run)


def batch_section(run: Run, unlabelled: Unlabelled, computed: UnlabelledFeatures, train: TrainFeatures) -> None:
    state = _state(run)
    for key, show in (("label_next_error", st.error), ("label_next_done", st.success)):
        message = st.session_state.pop(key, None)
        if message:
            show(message, icon=":material/error:" if show is st.error else ":material/check:")
    batch = st.segmented_control(
        "Photos per batch", [5, 10, 20], default=10, key="label_next_batch_size", required=True
    )  # fmt: skip
    shown = state["picks"]
    if unlabelled.pending and (not shown or state.get("advance") == state["batch"]):  # the first batch, or asked for
        draw_batch(run, state, shown, unlabelled, computed, train, int(batch or 10))
    handled = set(unlabelled.record) | set(state["skipped"])
    waiting = [p["path"] for p in state["picks"] if p["path"] not in handled]
    photos, new, seconds = state["retrained"] or (0, 0, 0.0)
    if state.get("last"):  # counted from the record now, so it says what the finished batch's photos ended as
        st.caption(batch_summary(state["last"]["paths"], unlabelled.record, state["last"]["skipped"]))
    st.caption(
        f"The head was retrained on {photos:,} labelled photos ({new} of them labelled here) in {seconds:.1f} s and "
        f"picked these {len(state['picks'])}: the most torn first, one from each group of uncertain photos that look "
        "alike to it. Label them, set aside what is none of these classes, or skip: each card stays where it is "
        "until you ask for the next batch below."
    )
    can_label = may_label(run)
    if not auth.can_change(run):
        st.caption("Only this run's owner (or an admin) labels from it; the ranking is shown for reading.")
    elif not can_label:
        outside = dataset_choice.outside_reason(run.dataset_path)
        st.caption(f"This run's photos are {outside}: the ranking is shown for reading.")
    for i, pick in enumerate(state["picks"]):
        path, key = pick["path"], f"label_next_b{state['batch']}_{i}"  # a new batch, new buttons: old clicks fall away
        with st.container(border=True, horizontal=True, key=f"label_next_card_{i}"):
            image, error = photo_gallery.thumb(Path(run.dataset_path) / path, 448)  # sharp at 224 on a fine screen
            st.image(image, width=224, caption=plain.md(Path(path).name))
            with st.container():
                guesses = " · ".join(f"{plain.md(g['class'])} {g['probability']:.0%}" for g in pick["guesses"])
                st.markdown(f"**The model's guesses:** {guesses}")
                st.caption(f"Why this one: {plain.md(pick['reason'])}." + (f" ({error})" if error else ""))
                record = unlabelled.record.get(path)
                if record is not None:
                    done = f"labelled **{plain.md(record['label'])}**" if record.get("label") else "set aside"
                    with st.container(horizontal=True, vertical_alignment="center"):
                        st.markdown(f":material/check: {done}")
                        if can_label:
                            args = (run, path, state["batch"])
                            st.button("Undo", key=f"{key}_undo", on_click=undo, args=args)
                elif path in state["skipped"]:
                    with st.container(horizontal=True, vertical_alignment="center"):
                        st.caption("Skipped for now: it comes back in a later batch.")
                        st.button("Undo", key=f"{key}_unskip", on_click=unskip, args=(run, path, state["batch"]))
                elif can_label:
                    label_buttons(run, path, key, state["batch"])
    next_batch_button(run, state, waiting if can_label else [], bool(unlabelled.pending))


def next_batch_button(run: Run, state: dict, waiting: list[str], more: bool) -> None:
    """Under the batch: 'Next batch' once every card is answered or skipped (the head retrains first). Greyed while
    cards wait, so a second click that lands after the next batch is drawn cannot pass over it unseen. `more`:
    photos still wait for a label (none: no next batch)."""
    if not more:
        return
    if waiting:
        st.caption(
            f"{len(waiting)} photo(s) of this batch still wait for a label, none of these or skip; then the next batch."
        )
    st.button(
        "Next batch",
        key=f"label_next_b{state['batch']}_next",
        on_click=ask_next,
        args=(run, state["batch"]),
        disabled=bool(waiting),
        type="primary",
        icon=":material/skip_next:",
        help="Retrains the head on the labels given so far and picks the next photos.",
    )


def label_buttons(run: Run, path: str, key: str, batch: int) -> None:
    classes = run.classes or []
    with st.container(horizontal=True):
        if len(classes) <= BUTTONS_UP_TO:
            for name in classes:
                st.button(plain.md(name), key=f"{key}_{name}", on_click=label_photo, args=(run, path, name, batch))
        else:
            choice = st.selectbox("Class", classes, key=f"{key}_choice", label_visibility="collapsed")
            args = (run, path, choice, batch)
            st.button("Label", key=f"{key}_go", on_click=label_photo, args=args, type="primary")
        st.button("None of these", key=f"{key}_none", on_click=label_photo, args=(run, path, None, batch))
        st.button("Skip", key=f"{key}_skip", on_click=skip, args=(run, path, batch))


def curves_chart(result: dict) -> dict:
    """Validation accuracy against labels given, a line per strategy, the target as a dashed rule (a Vega-Lite spec,
    pages.ui.vega: tens of milliseconds of CPU at every run of the page with Altair)."""
    rows = [
        vega.finite({"labels": labels, "accuracy": accuracy, "strategy": STRATEGY_NAMES.get(name, name)})
        for name, figures in result["strategies"].items()
        for labels, accuracy in figures["curve"]
    ]
    strategy = vega.field(
        "strategy",
        "nominal",
        title=None,
        scale={"domain": list(STRATEGY_NAMES.values()), "range": ["#b8336a", "#2f6db5"]},
        legend={"orient": "bottom", "labelLimit": 400},
    )
    lines = {
        "data": {"values": rows},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": vega.field("labels", title="labels given"),
            "y": vega.field("accuracy", title="validation accuracy", axis={"format": "%"}, scale={"zero": False}),
            "color": strategy,
            "tooltip": [vega.field("strategy", "nominal"), vega.field("labels"), vega.field("accuracy", format=".1%")],
        },
    }
    target = {
        "data": {"values": [vega.finite({"target": result["target_accuracy"]})]},
        "mark": {"type": "rule", "strokeDash": [4, 4], "color": "gray"},
        "encoding": {"y": vega.field("target")},
    }
    return {"$schema": vega.SCHEMA, "config": vega.CONFIG, "layer": [lines, target], "height": 300}


def simulation_section(run: Run) -> None:
    st.subheader("Does it save labels on this data?", divider="gray")
    result = label_next_tasks.stored_simulation(run.directory)
    if result is None:
        st.markdown(
            "Measured on this run's own labelled photos: Flora hides their labels, starts from 2 photos per class, "
            "and labels them again batch by batch, once picking its way and once at random, over 3 seeds, "
            "retraining the head after every batch and scoring it on the validation photos. It counts the labels "
            "each needs to reach 95% of the accuracy with every label. Seconds to a few minutes, in the background."
        )
        task_panel(run, "label-next-simulate", "Measure it against random", key="explore_label_next_simulate")
        return
    said = saving(result["strategies"], result.get("target_band_photos"))  # today's words for the stored numbers
    show = st.info
    if said.get("better") == RANDOM:
        show = st.warning
    elif said["measurable"] and said.get("better") == STRATEGY:
        show = st.success
    show(plain.md(said["verdict"][0].upper() + said["verdict"][1:]) + ".", icon=":material/insights:")
    st.vega_lite_chart(curves_chart(result), width="stretch")
    ours, theirs = result["strategies"].get(STRATEGY, {}), result["strategies"].get(RANDOM, {})

    def spread(figures: dict) -> str:
        by_seed = [("not reached" if h is None else str(h)) for h in figures.get("labels_to_target_by_seed", [])]
        return ", ".join(by_seed) or "-"

    counts = [c for c, _ in ours.get("curve", [])]
    st.caption(
        f"Target (dashed): {result['target_accuracy']:.1%} validation accuracy, {result['target_fraction']:.0%} of "
        f"the {result['full_accuracy']:.1%} the head reaches with all {result['pool']:,} training labels. Labels "
        f"needed per seed: Flora's picking {spread(ours)}; random {spread(theirs)} (the headline gives the middle of "
        f"the {result['seeds']} seeds; the lines draw the seeds' average accuracy, which can cross the target at "
        "another count than the middle seed does, and where a line sits above the other at one count says nothing "
        f"of when each reaches the target). Accuracy is measured at {', '.join(map(str, counts[:6]))}, … labels (a "
        "batch more each step, a fifth more once that is larger), so a saving is counted in those steps. Measured on "
        "this run's features: a network started from ImageNet weights gives features where both reach the target "
        "sooner."
    )
    measured = result.get("measured_at")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(measured)) if measured else "earlier"
    st.caption(
        f"Measured {when} in {result.get('seconds', 0):.0f} s. The seeds are fixed, so measuring again on the same "
        "photos gives the same answer: measure again after this run's training photos changed, or on a new run."
    )
    task_panel(run, "label-next-simulate", "Measure again", key="explore_label_next_simulate_again")
