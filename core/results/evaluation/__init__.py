"""How the run did on its test photos: the metrics, the confusion matrix's order, the 2-D map, Grad-CAM, and
the paired comparison of runs."""
