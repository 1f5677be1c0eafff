"""Promoter baselines (6-mer LR, CNN) and the pieces of the dataset builder that decide what is in a set."""

import math
from pathlib import Path

import numpy as np
import torch

from mxdna_cli.sequence import reverse_complement
from mxdna_cli.train.baselines_promoter import (
    CNNSettings,
    KmerLogisticRegression,
    PromoterCNN,
    SplitData,
    cnn_probabilities,
    kmer_codes,
    kmer_count_matrix,
    load_split_tables,
    one_hot,
    run_promoter_baselines,
    train_cnn,
)
from mxdna_cli.train.metrics import roc_auc

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "data" / "promoter"
MOTIF = "TATAAAAGGC"


def planted(n, length=80, seed=0):
    """Random DNA; label 1 sequences carry MOTIF at a random place."""
    rng = np.random.default_rng(seed)
    sequences, labels = [], []
    for i in range(n):
        sequence = "".join(rng.choice(list("ACGT"), length))
        label = i % 2
        if label:
            at = int(rng.integers(0, length - len(MOTIF)))
            sequence = sequence[:at] + MOTIF + sequence[at + len(MOTIF):]
        sequences.append(sequence)
        labels.append(label)
    return sequences, np.array(labels)


# ------------------------------------------------------------------ k-mers and LR


def test_kmer_codes_by_hand():
    # A=0 C=1 G=2 T=3: AC=1, CG=6, GT=11, TA=12, AC=1
    assert kmer_codes("ACGTAC", 2).tolist() == [1, 6, 11, 12, 1]
    assert kmer_codes("acNgt", 2).tolist() == [1, 11]  # lower case read, k-mers with N skipped
    assert kmer_codes("AC", 3).tolist() == []
    matrix = kmer_count_matrix(["ACGTAC", "AAAA"], 2).toarray()
    assert matrix.shape == (2, 16)
    assert matrix[0, 1] == 2 and matrix[0].sum() == 5 and matrix[1, 0] == 3


def test_kmer_lr_finds_a_planted_motif():
    train, y_train = planted(240, seed=1)
    valid, y_valid = planted(60, seed=2)
    test, y_test = planted(60, seed=3)
    model = KmerLogisticRegression(c_grid=(1e-3, 1e-2, 0.1)).fit(train, y_train, valid, y_valid)
    probabilities = model.predict_proba(test)
    assert probabilities.shape == (60, 2)
    assert roc_auc(y_test, probabilities[:, 1]) > 0.95


# ------------------------------------------------------------------ CNN


def test_one_hot_and_padding_mask():
    x, mask = one_hot(["ACGTN", "GA"])
    assert x.shape == (2, 4, 5) and mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    assert x[0, :, 4].tolist() == [0, 0, 0, 0]  # N is all zeros
    assert x[0, :, :4].argmax(0).tolist() == [0, 1, 2, 3]
    assert x[1, :, 2:].sum() == 0


def test_cnn_output_does_not_depend_on_padding():
    torch.manual_seed(0)
    model = PromoterCNN(2).eval()
    with torch.no_grad():
        x, mask = one_hot(["ACGTTGCAAGGCTTAC"])
        alone = model(x, mask)
        x, mask = one_hot(["ACGTTGCAAGGCTTAC", "ACGT" * 20])
        padded = model(x, mask)[:1]
    assert torch.allclose(alone, padded, atol=1e-6)


def test_cnn_learns_a_planted_motif_deterministically():
    train, y_train = planted(320, length=60, seed=4)
    valid, y_valid = planted(80, length=60, seed=5)
    test, y_test = planted(80, length=60, seed=6)
    settings = CNNSettings(epochs=6, patience=6, channels=32, batch_size=32, lr=1e-2, seed=0)
    model, summary = train_cnn(train, y_train, valid, y_valid, 2, settings)
    again, _ = train_cnn(train, y_train, valid, y_valid, 2, settings)
    first = cnn_probabilities(model, test)
    assert np.array_equal(first, cnn_probabilities(again, test))
    assert roc_auc(y_test, first[:, 1]) > 0.9
    assert summary["validation"]["mcc"] > 0.5


def test_cnn_early_stopping_restores_the_best_epoch():
    train, y_train = planted(64, seed=7)
    valid, y_valid = planted(32, seed=8)
    settings = CNNSettings(epochs=10, patience=2, channels=8, lr=0.0, seed=0)  # lr 0: no epoch improves on the first
    scores = []
    _, summary = train_cnn(train, y_train, valid, y_valid, 2, settings, progress=lambda e, s: scores.append(s["mcc"]))
    assert summary["epochs"] == 3 and summary["best_epoch"] == 1 and summary["stopped_early"]
    assert len(set(scores)) == 1


def test_run_promoter_baselines_reads_split_tables(tmp_path):
    rows = (FIXTURES / "tata_small.tsv").read_text().splitlines()
    header, promoters, others = rows[0], rows[1:17], rows[17:]
    for name, chosen in {"train": promoters[:10] + others[:10], "valid": promoters[10:13] + others[10:13],
                         "test": promoters[13:] + others[13:]}.items():
        (tmp_path / f"{name}.tsv").write_text("\n".join([header, *chosen]) + "\n")
    data = load_split_tables(tmp_path)
    assert isinstance(data, SplitData) and data.labels == ["nonpromoter", "promoter"]
    assert data.y["test"].tolist() == [1, 1, 1, 0, 0, 0]
    results = run_promoter_baselines(data, cnn=CNNSettings(epochs=1, channels=8))
    assert set(results) == {"6mer_lr", "cnn"}
    for metrics in results.values():
        assert metrics["n"] == 6 and 0 <= metrics["accuracy"] <= 1 and not math.isnan(metrics["auroc"])
        # the test probabilities returned are the ones the metrics were computed from
        assert metrics["test_probabilities"].shape == (6, 2)
        assert roc_auc(data.y["test"], metrics["test_probabilities"][:, 1]) == metrics["auroc"]


# ------------------------------------------------------------------ dataset builder


def test_gue_negative_keeps_eight_parts_in_place(script):
    builder = script("build_promoter_datasets")
    rng = np.random.default_rng(0)
    positive = "".join(np.random.default_rng(1).choice(list("ACGT"), 300))
    negative = builder.gue_negative(positive, rng)
    assert len(negative) == 300 and set(negative) <= set("ACGT")
    same = [positive[i * 15 : (i + 1) * 15] == negative[i * 15 : (i + 1) * 15] for i in range(20)]
    assert sum(same) == 8
    assert builder.gue_negative(positive, np.random.default_rng(0)) == negative


def test_tss_window_reads_the_gene_strand(script):
    builder = script("build_promoter_datasets")
    rng = np.random.default_rng(2)
    chrom = "".join(rng.choice(list("ACGT"), 1000))
    plus = builder.tss_window(chrom, "+", 500)
    assert plus == chrom[300:551] and plus[200] == chrom[500]
    minus = builder.tss_window(chrom, "-", 500)
    assert len(minus) == 251
    assert minus == reverse_complement(chrom[450:701])
    assert minus[200] == reverse_complement(chrom[500])  # the TSS is base 200 on the gene's strand
    assert minus[201] == reverse_complement(chrom[499])  # downstream runs to lower coordinates
    assert builder.tss_window(chrom, "+", 100) is None and builder.tss_window(chrom, "-", 960) is None


def test_grouped_split_keeps_groups_together_and_stratifies(script):
    builder = script("build_promoter_datasets")
    labels = ["promoter"] * 100 + ["nonpromoter"] * 200
    groups = np.array([i // 2 for i in range(100)] + list(range(100, 300)))  # promoters in pairs
    splits = builder.grouped_split(labels, groups, np.random.default_rng(0))
    for group in np.unique(groups):
        assert len(set(splits[groups == group])) == 1
    labels = np.array(labels)
    for split, share in (("test", 0.1), ("valid", 0.1)):
        assert abs(np.sum((splits == split) & (labels == "promoter")) - 100 * share) <= 1
        assert np.sum((splits == split) & (labels == "nonpromoter")) == 200 * share
    again = builder.grouped_split(list(labels), groups, np.random.default_rng(0))
    assert np.array_equal(splits, again)


def test_shared_kmer_groups_and_dedupe(script):
    builder = script("build_promoter_datasets")
    rng = np.random.default_rng(3)
    base = "".join(rng.choice(list("ACGT"), 400))
    other = "".join(rng.choice(list("ACGT"), 200))
    sequences = [base[:200], base[100:300], other, base[250:400]]  # 0-1 overlap by 100, 1-3 by 50
    groups = builder.shared_kmer_groups(sequences)
    assert groups[0] == groups[1] == groups[3] != groups[2]
    kept, labels, removed = builder.dedupe(["AC", "AC", "GT", "GT", "TT"], ["p", "p", "p", "n", "n"])
    assert kept == ["AC", "TT"] and labels == ["p", "n"]
    assert removed == {"duplicate_within_class": 1, "in_both_classes": 2}


def test_random_windows_do_not_overlap_and_stay_in_allowed_bases(script):
    builder = script("build_promoter_datasets")
    contigs = {"a": "A" * 3000, "b": "C" * 2000}
    allowed = {"a": np.ones(3000, bool), "b": np.ones(2000, bool)}
    allowed["a"][1000:2000] = False
    windows = builder.random_windows(contigs, allowed, 20, 100, np.random.default_rng(0))
    assert len(windows) == 20
    used = {"a": np.zeros(3000, int), "b": np.zeros(2000, int)}
    for name, start in windows:
        used[name][start : start + 100] += 1
    assert used["a"].max() <= 1 and used["b"].max() <= 1
    assert used["a"][1000:2000].sum() == 0
