"""/class as a server's first request: Streamlit's legacy pages/ routing runs this file, which runs the app."""

from pages.ui.navigation import run_app

run_app()
