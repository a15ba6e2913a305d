"""Putting a trained run to work: the prediction log, aliases, out-of-distribution scores, the
model server (Open Inference Protocol, TF Serving REST, a multipart /predict) and its batching.

Importing this package is cheap; the modules that need Keras or FastAPI import them themselves.
"""
