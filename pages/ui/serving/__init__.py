"""The Serve page's parts: aliases, exports, retrain-and-promote (Predict shows the retrain panel too)."""
