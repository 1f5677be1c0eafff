"""Tests of mxdna_cli.train.baselines: k-mer counting, two-sided Bayes, evaluation at masked positions."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mxdna_cli.errors import DataError
from mxdna_cli.train.baselines import (
    MarkovModel,
    count_kmers,
    evaluate_baseline,
    evaluate_masked_windows,
    fit_markov,
    fit_unigram,
    ids_to_codes,
    log_posteriors,
    sample_positions,
)
from mxdna_cli.train.data import fixed_validation_windows, load_genomes, mask_tokens

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "pretrain_small.fa"
CODE = {"A": 0, "T": 1, "C": 2, "G": 3}
COMP = {"A": "T", "T": "A", "C": "G", "G": "C", "N": "N"}
ID = {"A": 5, "T": 6, "C": 7, "G": 8, "N": 1}


def ids(text):
    return np.array([ID[c] for c in text], dtype=np.uint8)


def sample_chain(trans: np.ndarray, k: int, n: int, rng) -> np.ndarray:
    """n bases (vocabulary ids) from a k-th order chain trans[(ctx code), base]."""
    cum = np.cumsum(trans, axis=1)
    u = rng.random(n)
    out = np.empty(n, dtype=np.int64)
    out[:k] = rng.integers(0, 4, size=k)
    ctx = 0
    for q in range(k):
        ctx = (ctx * 4 + out[q]) % (4**k)
    for q in range(k, n):
        b = int(np.searchsorted(cum[ctx], u[q], side="right"))
        b = min(b, 3)
        out[q] = b
        ctx = (ctx * 4 + b) % (4**k)
    return (out + 5).astype(np.uint8)


def naive_counts(seqs, n_bases):
    counts = np.zeros(4**n_bases, dtype=np.int64)
    for s in seqs:
        for q in range(len(s) - n_bases + 1):
            mer = s[q : q + n_bases]
            if "N" in mer:
                continue
            code = 0
            for ch in mer:
                code = code * 4 + CODE[ch]
            counts[code] += 1
    return counts


def test_count_kmers_matches_naive_both_strands():
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("ACGTN"), p=[0.24, 0.24, 0.24, 0.24, 0.04], size=700))
    text2 = "ACGTTGCANNACG"
    rc = lambda s: "".join(COMP[c] for c in reversed(s))
    fwd = count_kmers([ids(text), ids(text2)], 3, both_strands=False)
    both = count_kmers([ids(text), ids(text2)], 3, both_strands=True)
    small_chunks = count_kmers([ids(text), ids(text2)], 3, both_strands=False, chunk=37)
    for j in range(4):
        np.testing.assert_array_equal(fwd[j], naive_counts([text, text2], j + 1))
        np.testing.assert_array_equal(both[j], naive_counts([text, text2, rc(text), rc(text2)], j + 1))
        np.testing.assert_array_equal(small_chunks[j], fwd[j])


def brute_force_posterior(model: MarkovModel, codes: np.ndarray, t: int) -> np.ndarray:
    """P(x_t | rest) from the joint probability of the whole sequence, enumerating x_t."""

    def log_joint(c):
        lp, run = 0.0, 0
        for q in range(len(c)):
            if c[q] == 255:
                run = 0
                continue
            j = min(model.k, run)
            lp += np.log(model.conditional(list(c[q - j : q]), int(c[q])))
            run += 1
        return lp

    lj = []
    for b in range(4):
        c = codes.copy()
        c[t] = b
        lj.append(log_joint(c))
    lj = np.array(lj)
    return lj - np.logaddexp.reduce(lj)


@pytest.mark.parametrize("k", [0, 1, 3, 8])
def test_bayes_matches_brute_force(k):
    rng = np.random.default_rng(k)
    train = rng.integers(5, 9, size=20000).astype(np.uint8)
    train[rng.random(20000) < 0.02] = 1
    model = fit_markov([train], k)
    seq = rng.integers(5, 9, size=30).astype(np.uint8)
    seq[21] = 1  # an N cuts the chain
    codes = ids_to_codes(seq)
    # edges, next to the N, interior (position 10 has full k=8 flanks on both sides)
    positions = np.array([0, 1, 2, 4, 6, 7, 8, 10, 12, 20, 22, 28, 29])
    lp = log_posteriors(model, codes, positions)
    for row, t in enumerate(positions):
        np.testing.assert_allclose(lp[row], brute_force_posterior(model, codes, t), atol=1e-10)
    # the two-sided posterior is not just the left-context conditional (right flank matters)
    if k >= 1:
        t = 4  # positions[3]
        ctx = list(codes[t - min(k, t) : t])
        cond = np.log([model.conditional(ctx, b) for b in range(4)])
        assert not np.allclose(lp[3], cond, atol=1e-3)


def test_markov_recovers_known_k2_chain():
    rng = np.random.default_rng(42)
    trans = rng.dirichlet(np.full(4, 0.3), size=16)
    seq = sample_chain(trans, 2, 250_000, rng)
    train, test = seq[:200_000], seq[200_000:]
    models = {k: fit_markov([train], k, both_strands=False) for k in (1, 2, 4)}
    unigram = fit_unigram([train], both_strands=False)
    # fitted order-2 conditionals match the true chain
    p2 = np.exp(models[2].log_tables[2]).reshape(16, 4)
    assert np.abs(p2 - trans).max() < 0.03
    # oracle: the true chain (lower orders taken from the fit; they only matter at the edge)
    oracle_counts = list(models[2].counts[:2]) + [np.round(trans.reshape(-1) * 1e9).astype(np.int64)]
    oracle = MarkovModel(k=2, counts=oracle_counts)
    positions = sample_positions([test], 0.15, seed=0)
    acc = {k: evaluate_baseline(m, [test], positions) for k, m in models.items()}
    acc0 = evaluate_baseline(unigram, [test], positions)
    acc_oracle = evaluate_baseline(oracle, [test], positions)
    assert acc[2][0] > acc0[0] + 0.15
    assert acc[2][0] > acc[1][0] + 0.02
    assert acc[2][0] >= acc_oracle[0] - 0.01
    assert acc[2][1] <= acc_oracle[1] + 0.01
    assert acc[2][1] < acc[1][1] < acc0[1]
    assert abs(acc[4][0] - acc[2][0]) < 0.02  # higher order: same information, little overfitting


def test_unigram_metrics_exact():
    seq = ids("AAAAAAACCG")  # A most frequent
    model = fit_unigram([seq], pseudocount=0.5, both_strands=False)
    p = (np.array([7, 0, 2, 1]) + 0.5) / 12.0
    np.testing.assert_allclose(np.exp(model.log_tables[0]), p)
    positions = [np.array([0, 7, 8, 9])]  # A, C, C, G
    acc, ce = evaluate_baseline(model, [seq], positions)
    assert acc == pytest.approx(0.25)
    assert ce == pytest.approx(-np.mean(np.log([p[0], p[2], p[2], p[3]])))
    # N positions are skipped
    seq_n = ids("AAAAAAACCN")
    acc_n, _ = evaluate_baseline(model, [seq_n], [np.array([0, 9])])
    assert acc_n == 1.0


def test_restrict_equals_direct_fit():
    g = load_genomes([FIXTURE])
    m5 = fit_markov(g, 5)
    m3 = fit_markov(g, 3)
    r3 = m5.restrict(3)
    for a, b in zip(r3.log_tables, m3.log_tables):
        np.testing.assert_array_equal(a, b)
    assert len(r3.log_tables) == 4


def test_masked_window_evaluation_uses_same_positions():
    g = load_genomes([FIXTURE])
    model = fit_markov(g, 4)
    windows = fixed_validation_windows(g, 256)
    orig = torch.from_numpy(windows)
    inp, labels = mask_tokens(orig, torch.Generator().manual_seed(0))
    half = len(orig) // 2
    res_masked = evaluate_masked_windows(model, [(inp[:half], labels[:half]), (inp[half:], labels[half:])])
    res_orig = evaluate_masked_windows(model, [(orig.numpy(), labels.numpy())])
    # original ids are restored from the labels, so feeding the masked input changes nothing
    assert res_masked == pytest.approx(res_orig, abs=1e-12)
    # and it equals scoring each window separately at its labelled positions
    lab = labels.numpy()
    positions = [np.flatnonzero(row != -100) for row in lab]
    res_sep = evaluate_baseline(model, list(windows), positions)
    assert res_masked == pytest.approx(res_sep, abs=1e-12)
    # direct computation for the accuracy
    correct = total = 0
    for w, p in zip(windows, positions):
        lp = log_posteriors(model, ids_to_codes(w), p)
        correct += int((lp.argmax(1) == ids_to_codes(w)[p]).sum())
        total += len(p)
    assert res_masked[0] == pytest.approx(correct / total)
    # real DNA: the order-4 chain beats base frequencies on its own training data
    assert res_orig[1] < evaluate_masked_windows(fit_unigram(g), [(orig, labels)])[1] - 0.02


def test_fit_errors():
    with pytest.raises(DataError, match="no A/C/G/T"):
        fit_markov([np.full(50, 1, np.uint8)], 2)


def test_sample_positions_seeded_and_skip_n():
    seq = ids("ACGT" * 500 + "N" * 1000)
    a = sample_positions([seq], 0.15, seed=3)
    b = sample_positions([seq], 0.15, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].max() < 2000
    assert abs(len(a[0]) - 300) < 5 * np.sqrt(2000 * 0.15 * 0.85)
