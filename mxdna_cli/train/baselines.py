"""Count-based baselines for masked-nucleotide prediction: unigram and k-th order Markov chains.

A masked base x_t is predicted from BOTH flanks by exact Bayes under the chain:

    P(x_t = b | rest) ∝ P(b | x_{t-k..t-1}) · Π_{i=1..k} P(x_{t+i} | x_{t+i-k..t+i-1} with x_t = b)

(the factors of the joint probability that do not involve x_t cancel). The chain is fitted by
counting all (j+1)-mers, j = 0..k, of the training sequences on both strands, with add-α smoothing
(α = 0.5): P(b | ctx) = (n(ctx b) + α) / (n(ctx) + 4α).

Contexts are never allowed to cross an N (or any non-ACGT id) or the edge of a sequence/window:
the sequence is cut there, and near a cut the lower-order conditionals are used (a context of
length j < k uses the order-j table). This is exactly Bayes under the joint model
P(x_1..x_n) = Π_q P_{min(k, q-1)}(x_q | previous min(k, q-1) bases) of each N-free segment, so
every masked ACGT position gets a prediction and all models (and MxDNA) are scored on the same
positions. Order 0 is the unigram model.

Bases are coded A=0, T=1, C=2, G=3 (vocabulary id - 5), so the complement is ``code ^ 1``.
A (j+1)-mer y_0..y_j has code Σ_m y_m·4^(j-m): the predicted base is the lowest digit and
``code >> 2`` is the context.

For the masked-LM comparison, the baseline sees the true bases at the other masked positions
of the window (MxDNA sees [MASK] or a random base there), which slightly favours the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from mxdna_cli import sequence as vocab
from mxdna_cli.errors import DataError, UsageError

N_CODE = 255  # code of anything that is not A/C/G/T

_ID_TO_CODE = np.full(256, N_CODE, dtype=np.uint8)
_ID_TO_CODE[[vocab.A, vocab.T, vocab.C, vocab.G]] = [0, 1, 2, 3]

MAX_ORDER = 12  # 4^13 int64 counts = 537 MB: beyond this counting tables get too big


def ids_to_codes(ids) -> np.ndarray:
    """Vocabulary ids -> base codes 0..3 (A,T,C,G), N_CODE (255) for anything else."""
    ids = np.asarray(ids)
    if ids.dtype != np.uint8:
        ids = np.where((ids >= 0) & (ids < 256), ids, 0).astype(np.uint8)
    return _ID_TO_CODE[ids]


def _revcomp_perm(n_bases: int) -> np.ndarray:
    """perm[code] = code of the reverse complement of the n_bases-mer `code`."""
    codes = np.arange(4**n_bases, dtype=np.int64)
    out = np.zeros_like(codes)
    for m in range(n_bases):
        digit = (codes >> (2 * m)) & 3  # digit of weight 4^m
        out |= (digit ^ 1) << (2 * (n_bases - 1 - m))  # moves to weight 4^(n-1-m), complemented
    return out


def count_kmers(arrays: Iterable[np.ndarray], max_k: int, both_strands: bool = True,
                chunk: int = 1 << 22) -> list[np.ndarray]:
    """counts[j] (length 4^(j+1), int64) = number of (j+1)-mers, j = 0..max_k, in N-free stretches.

    `arrays` are vocabulary-id arrays (one per record). With both_strands, the reverse-complement
    strand is counted too (counts[j] + counts[j][revcomp]).
    """
    if not 0 <= max_k <= MAX_ORDER:
        raise UsageError(f"Markov order must be in 0..{MAX_ORDER}, got {max_k}")
    counts = [np.zeros(4 ** (j + 1), dtype=np.int64) for j in range(max_k + 1)]
    for seq in arrays:
        codes = ids_to_codes(seq)
        n = len(codes)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            s0 = max(0, s - max_k)  # overlap so that mers ending in [s, e) are complete
            x = codes[s0:e]
            valid = x != N_CODE
            idx = np.arange(len(x), dtype=np.int64)
            last_bad = np.maximum.accumulate(np.where(valid, -1, idx))
            run = idx - last_bad  # consecutive valid bases ending here (0 at an N)
            xv = np.where(valid, x, 0).astype(np.int64)
            code = xv.copy()
            for d in range(1, max_k + 1):
                code[d:] += xv[:-d] << (2 * d)
            off = s - s0
            code = code[off:]
            run = run[off:]
            for j in range(max_k + 1):
                nb = 4 ** (j + 1)
                cj = np.where(run >= j + 1, code & (nb - 1), nb)  # nb = "no complete mer" bin
                counts[j] += np.bincount(cj, minlength=nb + 1)[:nb]
    if both_strands:
        counts = [c + c[_revcomp_perm(j + 1)] for j, c in enumerate(counts)]
    return counts


@dataclass
class MarkovModel:
    """Markov chain of order k with conditional log-probability tables for every order 0..k.

    log_tables[j] has length 4^(j+1): log P(b | ctx) at index ctx*4 + b (ctx = code of j bases).
    """

    k: int
    counts: list[np.ndarray] = field(repr=False)
    pseudocount: float = 0.5
    log_tables: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self):
        if len(self.counts) < self.k + 1:
            raise UsageError(f"order {self.k} needs counts of orders 0..{self.k}")
        self.counts = list(self.counts[: self.k + 1])
        tables = []
        for c in self.counts:
            c2 = c.reshape(-1, 4).astype(np.float64) + self.pseudocount
            tables.append(np.log(c2 / c2.sum(axis=1, keepdims=True)).reshape(-1))
        self.log_tables = tables
        self._flat = np.concatenate(tables)
        self._offsets = np.cumsum([0] + [len(t) for t in tables])[:-1].astype(np.int64)

    def restrict(self, k: int) -> "MarkovModel":
        """The model of order k <= self.k (same counts)."""
        if not 0 <= k <= self.k:
            raise UsageError(f"cannot restrict a model of order {self.k} to order {k}")
        return MarkovModel(k=k, counts=self.counts[: k + 1], pseudocount=self.pseudocount)

    def conditional(self, context: Sequence[int], base: int) -> float:
        """P(base | context) with codes 0..3 (context of length <= k, oldest first). For tests."""
        j = len(context)
        code = 0
        for c in list(context) + [base]:
            code = code * 4 + int(c)
        return float(np.exp(self.log_tables[j][code]))


def fit_markov(train_arrays, k: int, pseudocount: float = 0.5, both_strands: bool = True) -> MarkovModel:
    """Fit a k-th order chain (and its orders 0..k-1) on vocabulary-id arrays or a `Genomes`."""
    if pseudocount <= 0:
        raise UsageError(f"pseudocount must be > 0, got {pseudocount}")
    arrays = _arrays(train_arrays)
    counts = count_kmers(arrays, k, both_strands=both_strands)
    if counts[0].sum() == 0:
        raise DataError("no A/C/G/T base in the training sequences: cannot fit a Markov model")
    return MarkovModel(k=k, counts=counts, pseudocount=pseudocount)


def fit_unigram(train_arrays, pseudocount: float = 0.5, both_strands: bool = True) -> MarkovModel:
    """Base-frequency model (order 0): predicts the same distribution everywhere."""
    return fit_markov(train_arrays, 0, pseudocount=pseudocount, both_strands=both_strands)


def _arrays(x) -> list[np.ndarray]:
    if hasattr(x, "arrays"):  # mxdna_cli.train.data.Genomes
        return list(x.arrays)
    if isinstance(x, np.ndarray):
        return [x] if x.ndim == 1 else list(x)
    return [np.asarray(getattr(a, "seq", a)) for a in x]


def log_posteriors(model: MarkovModel, codes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(M, 4) log P(x_t = b | both flanks) for b = A,T,C,G at `positions` of one code array.

    `codes`: base codes 0..3, N_CODE for anything else (a cut). Positions must hold a base.
    """
    k = model.k
    positions = np.asarray(positions, dtype=np.int64)
    m = len(positions)
    if m == 0:
        return np.zeros((0, 4))
    padded = np.concatenate([np.full(k, N_CODE, np.uint8), codes.astype(np.uint8), np.full(k, N_CODE, np.uint8)])
    nb = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1)[positions]  # centre at k
    valid = nb != N_CODE
    if not valid[:, k].all():
        raise UsageError("log_posteriors: a position holds N, not a base")
    left = np.cumprod(valid[:, :k][:, ::-1], axis=1).sum(axis=1)  # bases left of t (<= k)
    right = np.cumprod(valid[:, k + 1:], axis=1).sum(axis=1)  # bases right of t (<= k)
    x = np.where(valid, nb, 0).astype(np.int64)
    centre = x[:, k]
    logp = np.zeros((m, 4))
    flat, offsets = model._flat, model._offsets
    for i in range(k + 1):
        use = np.ones(m, bool) if i == 0 else right >= i
        if not use.any():
            continue
        order = np.minimum(k, left + i)  # context length of the factor predicting x_{t+i}
        end = k + i
        code = np.zeros(m, dtype=np.int64)
        for d in range(k + 1):
            code += np.where(d <= order, x[:, end - d] << (2 * d), 0)
        base_code = code - (centre << (2 * i))
        idx0 = offsets[order] + base_code
        for b in range(4):
            vals = flat[idx0 + (b << (2 * i))]
            logp[:, b] += np.where(use, vals, 0.0)
    logp -= logp.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    return logp


def _score(model: MarkovModel, code_arrays: list[np.ndarray], pos_arrays: list[np.ndarray]):
    """Concatenate the sequences (one N between them, a cut) and score all positions at once."""
    pieces, allpos, off = [], [], 0
    sep = np.array([N_CODE], np.uint8)
    for c, p in zip(code_arrays, pos_arrays):
        p = np.asarray(p, dtype=np.int64)
        if len(p) and (p.min() < 0 or p.max() >= len(c)):
            raise UsageError("evaluate_baseline: a position is outside its sequence")
        pieces += [c, sep]
        allpos.append(p + off)
        off += len(c) + 1
    if not pieces:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    codes = np.concatenate(pieces)
    pos = np.concatenate(allpos) if allpos else np.zeros(0, np.int64)
    pos = pos[codes[pos] != N_CODE]  # N positions have no label: skipped
    return log_posteriors(model, codes, pos), codes[pos].astype(np.int64)


def _metrics(logp: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    if len(truth) == 0:
        return float("nan"), float("nan")
    acc = float(np.mean(np.argmax(logp, axis=1) == truth))
    ce = float(-np.mean(logp[np.arange(len(truth)), truth]))
    return acc, ce


def evaluate_baseline(model: MarkovModel, sequences, positions) -> tuple[float, float]:
    """(accuracy, mean cross-entropy in nats) at `positions` (one int array per sequence).

    `sequences`: vocabulary-id arrays (or a `Genomes`). Each position is predicted from the true
    bases around it; positions holding N are skipped.
    """
    seqs = _arrays(sequences)
    if len(seqs) != len(positions):
        raise UsageError(f"{len(seqs)} sequences but {len(positions)} position arrays")
    logp, truth = _score(model, [ids_to_codes(s) for s in seqs], list(positions))
    return _metrics(logp, truth)


def evaluate_masked_windows(model: MarkovModel, batches) -> tuple[float, float]:
    """(accuracy, cross-entropy nats) at the positions MxDNA is scored on.

    `batches`: iterable of (ids, labels) pairs, each (B, L) or (L,) (numpy or torch), as made by
    `mxdna_cli.train.data.mask_tokens`: labels != -100 marks the masked positions and holds the
    true id. `ids` may be the masked input or the original window: the originals are restored from
    the labels. Each window is scored on its own (contexts stop at the window edges, and at any
    special token or N).
    """
    codes_list, pos_list = [], []
    for ids, labels in batches:
        ids = _to_numpy(ids)
        labels = _to_numpy(labels)
        if ids.shape != labels.shape:
            raise UsageError(f"ids shape {ids.shape} differs from labels shape {labels.shape}")
        ids2 = np.atleast_2d(ids)
        lab2 = np.atleast_2d(labels)
        orig = np.where(lab2 != -100, lab2, ids2)
        for row, lab in zip(orig, lab2):
            codes_list.append(ids_to_codes(row))
            pos_list.append(np.flatnonzero(lab != -100))
    logp, truth = _score(model, codes_list, pos_list)
    return _metrics(logp, truth)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(np.int64, copy=False)


def sample_positions(sequences, mask_prob: float, seed: int) -> list[np.ndarray]:
    """Seeded choice of ~mask_prob of the A/C/G/T positions of each sequence (N never chosen)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = []
    for s in _arrays(sequences):
        is_base = ids_to_codes(s) != N_CODE
        out.append(np.flatnonzero(is_base & (rng.random(len(s)) < mask_prob)))
    return out
