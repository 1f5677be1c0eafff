"""Promoter-classification baselines on the same splits as `mxdna finetune`: 6-mer LR and a small CNN.

* `KmerLogisticRegression`: counts of the 4^k overlapping k-mers (k = 6; a k-mer holding N or an
  IUPAC code is skipped; the strand is not merged, because promoters are oriented), scaled to unit
  variance per feature (no centring, so the matrix stays sparse), L2 logistic regression
  (scikit-learn, lbfgs). The inverse regularisation C is chosen on the validation split by MCC
  (ties: higher AUROC), from `C_GRID`.
* `PromoterCNN`: one-hot input (N = all zeros), three convolutions (kernels 9, 7, 5; 64 channels,
  ReLU, max-pool 2 after the first two), global max pool over the valid positions, dropout, linear.
  Trained like the MxDNA classifier: AdamW, class-weighted cross-entropy, one validation per
  epoch, early stopping on validation MCC (patience), best epoch restored. Seeded, deterministic on
  the CPU.

Both report `metrics.classification_metrics` on the test split.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mxdna_cli.errors import DataError
from mxdna_cli.train.metrics import classification_metrics

KMER = 6
C_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 0.1, 1.0)

# text byte -> base code A=0 C=1 G=2 T=3, anything else 255
_CODE = np.full(256, 255, dtype=np.uint8)
for _i, _letters in enumerate(("Aa", "Cc", "Gg", "Tt")):
    for _ch in _letters:
        _CODE[ord(_ch)] = _i


def base_codes(sequence: str) -> np.ndarray:
    """A/C/G/T (either case) -> 0/1/2/3; every other letter -> 255."""
    return _CODE[np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)]


def kmer_codes(sequence: str, k: int = KMER) -> np.ndarray:
    """Codes sum_j b_j 4^(k-1-j) of the overlapping k-mers without N, in order."""
    codes = base_codes(sequence).astype(np.int64)
    if len(codes) < k:
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)
    valid = (windows < 4).all(axis=1)
    weights = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    return windows[valid] @ weights


def kmer_count_matrix(sequences: Sequence[str], k: int = KMER):
    """Sparse (N, 4^k) float32 matrix of k-mer counts (scipy CSR)."""
    from scipy import sparse

    indptr, indices, values = [0], [], []
    for sequence in sequences:
        uniques, counts = np.unique(kmer_codes(sequence, k), return_counts=True)
        indices.append(uniques)
        values.append(counts)
        indptr.append(indptr[-1] + len(uniques))
    indices = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    values = np.concatenate(values).astype(np.float32) if values else np.zeros(0, np.float32)
    return sparse.csr_matrix((values, indices, np.asarray(indptr)), shape=(len(sequences), 4**k))


def _selection_key(metrics: dict) -> tuple:
    auroc = metrics["auroc"]
    return (metrics["mcc"], -math.inf if auroc is None or math.isnan(auroc) else auroc)


class KmerLogisticRegression:
    """k-mer count logistic regression; `fit` picks C on the validation split by MCC."""

    def __init__(self, k: int = KMER, c_grid: Sequence[float] = C_GRID, seed: int = 0, max_iter: int = 2000):
        self.k, self.c_grid, self.seed, self.max_iter = k, tuple(c_grid), seed, max_iter
        self.model = None
        self.scaler = None
        self.chosen_c = None
        self.validation = {}

    def _features(self, sequences):
        return self.scaler.transform(kmer_count_matrix(sequences, self.k))

    def fit(self, train_sequences, train_y, valid_sequences, valid_y, class_weight="balanced"):
        from mxdna_cli.extras import require

        require("sklearn", "the k-mer logistic-regression baseline")
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        counts = kmer_count_matrix(train_sequences, self.k)
        self.scaler = StandardScaler(with_mean=False).fit(counts)
        x_train = self.scaler.transform(counts)
        x_valid = self._features(valid_sequences)
        best = None
        for c in self.c_grid:
            model = LogisticRegression(C=c, max_iter=self.max_iter, class_weight=class_weight,
                                       random_state=self.seed)
            model.fit(x_train, np.asarray(train_y))
            scores = classification_metrics(valid_y, self._full_proba(model, x_valid))
            self.validation[c] = scores
            if best is None or _selection_key(scores) > _selection_key(best[1]):
                best = (c, scores, model)
        self.chosen_c, _, self.model = best
        return self

    def _full_proba(self, model, x) -> np.ndarray:
        """Probabilities over all classes 0..C-1 (columns in class-index order)."""
        proba = model.predict_proba(x)
        classes = list(model.classes_)
        full = np.zeros((x.shape[0], max(classes) + 1), dtype=np.float64)
        full[:, classes] = proba
        return full

    def predict_proba(self, sequences) -> np.ndarray:
        return self._full_proba(self.model, self._features(sequences))


# ---------------------------------------------------------------------------------------------
# CNN


def one_hot(sequences: Sequence[str], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 4, L) float one-hot (A, C, G, T; N and padding all zero) and (B, L) bool mask of real positions."""
    length = length or max(len(s) for s in sequences)
    codes = np.full((len(sequences), length), 255, dtype=np.uint8)
    mask = np.zeros((len(sequences), length), dtype=bool)
    for row, sequence in enumerate(sequences):
        codes[row, : len(sequence)] = base_codes(sequence)
        mask[row, : len(sequence)] = True
    hot = np.zeros((len(sequences), 5, length), dtype=np.float32)
    np.put_along_axis(hot, np.minimum(codes, 4)[:, None, :].astype(np.int64), 1.0, axis=1)
    return torch.from_numpy(hot[:, :4]), torch.from_numpy(mask)


class PromoterCNN(nn.Module):
    def __init__(self, num_labels: int = 2, channels: int = 64, kernels: Sequence[int] = (9, 7, 5), dropout: float = 0.2):
        super().__init__()
        self.convs = nn.ModuleList()
        width = 4
        for kernel in kernels:
            self.convs.append(nn.Conv1d(width, channels, kernel, padding=kernel // 2))
            width = channels
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(channels, num_labels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask[:, None, :].float()
        for index, conv in enumerate(self.convs):
            x = F.relu(conv(x)) * mask
            if index < len(self.convs) - 1:
                x = F.max_pool1d(x, 2, ceil_mode=True)
                mask = F.max_pool1d(mask, 2, ceil_mode=True)
        x = x.masked_fill(mask == 0, -math.inf).amax(dim=2)
        return self.out(self.dropout(x))


@dataclass
class CNNSettings:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 3
    channels: int = 64
    dropout: float = 0.2
    seed: int = 0
    class_weighting: str = "balanced"


@torch.no_grad()
def cnn_probabilities(model: PromoterCNN, sequences: Sequence[str], batch_size: int = 256) -> np.ndarray:
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, len(sequences), batch_size):
        x, mask = one_hot(sequences[start : start + batch_size])
        rows.append(torch.softmax(model(x, mask), dim=-1).numpy())
    model.train(was_training)
    return np.concatenate(rows).astype(np.float64)


def train_cnn(train_sequences, train_y, valid_sequences, valid_y, num_labels: int = 2,
              settings: CNNSettings | None = None, progress=None) -> tuple[PromoterCNN, dict]:
    """Train with early stopping on validation MCC; returns the best model and a training summary."""
    settings = settings or CNNSettings()
    torch.manual_seed(settings.seed)
    model = PromoterCNN(num_labels, settings.channels, dropout=settings.dropout)
    train_y = np.asarray(train_y, dtype=np.int64)
    weights = None
    if settings.class_weighting == "balanced":
        counts = np.bincount(train_y, minlength=num_labels).astype(np.float64)
        weights = torch.tensor(len(train_y) / (num_labels * np.maximum(counts, 1)), dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng([settings.seed, 3])
    x_all, mask_all = one_hot(list(train_sequences))
    best = {"mcc": -math.inf, "epoch": 0, "state": None, "metrics": None}
    since_best, epoch = 0, 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(len(train_y)))
        for start in range(0, len(order), settings.batch_size):
            chosen = order[start : start + settings.batch_size]
            logits = model(x_all[chosen], mask_all[chosen])
            loss = F.cross_entropy(logits, torch.from_numpy(train_y[chosen.numpy()]), weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scores = classification_metrics(valid_y, cnn_probabilities(model, list(valid_sequences)))
        if progress:
            progress(epoch, scores)
        if scores["mcc"] > best["mcc"]:
            best = {"mcc": scores["mcc"], "epoch": epoch, "metrics": scores,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            since_best = 0
        else:
            since_best += 1
            if since_best >= settings.patience:
                break
    model.load_state_dict(best["state"])
    model.eval()
    return model, {"best_epoch": best["epoch"], "epochs": epoch, "validation": best["metrics"],
                   "stopped_early": epoch < settings.epochs}


# ---------------------------------------------------------------------------------------------
# Datasets and the whole comparison


@dataclass
class SplitData:
    labels: list[str]
    sequences: dict[str, list[str]]
    y: dict[str, np.ndarray]


def load_split_tables(folder: str | Path, labels: Sequence[str] | None = None) -> SplitData:
    """A dataset folder of train.tsv / valid.tsv / test.tsv (`sequence`, `label`), read as finetune does."""
    from mxdna_cli.io.labeled import read_table
    from mxdna_cli.train.splits import SPLITS, order_labels

    folder = Path(folder)
    tables = {}
    for split in SPLITS:
        path = folder / f"{split}.tsv"
        if not path.is_file():
            raise DataError(f"{folder}: missing {split}.tsv")
        tables[split] = read_table(str(path))
    ordered = order_labels([label for table in tables.values() for label in table.labels], labels)
    index = {label: i for i, label in enumerate(ordered)}
    return SplitData(
        labels=ordered,
        sequences={split: table.sequences for split, table in tables.items()},
        y={split: np.array([index[label] for label in table.labels], dtype=np.int64) for split, table in tables.items()},
    )


def run_promoter_baselines(data: SplitData, *, seed: int = 0, cnn: CNNSettings | None = None,
                           models: Sequence[str] = ("kmer_lr", "cnn"), progress=None) -> dict[str, dict]:
    """Test metrics (plus seconds, the chosen hyperparameters, the validation MCC and the test
    probabilities themselves, `test_probabilities`) of each baseline."""
    results = {}
    train, valid, test = (data.sequences[s] for s in ("train", "valid", "test"))
    if "kmer_lr" in models:
        started = time.monotonic()
        lr = KmerLogisticRegression(seed=seed).fit(train, data.y["train"], valid, data.y["valid"])
        probabilities = lr.predict_proba(test)
        results[f"{KMER}mer_lr"] = {**classification_metrics(data.y["test"], probabilities),
                                    "seconds": time.monotonic() - started, "C": lr.chosen_c,
                                    "validation_mcc": lr.validation[lr.chosen_c]["mcc"],
                                    "test_probabilities": probabilities}
    if "cnn" in models:
        started = time.monotonic()
        settings = cnn or CNNSettings(seed=seed)
        model, summary = train_cnn(train, data.y["train"], valid, data.y["valid"], len(data.labels), settings, progress)
        probabilities = cnn_probabilities(model, test)
        results["cnn"] = {**classification_metrics(data.y["test"], probabilities),
                          "seconds": time.monotonic() - started, "epochs": summary["epochs"],
                          "best_epoch": summary["best_epoch"], "validation_mcc": summary["validation"]["mcc"],
                          "test_probabilities": probabilities}
    return results
