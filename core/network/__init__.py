"""The network: backbones, the layer names Flora reads, its own layers, the model and its augmentation."""
