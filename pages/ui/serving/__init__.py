"""Serving parts of the Serve, Monitor and Predict pages: aliases, exports, retrain-and-promote."""
