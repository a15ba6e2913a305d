"""A job for the warm launcher's tests (`python -m tests.job_probe OUT [words...]`): writes what it was started
with to OUT as JSON, says hello on stdout and stderr, then does what its words ask."""

import json
import os
import sys
import time
from pathlib import Path

KERAS_ALREADY_LOADED = "keras" in sys.modules  # before anything here imports it

if __name__ == "__main__":
    out, words = sys.argv[1], sys.argv[2:]
    seen = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "parent": os.getppid(),
        "own_session": os.getsid(0) == os.getpid(),
        "stdin": os.path.realpath(f"/proc/self/fd/{sys.stdin.fileno()}"),
        "probe": os.environ.get("FLORA_PROBE"),
        "keras_loaded": KERAS_ALREADY_LOADED,
        "main": sys.modules["__main__"].__file__,
        "path0": sys.path[0],
        "cmdline": Path("/proc/self/cmdline").read_bytes().rstrip(b"\0").decode().split("\0"),
    }
    with open(out, "w") as f:
        json.dump(seen, f)
    # every OpenBLAS the launcher loaded (NumPy's, SciPy's, OpenCV's) and OpenCV's own pool, used after the fork
    import cv2
    import numpy as np
    import scipy.linalg

    matrix = np.random.default_rng(0).random((400, 400))
    assert np.allclose(scipy.linalg.inv(matrix) @ matrix, np.eye(400), atol=1e-6)
    assert cv2.resize(np.zeros((800, 800, 3), np.uint8), (400, 400)).shape == (400, 400, 3)
    print("hello on stdout")
    print("hello on stderr", file=sys.stderr)
    if "sleep" in words:
        time.sleep(float(words[words.index("sleep") + 1]))
    if "fail" in words:
        raise RuntimeError("the probe failed on purpose")
    if "done" in words:
        with open(out + ".done", "w") as f:
            f.write("done")
