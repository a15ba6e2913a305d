"""The sidebar's device line: which device trains, and (where an NVIDIA driver is found) the device check's answer,
run once in a process of its own.
"""

from __future__ import annotations

import streamlit as st

from core.device import DeviceInfo, quick_describe
from core.device_check import FRAMEWORK_NAMES, CheckInBackground
from pages.ui import plain


@st.cache_resource(show_spinner=False, ttl=600)
def _driver_device() -> DeviceInfo:
    """What nvidia-smi says (asked at most every 10 min): a GPU here is the driver's, not yet the framework's."""
    return quick_describe()


DEVICE_CHECK_PENDING = "flora_device_check_pending"  # this session drew a page before the check answered


@st.cache_resource(show_spinner=False)
def device_check() -> CheckInBackground | None:
    """Where a driver is found, whether the framework sees its GPU: checked once per server start, in a process
    of its own (a plain `tensorflow` on a GPU machine would otherwise train on the CPU without a word)."""
    return CheckInBackground() if _driver_device().kind == "gpu" else None


def device_info() -> DeviceInfo:
    """The device training will use, as the sidebar and forms show it: the driver's GPU until the check says
    the framework does not see it, then the CPU."""
    driver = _driver_device()
    checked = device_check().result() if driver.kind == "gpu" else None
    if checked and not checked.get("ok") and checked.get("kind") == "cpu":
        return DeviceInfo(checked["backend"], "cpu", checked["name"], checked.get("count", 1))
    return driver


def device_caption() -> None:
    """The sidebar's device line: the CPU; or the GPU and whether the framework sees it, with the fix if not."""
    info = _driver_device()
    if info.kind != "gpu":
        st.caption(f"Device: {info.label}")
        return
    framework = FRAMEWORK_NAMES.get(info.backend, info.backend)
    checked = device_check().result()
    if checked is None:
        st.session_state[DEVICE_CHECK_PENDING] = True
        st.caption(f"Device: {info.name} (checking that {framework} sees it…)")
        return
    if st.session_state.pop(DEVICE_CHECK_PENDING, False):
        st.rerun()  # the page was drawn with the driver's GPU: draw it again with what the check found
    if checked.get("ok"):
        st.caption(f"Device: {checked['sentence']}")
    else:
        st.warning(
            f"**Training will run on the CPU.** {plain.md(checked['sentence'])}"
            + (f"  \nFix: `{checked['fix']}`" if checked.get("fix") else ""),
            icon=":material/memory:",
        )
