"""Classes and splits of a labelled set: the class order, a seeded stratified train/valid/test
split, class counts per split and the check that every class is in every split."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mxdna_cli.errors import DataError, UsageError

SPLITS = ("train", "valid", "test")
MIN_PER_CLASS = 2


def order_labels(labels: Sequence[str], explicit: Sequence[str] | None = None) -> list[str]:
    """The class order: `explicit`, else numeric when all labels are integers, else alphabetical."""
    present = set(labels)
    if explicit:
        explicit = [str(label) for label in explicit]
        if len(set(explicit)) != len(explicit):
            raise UsageError(f"labels {explicit}: a label is repeated")
        unknown = sorted(present - set(explicit))
        if unknown:
            raise DataError(f"label '{unknown[0]}' in the data is not among the given labels ({', '.join(explicit)})")
        ordered = list(explicit)
    else:
        try:
            ordered = sorted(present, key=lambda text: (int(text), text))
        except ValueError:
            ordered = sorted(present)
    if len(present) < 2:
        only = next(iter(present)) if present else "none"
        raise DataError(f"only one class in the data ('{only}'): a classifier needs at least two labels")
    missing = [label for label in ordered if label not in present]
    if missing:
        raise DataError(f"class '{missing[0]}' has no examples in the data")
    return ordered


def _carve(indices: np.ndarray, y: np.ndarray, fraction: float, rng: np.random.Generator):
    """Split `indices` into (rest, carved) with round(n_c * fraction) of each class carved."""
    rest, carved = [], []
    for label in np.unique(y[indices]):
        members = indices[y[indices] == label]
        members = members[rng.permutation(len(members))]
        take = math.floor(len(members) * fraction + 0.5)
        carved.append(members[:take])
        rest.append(members[take:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(carved))


def stratified_split(y: Sequence[int], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded split of example indices into train/valid/test, stratified by class.

    Each class c of n_c examples gives round(n_c * valid) to validation and round(n_c * test) to
    test; the rest trains. Returns sorted index arrays.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise UsageError(f"split {fractions}: need three fractions (train, valid, test) that sum to 1, train > 0")
    y = np.asarray(y)
    rng = np.random.default_rng([seed, 2])
    all_indices = np.arange(len(y))
    rest, test = _carve(all_indices, y, fractions[2], rng)
    # valid is a share of what is left, so that the three shares match `fractions`
    remaining = fractions[0] + fractions[1]
    train, valid = _carve(rest, y, fractions[1] / remaining if remaining else 0.0, rng)
    return {"train": train, "valid": valid, "test": test}


def class_counts(y: np.ndarray, labels: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(labels))
    return {label: int(count) for label, count in zip(labels, counts)}


def check_split_counts(counts: dict[str, dict[str, int]]) -> None:
    """DataError unless every class has at least MIN_PER_CLASS examples in every split."""
    for split, per_class in counts.items():
        for label, count in per_class.items():
            if count < MIN_PER_CLASS:
                total = sum(c[label] for c in counts.values())
                raise DataError(
                    f"class '{label}' has {count} example(s) in the {split} split ({total} in all); every class needs "
                    f"at least {MIN_PER_CLASS} in each of train, valid and test: give more examples of it, "
                    "larger split fractions, or explicit split files"
                )



def class_weights_for(y: np.ndarray, num_labels: int, how: str) -> np.ndarray | None:
    """'balanced' loss weights n / (C n_c) against class imbalance, or None for 'none'."""
    if how == "none":
        return None
    counts = np.bincount(y, minlength=num_labels).astype(np.float64)
    return len(y) / (num_labels * counts)
