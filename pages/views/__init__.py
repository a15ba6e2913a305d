"""One script per page, named by st.navigation in streamlit_app.py (see pages/ui/navigation.py)."""
