"""The Dataset page's health panel: run the check, then each finding with its files as thumbnails."""

from __future__ import annotations

import streamlit as st

from core.data.datasets import DatasetError, DatasetIndex
from core.health import CheckCancelled, Finding, HealthReport, check_dataset, saved_report
from pages.ui import common, dataset_choice, photo_gallery, plain

SEVERITY_LOOK = {
    "error": (":material/error:", "red"),
    "warning": (":material/warning:", "orange"),
    "info": (":material/info:", "blue"),
}
SHOWN_FILES = 24  # thumbnails per finding; the full list is in a table below them
SHOWN_GROUPS = 8


def render(index: DatasetIndex) -> None:
    st.caption(
        "Reads every image once: files training would skip, exact and near duplicates, duplicates that "
        "straddle train/validation/test (the test score would be inflated), the same photo under two classes, "
        "imbalance, tiny or extreme-aspect images, grayscale photos. It does not judge whether a photo's label is "
        "right: that needs a trained model (Explore › Suspected label errors, after a run)."
    )
    key = f"dataset_health_{index.fingerprint}"
    if st.button("Run the health check", type="primary", icon=":material/health_and_safety:", key="dataset_health_go"):
        progress = common.ThrottledProgress("reading headers")
        try:
            st.session_state[key] = check_dataset(index, progress=progress, cache_root=dataset_choice.cache_root())
        except (DatasetError, CheckCancelled) as e:
            st.error(plain.md(e))
        progress.bar.empty()
    report: HealthReport | None = st.session_state.get(key)
    if report is None:  # checked before (this session or another) on exactly this content?
        report = st.session_state[key] = saved_report(index, dataset_choice.cache_root())
    if report is None:
        return
    st.caption("Results of the last check of this exact content; run it again after changing the files.")
    counts = report.counts()
    cols = st.columns(4)
    cols[0].metric("Problems", counts["error"], help="In the files, not the labels: wrong labels are found on Explore.")
    cols[1].metric("Warnings", counts["warning"])
    cols[2].metric("Notes", counts["info"])
    cols[3].metric("Checked in", f"{report.stats.get('seconds', 0):.1f} s")
    if not report.findings:
        st.success(
            "Nothing wrong found in the files: no unreadable files, duplicates, leaks or odd images. Wrong labels "
            "are not looked for here: once a run has trained, Explore › Suspected label errors lists the photos "
            "whose label the model doubts.",
            icon=":material/check:",
        )
    for finding in report.findings:
        show_finding(index, finding)


def show_finding(index: DatasetIndex, finding: Finding) -> None:
    icon, _ = SEVERITY_LOOK.get(finding.severity, (":material/info:", "gray"))
    # a finding's words name classes and files: text, never Markdown
    with st.expander(plain.md(finding.title), icon=icon, expanded=finding.severity == "error"):
        st.markdown(plain.md(finding.detail))
        if finding.groups:
            for number, group in enumerate(finding.groups[:SHOWN_GROUPS], start=1):
                st.caption(f"Group {number}: the same picture")
                photo_gallery.gallery([(index.root / path, caption(finding, path)) for path in group], size=120)
            if len(finding.groups) > SHOWN_GROUPS:
                st.caption(f"… and {len(finding.groups) - SHOWN_GROUPS} more group(s); all files are listed below.")
        elif finding.files:
            shown = finding.files[:SHOWN_FILES]
            photo_gallery.gallery([(index.root / path, caption(finding, path)) for path in shown], size=120)
            if len(finding.files) > SHOWN_FILES:
                st.caption(f"… and {len(finding.files) - SHOWN_FILES} more; all are listed below.")
        if finding.files:
            rows = [{"file": path, "note": finding.captions.get(path, "")} for path in finding.files]
            st.dataframe(rows, hide_index=True, height=min(300, 36 * (len(rows) + 1) + 2))


def caption(finding: Finding, path: str) -> str:
    note = finding.captions.get(path)
    return f"{path} · {note}" if note else path
