"""Flora's engine: datasets, ingest, augmentation, ResNet-50 transfer learning, runs, evaluation.

Importing `core` is cheap: modules that need Keras import it themselves.
"""

__version__ = "0.1.0"
