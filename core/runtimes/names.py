"""The runtimes' names and how a person asks for one: standard library only, so the CLI's parser offers
`--runtime` without loading a runtime or numpy (a light command such as `core alias` starts in a fraction of a
second, issue 44)."""

KERAS = "keras"
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
RUNTIMES = (KERAS, ONNXRUNTIME, OPENVINO)
TITLES = {KERAS: "Keras", ONNXRUNTIME: "ONNX Runtime", OPENVINO: "OpenVINO"}
RUNTIME_ENV = "FLORA_RUNTIME"  # set by --runtime for the process and every job it starts
AUTO = "auto"  # the fastest one measured on this machine that gives Keras's answers
CHOICES = (AUTO, *RUNTIMES)
