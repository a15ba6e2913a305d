"""The frozen forward pass through the fastest runtime on this machine: Keras, ONNX Runtime or OpenVINO.

  names       the runtimes' names and how one is asked for (stdlib only: the CLI reads it)
  onnx_graph  a Keras inference graph written as ONNX from its layers and weights (any backend, about a second)
  engines     each runtime set up for a CPU: threads, graph optimisation, hints; float32 only
  choice      which runtime runs a forward pass (asked for, or measured here and kept), checked against Keras

Training's gradient steps stay in Keras; what runs here is forward only: feature extraction, the analysis
arrays, test-time augmentation, `core predict` and the model server.
"""
