"""The Predict page's parts: where the model looked, and the extras beside the answer."""
