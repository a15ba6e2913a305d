"""A run's settings: TrainConfig and AugmentConfig, the options table every form and flag is drawn from, presets."""
