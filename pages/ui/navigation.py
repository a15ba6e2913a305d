"""The app's pages, in the order the sidebar shows them: one place that names each page script.

`streamlit_app.py` builds st.navigation from `PAGES` and draws the sidebar's links itself; links
between pages go through `page_file`, so a page that moves is renamed here only.

Streamlit still routes a server's very first request through its legacy `pages/` convention (it
scans `pages/*.py` before any st.navigation has run). So `pages/<name>.py` exists for each page as
a three-line entry that runs the app (`run_app`): a first request for /train after a restart gets
the whole app on its Train page, with no "page not found". Streamlit's own sidebar list is off in
.streamlit/config.toml, so its legacy listing of those entries is never shown. After that first
run st.navigation decides, and the entries are never run again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    name: str  # also the URL path: /train
    title: str
    icon: str
    admins_only: bool = False  # listed and reachable only for an admin of a shared Flora

    @property
    def file(self) -> str:
        return f"pages/views/{self.name}.py"


PAGES = (
    PageSpec("home", "Home", ":material/home:"),
    PageSpec("dataset", "Dataset", ":material/photo_library:"),
    PageSpec("augmentation", "Augmentation", ":material/auto_fix_high:"),
    PageSpec("train", "Train", ":material/model_training:"),
    PageSpec("sweep", "Sweep", ":material/tune:"),
    PageSpec("evaluate", "Evaluate", ":material/grid_on:"),
    PageSpec("explore", "Explore", ":material/scatter_plot:"),
    PageSpec("compare", "Compare", ":material/compare_arrows:"),
    PageSpec("predict", "Predict", ":material/local_florist:"),
    PageSpec("serve", "Serve", ":material/dns:"),
    PageSpec("monitor", "Monitor", ":material/monitoring:"),
    PageSpec("class", "Class", ":material/groups:", admins_only=True),
)
_BY_NAME = {page.name: page for page in PAGES}

# The query parameters a link may set: the page binds its picker to the same key, so the link, the picker and the
# URL in the address bar agree. Spelled here once: the sidebar, Sweep and Explore link to Train with them.
TRAIN_RUN = "train_run"  # /train?train_run=<run id>: the run the Train page watches
TRAIN_PREFILL = "train_prefill"  # /train?train_prefill=<run id>: the New run form filled with that run's settings
SWEEP_PICK = "sweep_pick"  # /sweep?sweep_pick=<sweep id>: the sweep the Sweep page shows


def run_app() -> None:
    """Run the app's main script (what a page entry file does on a server's first request)."""
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[2] / "streamlit_app.py"), run_name="__main__")


def pages_for(shared: bool, admin: bool) -> tuple[PageSpec, ...]:
    """The pages this person sees: the admin-only ones (the Class view) only for an admin of a shared Flora."""
    return tuple(page for page in PAGES if not page.admins_only or (shared and admin))


def page_file(name: str) -> str:
    """The script of page `name`, for st.page_link and st.switch_page."""
    return _BY_NAME[name].file
