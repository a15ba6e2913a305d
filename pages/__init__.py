"""Flora's UI: the page scripts in `pages/views/`, their parts in `pages/ui/` (shared ones at its root, one
package per page for the rest).

Streamlit still has a legacy convention for a `pages/` folder beside the main script: it lists
every `pages/*.py` as a page of its own. The only scripts directly in this folder are three-line
entries (`pages/<name>.py`) that run the whole app, so a server's very first request for /<name> gets
the app on that page; `streamlit_app.py` names every page through st.navigation
(`pages/ui/navigation.py`), with no private Streamlit API, and hides Streamlit's own listing.
"""
