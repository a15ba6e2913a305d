"""Which unlabelled photos to label next: the picking strategy, the features it works on, its measured
saving against random, and both as background tasks of a run."""
