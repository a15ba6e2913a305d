"""What the page scripts share: workspace access, cached loaders, widgets, navigation. Never imports Keras."""
