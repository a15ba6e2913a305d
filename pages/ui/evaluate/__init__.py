"""The Evaluate page's parts: calibration, the confusion matrix, the Grad-CAM heatmaps."""
