"""The app's pages, in the order the sidebar shows them: one place that names each page script.

`streamlit_app.py` builds st.navigation from `PAGES`; links between pages go through `page_file`,
so a page that moves is renamed here only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    name: str  # also the URL path: /train
    title: str
    icon: str

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
    PageSpec("predict", "Predict", ":material/local_florist:"),
)
_BY_NAME = {page.name: page for page in PAGES}


def page_file(name: str) -> str:
    """The script of page `name`, for st.page_link and st.switch_page."""
    return _BY_NAME[name].file
