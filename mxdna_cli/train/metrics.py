"""Classification metrics in numpy: accuracy, F1, MCC, AUROC, AUPRC (average precision).

Conventions (the same as scikit-learn's, which the tests cross-check):

* Labels are class indices 0..C-1. For two classes, class 1 is the positive class and a score is
  the probability of class 1; F1, AUROC and AUPRC are those of class 1.
* With more than two classes, F1, AUROC and AUPRC are macro averages of one-vs-rest values, and
  MCC is the multi-class generalisation (Gorodkin 2004), which equals the binary formula for C = 2.
* MCC is 0.0 when its denominator is 0 (all predictions, or all labels, in one class).
  F1 is 0.0 when a class has neither true nor predicted members.
* AUROC is the probability that a random positive scores above a random negative, ties counted as
  one half (the trapezoidal ROC area through tied groups). It is undefined when only one class is
  present in `y_true`: `roc_auc` then returns NaN (not an exception, so that a report over many
  subsets still prints), and `classification_metrics` keeps that NaN.
* AUPRC is average precision: sum over distinct score thresholds (tied scores form one step) of
  (R_n - R_{n-1}) * P_n, a step function with no interpolation. It is NaN when `y_true` has no
  positive, and 1.0 when every example is positive.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("accuracy", "f1", "mcc", "auroc", "auprc")


def _as_labels(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.bool_):
            return array.astype(np.int64)
        rounded = np.rint(array.astype(float))
        if not np.array_equal(rounded, array.astype(float)):
            raise ValueError(f"{name} must hold integer class indices")
        array = rounded
    return array.astype(np.int64)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values, y_pred {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("no examples to score")
    return y_true, y_pred


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """counts[i, j] = number of examples of true class i predicted as class j."""
    y_true, y_pred = _pair(y_true, y_pred)
    if num_classes is None:
        num_classes = int(max(y_true.max(), y_pred.max())) + 1
    if y_true.min() < 0 or y_pred.min() < 0 or max(y_true.max(), y_pred.max()) >= num_classes:
        raise ValueError(f"class indices must lie in 0..{num_classes - 1}")
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def f1_score(y_true, y_pred, *, positive: int | None = 1, num_classes: int | None = None) -> float:
    """F1 of class `positive` (binary), or the macro average over classes when positive is None."""
    counts = confusion_matrix(y_true, y_pred, num_classes)
    true_pos = np.diag(counts).astype(float)
    predicted = counts.sum(axis=0).astype(float)
    actual = counts.sum(axis=1).astype(float)
    denominator = predicted + actual
    per_class = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos), where=denominator > 0)
    if positive is None:
        return float(per_class.mean())
    if positive >= len(per_class):
        return 0.0
    return float(per_class[positive])


def matthews_corrcoef(y_true, y_pred, *, num_classes: int | None = None) -> float:
    """Matthews correlation coefficient (multi-class form); 0.0 when undefined."""
    counts = confusion_matrix(y_true, y_pred, num_classes).astype(float)
    total = counts.sum()
    correct = np.trace(counts)
    predicted = counts.sum(axis=0)
    actual = counts.sum(axis=1)
    covariance = correct * total - predicted @ actual
    denominator = np.sqrt(total**2 - predicted @ predicted) * np.sqrt(total**2 - actual @ actual)
    if denominator == 0:
        return 0.0
    return float(covariance / denominator)


def _binary_scores(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y_true = _as_labels(y_true, "y_true")
    scores = np.asarray(scores, dtype=float)
    if scores.shape != y_true.shape:
        raise ValueError(f"y_true has {y_true.size} values, scores {scores.size}")
    if y_true.size == 0:
        raise ValueError("no examples to score")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("binary metrics need labels 0 and 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return y_true, scores


def _threshold_counts(y_true: np.ndarray, scores: np.ndarray):
    """Cumulative (true positives, false positives) at each distinct score, highest score first."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_true = scores[order], y_true[order]
    # the last index of each group of tied scores
    ends = np.flatnonzero(np.r_[np.diff(sorted_scores) != 0, True])
    true_pos = np.cumsum(sorted_true)[ends].astype(float)
    false_pos = (ends + 1) - true_pos
    return true_pos, false_pos


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve (ties count one half); NaN when only one class is present."""
    y_true, scores = _binary_scores(y_true, scores)
    positives = int(y_true.sum())
    negatives = y_true.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    true_pos, false_pos = _threshold_counts(y_true, scores)
    tpr = np.r_[0.0, true_pos / positives]
    fpr = np.r_[0.0, false_pos / negatives]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def average_precision(y_true, scores) -> float:
    """Average precision (the AUPRC used here); NaN when there is no positive."""
    y_true, scores = _binary_scores(y_true, scores)
    positives = int(y_true.sum())
    if positives == 0:
        return float("nan")
    true_pos, false_pos = _threshold_counts(y_true, scores)
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def classification_metrics(y_true, probabilities) -> dict:
    """All metrics from class probabilities (N, C): predictions are the argmax.

    Returns accuracy, f1, mcc, auroc, auprc (floats; NaN where undefined), n, and the confusion
    matrix as nested lists.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (N, C) with C >= 2, got {probabilities.shape}")
    y_true = _as_labels(y_true, "y_true")
    num_classes = probabilities.shape[1]
    if y_true.size != probabilities.shape[0]:
        raise ValueError(f"y_true has {y_true.size} values, probabilities {probabilities.shape[0]} rows")
    y_pred = probabilities.argmax(axis=1)
    if num_classes == 2:
        f1 = f1_score(y_true, y_pred, positive=1, num_classes=2)
        auroc = roc_auc(y_true, probabilities[:, 1])
        auprc = average_precision(y_true, probabilities[:, 1])
    else:
        f1 = f1_score(y_true, y_pred, positive=None, num_classes=num_classes)
        aurocs = [roc_auc(y_true == c, probabilities[:, c]) for c in range(num_classes)]
        auprcs = [average_precision(y_true == c, probabilities[:, c]) for c in range(num_classes)]
        auroc = float(np.mean(aurocs))  # NaN if any class is absent: macro average is undefined
        auprc = float(np.mean(auprcs))
    return {
        "accuracy": accuracy(y_true, y_pred),
        "f1": f1,
        "mcc": matthews_corrcoef(y_true, y_pred, num_classes=num_classes),
        "auroc": auroc,
        "auprc": auprc,
        "n": int(y_true.size),
        "confusion": confusion_matrix(y_true, y_pred, num_classes).tolist(),
    }


def paired_bootstrap(y_true, probabilities_a, probabilities_b, *, metrics=("mcc", "auroc"), resamples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> dict:
    """How sure a difference between two classifiers on the same test set is: the metric of A minus
    that of B on the full set, and over `resamples` bootstrap resamples of the examples (the same
    resample for both, so that what the two share cancels) its percentile interval at `level` and
    the share of resamples where A scores strictly higher.

    Returns {metric: {"difference", "low", "high", "a_better"}}. A resample that leaves one class
    out (AUROC undefined) is drawn again."""
    y_true = _as_labels(y_true, "y_true")
    a, b = np.asarray(probabilities_a, dtype=float), np.asarray(probabilities_b, dtype=float)
    if a.shape != b.shape or a.shape[0] != y_true.size:
        raise ValueError(f"probabilities {a.shape} and {b.shape} do not both match {y_true.size} labels")
    if len(np.unique(y_true)) < 2:
        raise ValueError("paired_bootstrap needs both classes in y_true")

    def difference(index: np.ndarray) -> dict:
        first, second = classification_metrics(y_true[index], a[index]), classification_metrics(y_true[index], b[index])
        return {m: first[m] - second[m] for m in metrics}

    rng = np.random.default_rng(seed)
    draws = {m: [] for m in metrics}
    while len(draws[metrics[0]]) < resamples:
        index = rng.integers(0, y_true.size, y_true.size)
        if len(np.unique(y_true[index])) < 2:
            continue
        for metric, value in difference(index).items():
            draws[metric].append(value)
    full = difference(np.arange(y_true.size))
    tail = (1 - level) / 2 * 100
    result = {}
    for metric in metrics:
        values = np.asarray(draws[metric])
        low, high = np.percentile(values, [tail, 100 - tail])
        result[metric] = {"difference": float(full[metric]), "low": float(low), "high": float(high),
                          "a_better": float(np.mean(values > 0))}
    return result
