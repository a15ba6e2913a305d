"""The layer and output names Flora reads in its models: one contract, written down once.

A classifier (core.network.model) is, by layer name:

  IMAGE -> PREPROCESS -> <the backbone, named by its registry entry (core.network.backbones)> -> AVG_POOL -> HEAD

The backbone ends in FEATURE_MAP (FEATURE_DIM channels): the layer global pooling reads and Grad-CAM
explains. The head is a nested model:

  FEATURES (FEATURE_DIM) -> HEAD_BN -> [head_dense_i -> head_dropout_i for i = 1..] -> LOGITS -> PROBABILITIES

LOGITS is linear and PROBABILITIES a separate float32 softmax, so the logits can be read exactly.
The inference graph of serving and exports (core.network.graph) has the outputs INFERENCE_OUTPUTS.

Saved models carry these names, so they never change; a backbone added to the registry keeps the
contract (its own feature-map layer and width are declared in its entry).
"""

from __future__ import annotations

IMAGE = "image"  # the raw 0-255 RGB input
PREPROCESS = "resnet_preprocess"  # raw pixels -> the backbone's input (the name predates other backbones)
FEATURE_MAP = "conv5_block3_out"  # ResNet-50's last block: the backbone's output
FEATURE_DIM = 2048  # its channels, so the pooled features' width
AVG_POOL = "avg_pool"  # global average pooling of the feature map in a classifier

HEAD = "head"  # the nested head model
FEATURES = "features"  # the head's input, and the inference graph's pooled-features output
HEAD_BN = "head_bn"
HEAD_DENSE_PREFIX = "head_dense_"
HEAD_DROPOUT_PREFIX = "head_dropout_"
HEAD_DROPOUT = "head_dropout"  # the lone dropout of a head without Dense blocks
LOGITS = "logits"
PROBABILITIES = "probabilities"

INFERENCE_OUTPUTS = (PROBABILITIES, LOGITS, FEATURES)


def head_dense(block: int) -> str:
    """The Dense layer of head block `block` (from 1)."""
    return f"{HEAD_DENSE_PREFIX}{block}"


def head_dropout(block: int) -> str:
    return f"{HEAD_DROPOUT_PREFIX}{block}"


def head_dense_block(layer_name: str) -> int | None:
    """The block number of a head Dense layer's name ("head_dense_2" -> 2), None for any other layer."""
    if not layer_name.startswith(HEAD_DENSE_PREFIX):
        return None
    suffix = layer_name[len(HEAD_DENSE_PREFIX) :]
    return int(suffix) if suffix.isdigit() else None
