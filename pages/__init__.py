"""Flora's UI: the page scripts in `pages/views/`, the parts they share in `pages/ui/`.

Streamlit still has a legacy convention for a `pages/` folder beside the main script: it lists
every `pages/*.py` as a page of its own. No script lives directly in this folder, so that
convention finds nothing here; `streamlit_app.py` names every page through st.navigation
(`pages/ui/navigation.py`), with no private Streamlit API.
"""
