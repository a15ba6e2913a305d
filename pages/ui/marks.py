"""A person's marks on suspected label errors (core.data.corrections), as the review pages make them: relabel, exclude,
fine, undo; what a mark does; classmates' proposals to a run's owner. Explore's label review (single-label) and the
label lists a multi-label run doubts (pages.ui.label_lists) both mark through here.
"""

from __future__ import annotations

import streamlit as st

from core.data.corrections import EXCLUDE, FINE, RELABEL, Corrections, summary, target_text
from core.runs.record import Run
from core.sharing.people import layer_of, same_person
from pages.ui import auth, common, plain
from pages.ui.navigation import TRAIN_PREFILL, page_file

MARKED = {RELABEL: "relabel to {to}", EXCLUDE: "excluded", FINE: "marked fine"}


def corrections_of(run: Run) -> Corrections:
    """The signed-in person's marks on the run's dataset (everyone's own; "local" when not shared)."""
    return _persons(run.dataset_path)


def of_dataset(dataset_root) -> dict[str, dict]:
    """The signed-in person's marks on the dataset folder `dataset_root`, by photo path (their own and the ones they
    accepted): what their next run on it applies."""
    return _persons(dataset_root).entries


def _persons(dataset_root) -> Corrections:
    return Corrections.load(common.data_root(), dataset_root, auth.current_user().id)


def sample_filter(marked: dict[str, dict], paths: list[str], key: str, what: str = "classes") -> bool:
    """Above a sample grid (its photos' `paths`): how many carry the person's marks, and a toggle to show only those,
    there whenever the person marked any photo of the dataset (a filter that leaves none out says so instead of
    hiding the toggle). Returns whether only the marked photos are wanted."""
    if not marked:
        return False
    here = sum(path in marked for path in paths)
    under = "its own labels" if what == "labels" else "its folder's class"
    counted = f"{here}" if here == len(marked) else f"{here} of your {len(marked)} in these {what}"
    only = st.toggle(
        f"Only the photos you marked ({counted})",
        key=key,
        help="Your marks from the label reviews (Explore's Suspected label errors; for a multi-label run also "
        "Evaluate's label lists): relabelled, excluded or marked fine. Captions say which. A photo shows under "
        f"{under}, also once you relabelled it. Your next run on this dataset applies them (the Train form's "
        "corrections toggle).",
    )
    if only and not here:
        st.caption(
            f"None of the {len(marked)} photo(s) you marked is among these {what}' photos (a relabelled photo shows "
            f"under {under})."
        )
    return only


CAPTIONS = {RELABEL: "you relabelled it to {to}", EXCLUDE: "you excluded it", FINE: "you marked it fine"}


def caption_of(marked: dict[str, dict], path: str) -> str:
    """' · you relabelled it to tulip' ('you excluded it', 'you marked it fine') for a photo the person marked."""
    if path not in marked:
        return ""
    entry = marked[path]
    return " · " + CAPTIONS.get(entry.get("action"), str(entry.get("action"))).format(to=target_text(entry))


def mark(run: Run, path: str, action: str, to: str | None = None, labels: list[str] | None = None) -> None:
    """Button callback: record one correction (file only; the page shows it on the rerun): relabel `to` a class,
    or (a multi-label run) to the label list `labels`. On someone else's run it is also a proposal to its owner."""
    corrections = corrections_of(run)
    corrections.mark(path, action, to=to, classes=run.classes or None, proposed_to=run.owner, labels=labels)
    corrections.save()


def marked_text(entry: dict) -> str:
    """A mark in words: 'relabel to tulip', 'relabel to red, blue', 'excluded', 'marked fine'."""
    return MARKED.get(entry.get("action"), str(entry.get("action"))).format(to=target_text(entry))


def proposal_words(run: Run) -> str:
    """What a mark on someone else's run does: a proposal to its owner, and part of the marker's own next run."""
    return (
        f"Your mark, and a proposal to {plain.md(layer_of(run.owner))}: their runs apply it only if they accept it; "
        "your own next run on this dataset applies it."
    )


def answer_proposal(run: Run, path: str, by: str, accept: bool) -> None:
    """Accept (as the run owner's own mark) or decline a classmate's proposed correction."""
    owners = Corrections.load(common.data_root(), run.dataset_path, run.owner)
    if accept:
        owners.accept(path, by)
        owners.save()
    else:
        owners.decline(path, by)


def proposals_section(run: Run) -> None:
    """Marks others made on this run's owner's runs, for the owner (or an admin) to accept or decline."""
    if not auth.can_change(run):
        return
    proposals = Corrections.load(common.data_root(), run.dataset_path, run.owner).proposals()
    if not proposals:
        return
    mine = same_person(run.owner, auth.current_user().id)
    whose = "your" if mine else f"{plain.md(run.owner)}'s"
    with st.expander(
        f"Proposed corrections for {whose} runs: {len(proposals)}", icon=":material/inbox:", expanded=True
    ):
        st.caption(
            "Marks others made while looking at these runs. They change nothing here until accepted: an accepted "
            f"one becomes {whose} own mark, applied by {whose} next run on this dataset."
        )
        for i, proposal in enumerate(proposals[:50]):
            what = marked_text(proposal)
            with st.container(horizontal=True, vertical_alignment="center"):
                st.markdown(
                    f"{plain.code(proposal['path'])}: {plain.md(what)}, proposed by **{plain.md(proposal['by'])}**"
                )
                args = (run, proposal["path"], proposal["by"])
                st.button("Accept", key=f"proposal_yes_{i}", on_click=answer_proposal, args=(*args, True))
                st.button("Decline", key=f"proposal_no_{i}", on_click=answer_proposal, args=(*args, False))


def forget(run: Run, path: str) -> None:
    corrections = corrections_of(run)
    corrections.forget(path)
    corrections.save()


def what_a_correction_does(run: Run, corrections: Corrections) -> None:
    """What a mark does and where it goes, the marks so far, and the way to the next run that applies them."""
    counts = corrections.counts()
    relabelled = "trains with its new label list" if run.multilabel else "trains as its new class"
    done = ", ".join(f"{counts[a]} {w}" for a, w in ((RELABEL, "relabelled"), (EXCLUDE, "excluded"), (FINE, "fine")))
    with st.expander(f"What a correction does · so far for this dataset: {done}", icon=":material/info:"):
        if not same_person(run.owner, auth.current_user().id):
            st.info(
                f"This is {plain.md(run.owner)}'s run: your marks are yours (your next run on this dataset applies "
                f"them) and proposals to {plain.md(run.owner)}, whose runs apply them only once they (or an admin) "
                "accept them. Nobody's marks change anyone else's training.",
                icon=":material/group:",
            )
        where = plain.code(common.shown_path(corrections.file))
        st.markdown(
            f"Your marks are written to {where}, in the data folder, **never to your photos**: "
            "no photo is moved, renamed or deleted. This run stays as it is. The **next training run** on this dataset "
            f"applies them (a relabelled photo {relabelled}, an excluded one leaves its split) and, "
            "because its data changed, it gets a **new run id**; the same settings without corrections remain "
            "the old run.\n\n"
            "Correcting **training** photos keeps the validation and test photos the same, so the new run can be "
            "compared with this one photo by photo. Correcting a **validation** photo changes the score that picks "
            "the best epoch. Correcting a **test** photo changes what the test measures: runs before and after are "
            "then compared on the photos they still share."
        )
    train_again_link(run)


def train_again_link(run: Run) -> None:
    """The way to the next run that applies the marks: the Train form, filled with this run's settings."""
    st.page_link(
        page_file("train"),
        label="Train again with these corrections",
        icon=":material/model_training:",
        query_params={TRAIN_PREFILL: run.run_id},
    )


def applied_note(run: Run) -> None:
    """On a run's figures: the label corrections it applied, and what they mean for reading its figures beside a
    run's before them (the second walk: 'mAP 0.843 against 0.755 before' read as a gain, on other test labels)."""
    if not run.corrections:
        return
    st.info(
        f"This run applied {len(run.corrections)} label correction(s) ({summary(run.corrections)}): its figures are "
        "measured against the corrected labels, on the photos left after any exclusion. Beside a run from before "
        "the corrections they are not like for like; Compare pairs the two on the test photos they share with the "
        "same label. The corrections are listed on the Train page, under the run's settings.",
        icon=":material/edit_note:",
    )
