"""Label issues' core path at N photos x 1,000 classes on synthetic arrays shaped like a run's (training
features float16 2,048 wide, val/test logits float32): its seconds and peak RSS, in one process.

    python docs/bench/label_issues_300k.py 300000    # docs/PERFORMANCE.md, "Scale"
"""

import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from core.results.labels import issues as label_issues
from core.results.labels import out_of_sample
from core.results.labels import self_test as label_self_test
from core.runs.analysis import softmax

n, classes, width = int(sys.argv[1]), 1000, 2048
rng = np.random.default_rng(0)
n_train, n_val = int(n * 0.8), n // 10
started = time.perf_counter()
centres = rng.normal(0, 1, (classes, width)).astype(np.float32)
labels = np.arange(n_train) % classes
train = np.empty((n_train, width), np.float16)
for s in range(0, n_train, 8192):
    e = min(n_train, s + 8192)
    train[s:e] = centres[labels[s:e]] + rng.normal(0, 3, (e - s, width)).astype(np.float32)
flip = rng.random(n_train) < 0.02
labels = np.where(flip, rng.integers(0, classes, n_train), labels)


def logits(m):
    y = np.arange(m) % classes
    z = rng.normal(0, 1, (m, classes)).astype(np.float32)
    z[np.arange(m), y] += 4
    return z, y


print("made", time.perf_counter() - started, flush=True)
t0 = time.perf_counter()
x = out_of_sample.reduce(train, out_of_sample.dimensions(classes))
del train
scored = out_of_sample.out_of_sample(x, labels, classes, reduced=True)
t1 = time.perf_counter()
trust = label_self_test.self_test(x, labels, classes, reduced=True)
t2 = time.perf_counter()
parts = {"train": (scored.probabilities, labels, [f"t{i}" for i in range(n_train)])}
for name in ("val", "test"):
    z, y = logits(n_val)
    parts[name] = (softmax(z, 1.0), y, [f"{name}{i}" for i in range(n_val)])
result = label_issues.review(parts, [f"c{i}" for i in range(classes)], "synthetic", scored=scored, trust=trust)
print(
    f"n={n} seconds={time.perf_counter() - t0:.1f} (cross-validation {t1 - t0:.1f}, self-test {t2 - t1:.1f}) "
    f"flagged={result.flagged} estimated={result.estimated_errors} supported={result.supported} "
    f"accuracy={scored.accuracy:.3f} self-test={trust} "
    f"peak_rss_gb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9:.2f}",
    flush=True,
)
