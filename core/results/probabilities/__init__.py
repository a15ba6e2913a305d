"""How far to trust a run's probabilities: calibration, prediction sets and their coverage, test-time
augmentation, and the out-of-distribution reference new photos are measured against."""
