"""Metric functions: hand-computed cases, ties, one-class edges, and agreement with scikit-learn."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mxdna_cli.train.metrics import (
    accuracy,
    average_precision,
    classification_metrics,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    paired_bootstrap,
    roc_auc,
)

# TP = 3 (0, 2, 7), FN = 1 (1), FP = 1 (5), TN = 3 (3, 4, 6)
Y_TRUE = [1, 1, 1, 0, 0, 0, 0, 1]
Y_PRED = [1, 0, 1, 0, 0, 1, 0, 1]


def test_hand_computed_binary_counts():
    assert confusion_matrix(Y_TRUE, Y_PRED).tolist() == [[3, 1], [1, 3]]
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(6 / 8)
    assert f1_score(Y_TRUE, Y_PRED) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 - 1) / sqrt(4^4)
    assert matthews_corrcoef(Y_TRUE, Y_PRED) == pytest.approx(0.5)


def test_mcc_of_an_asymmetric_case():
    # TP 2, FN 2, FP 0, TN 4: (8 - 0) / sqrt(2 * 4 * 6 * 4)
    y_true = [1, 1, 1, 1, 0, 0, 0, 0]
    y_pred = [1, 1, 0, 0, 0, 0, 0, 0]
    assert matthews_corrcoef(y_true, y_pred) == pytest.approx(8 / math.sqrt(2 * 4 * 6 * 4))
    assert f1_score(y_true, y_pred) == pytest.approx(4 / 6)
    assert matthews_corrcoef(y_true, y_true) == pytest.approx(1.0)
    assert matthews_corrcoef(y_true, [1 - v for v in y_true]) == pytest.approx(-1.0)


def test_mcc_is_zero_when_undefined():
    assert matthews_corrcoef([1, 0, 1, 0], [1, 1, 1, 1]) == 0.0
    assert matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0


def test_f1_is_zero_when_nothing_is_predicted_positive():
    assert f1_score([1, 0, 1], [0, 0, 0]) == 0.0


def test_auroc_counts_ties_as_one_half():
    # pairs (pos, neg): 0.9>0.4, 0.9>0.1, 0.4=0.4 (1/2), 0.4>0.1  ->  3.5 / 4
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(1.0)
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.0)
    # 3 positives, 2 negatives; pairs won: 0.8 beats both, 0.6 ties one (0.6) beats one (0.3), 0.3 ties one: 2+1.5+0.5
    assert roc_auc([1, 1, 1, 0, 0], [0.8, 0.6, 0.3, 0.6, 0.3]) == pytest.approx(4 / 6)


def test_average_precision_by_hand():
    # thresholds 0.9: P=1 R=1/2; 0.4 (tied pair): P=2/3 R=1; 0.1 adds no recall
    assert average_precision([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # 0.8: P=1 R=1/2; 0.7: P=1/2 R=1/2; 0.2: P=2/3 R=1
    assert average_precision([1, 0, 1], [0.8, 0.7, 0.2]) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_one_class_edges_are_nan_or_defined_as_documented():
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert math.isnan(roc_auc([0, 0], [0.1, 0.5]))
    assert math.isnan(average_precision([0, 0, 0], [0.1, 0.5, 0.9]))
    assert average_precision([1, 1], [0.1, 0.5]) == pytest.approx(1.0)
    result = classification_metrics([1, 1], [[0.2, 0.8], [0.6, 0.4]])
    assert math.isnan(result["auroc"]) and result["accuracy"] == pytest.approx(0.5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        roc_auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0.3, 0.7])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_scikit_learn_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    scores = np.round(np.clip(rng.normal(0.5 + 0.2 * (y - 0.5), 0.25), 0, 1), 1)  # 11 levels: many ties
    prediction = (scores > 0.5).astype(int)
    assert roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)
    assert average_precision(y, scores) == pytest.approx(skm.average_precision_score(y, scores), abs=1e-12)
    assert matthews_corrcoef(y, prediction) == pytest.approx(skm.matthews_corrcoef(y, prediction), abs=1e-12)
    assert f1_score(y, prediction) == pytest.approx(skm.f1_score(y, prediction), abs=1e-12)


def test_multiclass_agrees_with_scikit_learn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + 1.5 * np.eye(3)[y]
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    prediction = probabilities.argmax(1)
    result = classification_metrics(y, probabilities)
    assert result["mcc"] == pytest.approx(skm.matthews_corrcoef(y, prediction), abs=1e-12)
    assert result["f1"] == pytest.approx(skm.f1_score(y, prediction, average="macro"), abs=1e-12)
    assert result["auroc"] == pytest.approx(skm.roc_auc_score(y, probabilities, multi_class="ovr"), abs=1e-12)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, prediction))


# ------------------------------------------------------------------ paired bootstrap


def _two_class(p):
    p = np.asarray(p, dtype=float)
    return np.stack([1 - p, p], axis=1)


def test_paired_bootstrap_of_a_classifier_against_itself_is_exactly_zero():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    p = _two_class(rng.random(120))
    result = paired_bootstrap(y, p, p, resamples=200)
    for metric in ("mcc", "auroc"):
        assert result[metric] == {"difference": 0.0, "low": 0.0, "high": 0.0, "a_better": 0.0}


def test_paired_bootstrap_separates_a_perfect_classifier_from_a_coin():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    perfect, coin = _two_class(0.2 + 0.6 * y), _two_class(rng.random(200))
    result = paired_bootstrap(y, perfect, coin, resamples=300)
    full_mcc = 1.0 - matthews_corrcoef(y, coin[:, 1] > 0.5)
    assert result["mcc"]["difference"] == pytest.approx(full_mcc)
    assert result["mcc"]["low"] > 0.5 and result["auroc"]["low"] > 0.3
    assert result["mcc"]["a_better"] == 1.0 and result["auroc"]["a_better"] == 1.0


def test_paired_bootstrap_is_antisymmetric_and_its_interval_holds_a_close_call():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    signal = y + rng.normal(0, 0.8, 300)
    a = _two_class(1 / (1 + np.exp(-(signal - 0.5) * 3)))
    b = _two_class(1 / (1 + np.exp(-(signal + rng.normal(0, 0.3, 300) - 0.5) * 3)))  # a little noisier
    ab, ba = paired_bootstrap(y, a, b, resamples=400, seed=7), paired_bootstrap(y, b, a, resamples=400, seed=7)
    for metric in ("mcc", "auroc"):
        assert ab[metric]["difference"] == pytest.approx(-ba[metric]["difference"])
        assert ab[metric]["low"] == pytest.approx(-ba[metric]["high"])
        assert ab[metric]["low"] < ab[metric]["difference"] < ab[metric]["high"]
        assert 0 < ab[metric]["a_better"] < 1  # a close call: neither wins every resample


def test_paired_bootstrap_refuses_mismatched_inputs():
    y = [0, 1, 0, 1]
    with pytest.raises(ValueError, match="do not both match"):
        paired_bootstrap(y, _two_class([0.1, 0.9, 0.2, 0.8]), _two_class([0.1, 0.9, 0.2]))
    with pytest.raises(ValueError, match="both classes"):
        paired_bootstrap([1, 1, 1], _two_class([0.1, 0.9, 0.2]), _two_class([0.1, 0.9, 0.2]))
