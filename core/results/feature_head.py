"""A softmax head fitted on stored pooled features in seconds: what label-next, its simulation and the fix
estimate retrain instead of the network.

It stands for the run's own head (pooled features -> softmax) trained on frozen features: a multinomial logistic
regression on the features standardised and reduced to principal directions (`out_of_sample.reduce`), its
regularisation fixed (C on unit-scale features) so that a retrain after each labelled batch costs the same.
What it cannot see: a fine-tuned backbone (the features are the run's, frozen) and augmentation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

HEAD_C = 0.1  # regularisation on unit-scale reduced features: fairly strong, as weak features overfit easily
HEAD_ITERATIONS = 200


def one_blas_thread():
    """BLAS on one thread while the head fits: its matrices are small (rows x a few hundred directions), and BLAS's
    threads spinning against other busy processes made one fit of 1,500 rows take 16 s instead of 0.25 s (measured
    on these 2 cores with other work running)."""
    from threadpoolctl import threadpool_limits  # heavy: sklearn's dependency

    return threadpool_limits(1, user_api="blas")


@dataclass
class FeatureHead:
    """A fitted head: class probabilities for rows of the same (reduced) features."""

    model: object | None  # sklearn LogisticRegression, or None when one class was all it saw
    num_classes: int
    only_class: int = -1

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), self.num_classes), dtype=np.float64)
        if self.model is None:
            out[:, self.only_class] = 1.0
            return out
        with one_blas_thread():
            out[:, self.model.classes_] = self.model.predict_proba(np.asarray(x, dtype=np.float32))
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.probabilities(x).argmax(axis=1)


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    C: float = HEAD_C,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
    class_weight: str | None = "balanced",
    warm: FeatureHead | None = None,
) -> FeatureHead:
    """Fit the head on rows `x` (already reduced) labelled `y` (0..num_classes-1).

    Classes are weighted to balance, as training does for imbalanced classes; `sample_weight` multiplies that.
    `warm`: a head fitted on (most of) the same rows, whose weights this fit starts from (a retrain after a batch
    of labels converges in a few steps); used only when it saw the same classes.
    """
    from sklearn.exceptions import ConvergenceWarning  # heavy: sklearn
    from sklearn.linear_model import LogisticRegression  # heavy: sklearn

    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("fit_head needs at least one labelled row")
    present = np.unique(y)
    if len(present) < 2:
        return FeatureHead(None, num_classes, int(present[0]))
    model = LogisticRegression(C=C, max_iter=HEAD_ITERATIONS, random_state=seed, class_weight=class_weight)
    previous = warm.model if warm is not None else None
    if previous is not None and np.array_equal(previous.classes_, present):
        model.set_params(warm_start=True)
        model.coef_, model.intercept_ = previous.coef_.copy(), previous.intercept_.copy()
    with warnings.catch_warnings(), one_blas_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)  # bounded iterations on purpose: seconds per retrain
        model.fit(np.asarray(x, dtype=np.float32), y, sample_weight=sample_weight)
    return FeatureHead(model, num_classes)


def accuracy_and_macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> tuple[float, float]:
    """Accuracy and macro F1 over the classes present in `labels` (as the evaluation reports them)."""
    from sklearn.metrics import f1_score  # heavy: sklearn

    labels = np.asarray(labels)
    if not len(labels):
        return float("nan"), float("nan")
    present = np.unique(labels)
    f1 = f1_score(labels, predictions, labels=present, average="macro", zero_division=0)
    return float(np.mean(predictions == labels)), float(f1)
