"""Variant scoring and in-silico mutagenesis (mxdna_cli.engine.alleles, ism, variants): record checks, window
geometry, and the properties the scores must have, with the trained bundled models where the
numbers matter (small windows keep them quick)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mxdna_cli.engine import alleles as v
from mxdna_cli.engine.ism import ism
from mxdna_cli.engine.variants import score_records
from mxdna_cli.errors import DataError
from mxdna_cli.io.fasta import Region
from mxdna_cli.runtime import load, load_classifier
from mxdna_cli.sequence import reverse_complement

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1] / "data" / "variants"
GENOME = str(DATA / "genome.fa")
VCF = str(DATA / "variants.vcf")
WINDOW = 101


@pytest.fixture(scope="module")
def lm():
    return load("mxdna-small", device="cpu")


@pytest.fixture(scope="module")
def clf():
    loaded, index = load_classifier("promoter-human", device="cpu")
    return loaded, index


@pytest.fixture(scope="module")
def genome():
    with v.Genome.open(GENOME) as opened:
        yield v.Genome.from_sequences({c: opened.fetch(c, 0, n) for c, n in opened.lengths.items()})


def settings(**kw) -> v.VariantSettings:
    return v.VariantSettings(**{"window": WINDOW, **kw})


def record(chrom, pos, ref, alt, number=1) -> v.VariantRecord:
    return v.VariantRecord(number, chrom, pos, None, ref, tuple(alt.split(",")))


# --------------------------------------------------------------------------- checks, no model


def test_windows_have_equal_flanks_cut_at_contig_ends():
    assert v.centred_span(100, 1, 1000, 11) == (95, 106)
    assert v.centred_span(100, 4, 1000, 11) == (97, 107)  # (11 - 4) // 2 = 3 each side
    assert v.centred_span(2, 1, 1000, 11) == (0, 8)
    assert v.centred_span(998, 1, 1000, 11) == (993, 1000)


def test_records_are_checked_against_the_genome(genome):
    s = settings()
    seq = genome.fetch("chr2", 0, 2000)
    ok = v.plan_record(record("chr2", 10, seq[9], "A,<DEL>,*,N," + seq[9] + "A" * 60), genome, s, "x.vcf")
    assert ok.reasons == [None, "symbolic", "symbolic", "not_acgt", "too_long"]
    assert ok.filters == ["MXDNA_SKIPPED"]
    assert v.plan_record(record("chr2", 10, seq[9:12], seq[9]), genome, s, "x.vcf").reasons == [None]
    bad = "A" if seq[9] != "A" else "C"
    mismatch = v.plan_record(record("chr2", 10, bad, "G"), genome, s, "x.vcf")
    assert mismatch.reasons == ["ref_mismatch"] and mismatch.filters == ["MXDNA_REF_MISMATCH"]
    past = v.plan_record(record("chr2", 2000, seq[-1] + "A", "A"), genome, s, "x.vcf")
    assert past.filters == ["MXDNA_REF_MISMATCH"]
    with pytest.raises(DataError, match=r"x.vcf: record 1 \(chr2:10\): REF .* does not match"):
        v.plan_record(record("chr2", 10, bad, "G"), genome, settings(strict=True), "x.vcf")
    with pytest.raises(DataError, match=r"x.vcf: record 1 \(chrUn:5\): contig 'chrUn' is not in the genome"):
        v.plan_record(record("chrUn", 5, "A", "G"), genome, s, "x.vcf")
    skipped = v.plan_record(record("chrUn", 5, "A", "G"), genome, settings(skip_unknown_contigs=True), "x.vcf")
    assert skipped.filters == ["MXDNA_UNKNOWN_CONTIG"]


def test_snv_and_indel_windows(genome):
    seq = genome.fetch("chr2", 0, 2000)
    s = settings(scores=("llr", "emb"))
    snv = v.Allele(0, None, 0, "chr2", 499, seq[499], "A" if seq[499] != "A" else "C")
    tasks = v.allele_tasks(snv, genome, s, ("+",), WINDOW, 0)
    assert [t.part for t in tasks] == ["llr", "emb_ref", "emb_alt"] and tasks[-1].last
    masked = tasks[0].ids
    assert len(masked) == WINDOW and masked[50] == 4 and np.count_nonzero(masked == 4) == 1
    deletion = v.Allele(1, None, 0, "chr2", 699, seq[699:703], seq[699])
    parts = [t.part for t in v.allele_tasks(deletion, genome, settings(scores=("llr",)), ("+",), WINDOW, 0)]
    # the allele as written plus INDEL_FLANK bases each side, each base masked alone
    assert parts.count("pll_ref") == 4 + 2 * v.INDEL_FLANK and parts.count("pll_alt") == 1 + 2 * v.INDEL_FLANK


# --------------------------------------------------------------------------- scores


def test_llr_of_alt_equal_to_ref_is_zero(lm, genome):
    seq = genome.fetch("chr2", 0, 2000)
    rows = score_records([record("chr2", 1300, seq[1299], seq[1299]), record("chr2", 520, seq[519:521], seq[519:521])],
                           genome, lm, None, settings(), "test")
    assert np.all(rows["llr"] == 0.0)
    assert np.all(np.abs(rows["emb"]) < 1e-9)
    other = "A" if seq[1299] != "A" else "C"
    changed = score_records([record("chr2", 1300, seq[1299], other)], genome, lm, None, settings(), "test")
    assert changed["llr"][0] != 0.0 and changed["emb"][0] > 0


def _reverse_complement_variant(chrom_length: int, pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    pos0 = pos - 1
    return chrom_length - (pos0 + len(ref)) + 1, reverse_complement(ref), reverse_complement(alt)


def test_strand_averaged_scores_are_symmetric_under_reverse_complement(lm, clf, genome):
    loaded_clf, index = clf
    seq = genome.fetch("chr2", 0, 2000)
    flipped = v.Genome.from_sequences({"chr2": reverse_complement(seq)})
    alt = {b: ("G" if b != "G" else "T") for b in "ACGT"}
    variants = [("chr2", 400, seq[399], alt[seq[399]]), ("chr2", 520, seq[519:521], alt[seq[519]] + alt[seq[520]]),
                ("chr2", 700, seq[699:703], seq[699]), ("chr2", 800, seq[799], seq[799] + "TATA"),
                ("chr2", 3, seq[2], alt[seq[2]])]
    s = {"scores": ("llr", "emb", "dprob"), "strand": "both", "classifier_window": WINDOW, "label_index": index}
    forward = score_records([record(*x) for x in variants], genome, lm, loaded_clf, settings(**s), "test")
    mirrored = [record("chr2", *_reverse_complement_variant(2000, *x[1:])) for x in variants]
    backward = score_records(mirrored, flipped, lm, loaded_clf, settings(**s), "test")
    assert np.all(np.isfinite(forward["llr"])) and np.all(forward["filter"] == "PASS")
    for name in ("llr", "emb", "dprob"):
        np.testing.assert_allclose(backward[name], forward[name], rtol=1e-4, atol=1e-6)
    # one strand alone is not symmetric: the test would catch a score that ignored the strand
    one = score_records([record(*variants[0])], genome, lm, None, settings(strand="forward"), "test")
    other = score_records([mirrored[0]], flipped, lm, None, settings(strand="forward"), "test")
    assert abs(one["llr"][0] - other["llr"][0]) > 1e-4


def test_ism_of_one_base_is_the_score_of_that_snv(lm, clf, genome):
    region = Region("chr2", 600, 606)
    result = ism(genome, region, lm, None, window=WINDOW, strand="both")
    assert result.delta.shape == (6, 4) and result.score == "llr"
    for i, base in enumerate(result.sequence):
        assert result.delta[i, v.BASES.index(base)] == 0.0
    i = 3
    ref = result.sequence[i]
    alts = [b for b in v.BASES if b != ref]
    rows = score_records([record("chr2", 601 + i, ref, ",".join(alts))], genome, lm, None,
                           settings(scores=("llr",), strand="both"), "test")
    np.testing.assert_allclose(rows["llr"], [result.delta[i, v.BASES.index(b)] for b in alts], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.max_abs[i], np.max(np.abs(rows["llr"])), rtol=1e-5)
    np.testing.assert_allclose(result.mean[i], np.mean(rows["llr"]), rtol=1e-5, atol=1e-6)

    # the classifier reads the region whole: a one-record genome of WINDOW bases, its centre base
    loaded_clf, index = clf
    record_seq = genome.fetch("chr2", 1000, 1000 + WINDOW)
    single = v.Genome.from_sequences({"r": record_seq})
    by_clf = ism(single, Region("r", 0, WINDOW), None, loaded_clf, label_index=index)
    centre = WINDOW // 2
    ref = record_seq[centre]
    alts = [b for b in v.BASES if b != ref]
    rows = score_records([record("r", centre + 1, ref, ",".join(alts))], single, None, loaded_clf,
                           settings(scores=("dprob",), classifier_window=WINDOW, label_index=index), "test")
    np.testing.assert_allclose(rows["dprob"], [by_clf.delta[centre, v.BASES.index(b)] for b in alts], atol=1e-6)
    assert np.any(np.abs(by_clf.delta) > 1e-4)
