"""A classifier's class probabilities and metrics on labelled sequences (texts or id arrays), in
evaluation mode, on one strand or both averaged: what fine-tuning validates and tests with, and
what `mxdna evaluate` reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mxdna_cli import sequence as vocab
from mxdna_cli.errors import UsageError
from mxdna_cli.model.mxdna import MxDNAForSequenceClassification
from mxdna_cli.runtime import class_probabilities
from mxdna_cli.train.metrics import classification_metrics

EVAL_STRANDS = ("forward", "both")



def _ids(sequence) -> np.ndarray:
    if isinstance(sequence, np.ndarray):
        return sequence
    return vocab.encode(sequence)


def _rc_ids(sequence) -> np.ndarray:
    return vocab.reverse_complement_ids(_ids(sequence)).copy()


def predict_probabilities(
    model: MxDNAForSequenceClassification,
    sequences: Sequence,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    strand: str = "forward",
) -> np.ndarray:
    """Class probabilities (N, C) float32 for DNA texts or id arrays, in input order (eval mode).

    strand "both": the mean of the probabilities of each sequence and of its reverse complement,
    each strand batched alike, so that scoring the reverse-complemented set gives the same numbers."""
    if strand not in EVAL_STRANDS:
        raise UsageError(f"strand '{strand}': choose from {', '.join(EVAL_STRANDS)}")
    if strand == "both":
        forward = predict_probabilities(model, sequences, batch_size=batch_size, device=device,
                                        autocast_dtype=autocast_dtype)
        reverse = predict_probabilities(model, [_rc_ids(s) for s in sequences], batch_size=batch_size,
                                        device=device, autocast_dtype=autocast_dtype)
        return ((forward + reverse) * np.float32(0.5)).astype(np.float32)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for start in range(0, len(sequences), batch_size):
            batch = [_ids(s) for s in sequences[start : start + batch_size]]
            rows.append(class_probabilities(model, batch, device, autocast_dtype))
    finally:
        model.train(was_training)
    if not rows:
        return np.zeros((0, model.num_labels), dtype=np.float32)
    return np.concatenate(rows).astype(np.float32)


def evaluate_classifier(
    model: MxDNAForSequenceClassification,
    sequences: Sequence,
    labels: Sequence[int],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    strand: str = "forward",
) -> dict:
    """accuracy, f1, mcc, auroc, auprc, n, confusion, loss (mean cross-entropy) and probabilities (N, C);
    strand "both" scores the mean of the two strands' probabilities (see `predict_probabilities`)."""
    probabilities = predict_probabilities(model, sequences, batch_size=batch_size, device=device,
                                          autocast_dtype=autocast_dtype, strand=strand)
    y = np.asarray(labels, dtype=np.int64)
    result = classification_metrics(y, probabilities)
    picked = probabilities[np.arange(len(y)), y].astype(np.float64)
    result["loss"] = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
    result["probabilities"] = probabilities
    return result
