"""`mxdna score-variants` and `mxdna ism` end to end on the variant fixtures, with tiny models
(speed; the numbers' properties are tested with the trained models in tests/engine/test_variants.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pysam
import pytest
import torch
from typer.testing import CliRunner

from mxdna_cli.cli import app
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM, MxDNAForSequenceClassification
from mxdna_cli.weights import save_model

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1] / "data" / "variants"
GENOME = str(DATA / "genome.fa")
VCF = str(DATA / "variants.vcf")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_model(MxDNAForMaskedLM(ModelConfig.preset("tiny")), root / "tiny", trained=False)
    torch.manual_seed(1)
    save_model(MxDNAForSequenceClassification(ModelConfig.preset("tiny"), num_labels=2), root / "clf", trained=False,
               extra={"labels": ["nonpromoter", "promoter"], "window": 60})
    return SimpleNamespace(lm=str(root / "tiny"), clf=str(root / "clf"))


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def score(models, *args):
    return run("score-variants", *args, "--lm", models.lm, "-w", 64, "--threads", 1)


def test_vcf_output_keeps_every_record_and_field_and_is_indexed(models, tmp_path):
    out = tmp_path / "scored.vcf.gz"
    result = score(models, VCF, "-g", GENOME, "-o", out, "-m", models.clf, "--strand", "both")
    assert result.exit_code == 0, result.output
    assert "not scored" in result.output and "MXDNA_SKIPPED" in result.output  # the count on stderr
    assert (tmp_path / "scored.vcf.gz.tbi").is_file()
    with pysam.VariantFile(VCF) as original, pysam.VariantFile(str(out)) as scored:
        before, after = list(original), list(scored)
        header = str(scored.header)
        for key in ("MXDNA_LLR", "MXDNA_EMB", "MXDNA_DPROB"):
            assert scored.header.info[key].number == "A" and scored.header.info[key].type == "Float"
        assert "##mxdna_model_sha256=" in header and "##mxdna_window=64" in header
        assert "##mxdna_strand=both" in header and "##mxdna_classifier_sha256=" in header
        assert [r.id for r in after] == [r.id for r in before]
        for a, b in zip(before, after):
            assert (a.chrom, a.pos, a.ref, a.alts, a.qual) == (b.chrom, b.pos, b.ref, b.alts, b.qual)
            assert all(b.info.get(k) == a.info.get(k) for k in a.info if k != "END")
            assert [b.samples[s]["GT"] for s in b.samples] == [a.samples[s]["GT"] for s in a.samples]
        rows = {r.id: r for r in after}
        assert len(rows["multi"].info["MXDNA_LLR"]) == 3 and None not in rows["multi"].info["MXDNA_LLR"]
        for vid in ("firstbase", "mnv", "deletion", "insertion", "lastbases", "chr7snv"):
            assert list(rows[vid].filter) == ["PASS"] and np.isfinite(rows[vid].info["MXDNA_LLR"][0]), vid
        assert list(rows["microsat"].filter) == ["q10"]  # an input FILTER is kept
        for vid in ("refmismatch", "iupac"):
            assert list(rows[vid].filter) == ["MXDNA_REF_MISMATCH"] and "MXDNA_LLR" not in rows[vid].info
        for vid in ("symbolic", "longins"):
            assert list(rows[vid].filter) == ["MXDNA_SKIPPED"] and "MXDNA_LLR" not in rows[vid].info
        assert list(rows["star"].filter) == ["MXDNA_SKIPPED"]
        assert rows["star"].info["MXDNA_LLR"][1] is None and rows["star"].info["MXDNA_LLR"][0] is not None
        assert rows["same"].info["MXDNA_LLR"] == (0.0,)
        assert "MXDNA_LLR" not in rows["noalt"].info
        assert [r.id for r in scored.fetch("chr7", 700, 800)] == ["chr7snv"]


def test_tsv_output_has_one_row_per_alt_and_regions_restrict(models, tmp_path):
    out = tmp_path / "scored.tsv"
    result = score(models, VCF, "-g", GENOME, "-o", out, "--scores", "llr", "-r", "chr2:380-1250")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in out.read_text().splitlines() if not line.startswith("#")]
    assert lines[0] == ["chrom", "pos", "id", "ref", "alt", "filter", "MXDNA_LLR"]
    assert [r[2] for r in lines[1:]] == ["multi"] * 3 + ["mnv", "deletion", "insertion", "microsat", "microsat",
                                                         "refmismatch", "iupac", "symbolic", "star", "star"]
    assert lines[-1][4:] == ["*", "MXDNA_SKIPPED", "."]
    assert [r[5] for r in lines[1:7]] == ["PASS"] * 6 and lines[7][5] == "q10"  # the input FILTER is kept


def test_unknown_contig_is_an_error_or_skipped_with_a_count(models, tmp_path):
    vcf = str(DATA / "unknown_contig.vcf")
    out = tmp_path / "out.vcf"
    result = score(models, vcf, "-g", GENOME, "-o", out)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("mxdna: error: ") and "unknown_contig.vcf: record 2 (chrUn:50 elsewhere)" in lines[-1]
    assert "Traceback" not in result.output and not out.exists() and list(tmp_path.iterdir()) == []
    result = score(models, vcf, "-g", GENOME, "-o", out, "--skip-unknown-contigs")
    assert result.exit_code == 0, result.output
    assert "1 ALT allele(s) on contigs not in the genome" in result.output
    with pysam.VariantFile(str(out)) as scored:
        assert [list(r.filter) for r in scored] == [["PASS"], ["MXDNA_UNKNOWN_CONTIG"]]


def test_strict_ref_mismatch_and_bad_paths(models, tmp_path):
    out = tmp_path / "out.vcf.gz"
    result = score(models, VCF, "-g", GENOME, "-o", out, "--strict")
    assert result.exit_code == 1 and "record 7 (chr2:1000 refmismatch): REF 'T' does not match" in result.output
    assert list(tmp_path.iterdir()) == []
    copy = tmp_path / "in.vcf"
    shutil.copy(VCF, copy)
    assert score(models, copy, "-g", GENOME, "-o", copy).exit_code == 2
    assert score(models, VCF, "-g", GENOME, "-o", tmp_path / "x.bed").exit_code == 2
    assert score(models, VCF, "-o", tmp_path / "x.tsv").exit_code == 2  # no --genome
    assert score(models, VCF, "-g", GENOME, "--scores", "dprob").exit_code == 2  # no classifier
    assert copy.read_text() == Path(VCF).read_text()


def test_the_real_sample_vcf_reads_back_whole(models, tmp_path):
    out = tmp_path / "sample.vcf.gz"
    result = score(models, DATA / "sample.vcf", "-g", GENOME, "-o", out)
    assert result.exit_code == 0, result.output
    assert "not sorted" in result.output and not (tmp_path / "sample.vcf.gz.tbi").exists()
    with pysam.VariantFile(str(DATA / "sample.vcf")) as original, pysam.VariantFile(str(out)) as scored:
        assert [(r.pos, r.id) for r in scored] == [(r.pos, r.id) for r in original]


def test_ism_tsv_bigwig_and_plot(models, tmp_path):
    tsv = tmp_path / "ism.tsv"
    result = run("ism", GENOME, "-r", "chr2:101-120", "--lm", models.lm, "-w", 64, "-o", tsv, "--plot",
                 tmp_path / "ism.png")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in tsv.read_text().splitlines() if not line.startswith("#")]
    assert rows[0][:4] == ["chrom", "pos", "ref", "delta_A"] and len(rows) == 21
    assert [int(r[1]) for r in rows[1:]] == list(range(101, 121))
    for row in rows[1:]:
        deltas = [float(x) for x in row[3:7]]
        assert deltas["ACGT".index(row[2])] == 0.0
        assert float(row[7]) == pytest.approx(max(abs(x) for x in deltas), abs=2e-6)
    assert (tmp_path / "ism.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bw = tmp_path / "ism.bw"
    result = run("ism", "--genome", GENOME, "-r", "chr2:101-120", "-m", models.clf, "-o", bw, "--value", "mean")
    assert result.exit_code == 0, result.output
    import pyBigWig

    track = pyBigWig.open(str(bw))
    assert track.chroms() == {"chr2": 2000} and len(track.intervals("chr2")) == 20
    track.close()


def test_ism_of_a_one_record_fasta_without_region(models, tmp_path):
    fasta = tmp_path / "one.fa"
    fasta.write_text(">promoter\n" + Path(GENOME).read_text().splitlines()[1][:40] + "\n")
    out = tmp_path / "one.tsv"
    assert run("ism", fasta, "-m", models.clf, "-o", out).exit_code == 0
    assert len([line for line in out.read_text().splitlines() if not line.startswith("#")]) == 41
    assert run("ism", GENOME, "-m", models.clf, "-o", tmp_path / "x.tsv").exit_code == 2  # two records
    assert run("ism", GENOME, "--genome", GENOME, "-r", "chr2:1-10", "-o", tmp_path / "x.tsv").exit_code == 2


def test_resume_of_an_interrupted_run_gives_the_uninterrupted_scores(models, tmp_path, monkeypatch):
    from mxdna_cli.engine import pipeline, variants

    plain, resumed = tmp_path / "plain.tsv", tmp_path / "resumed.tsv"
    args = (VCF, "-g", GENOME, "--strand", "both", "--batch-tokens", 200)
    monkeypatch.setattr(pipeline, "CHUNK_BATCHES", 1)  # many checkpoints (and the same batches in both runs)
    assert score(models, *args, "-o", plain).exit_code == 0
    calls = {"n": 0}
    real = variants.model_forward

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(variants, "model_forward", dying)
    assert score(models, *args, "-o", resumed, "--resume").exit_code == 130
    assert not resumed.exists() and (tmp_path / ".resumed.tsv.resume").is_dir()
    monkeypatch.setattr(variants, "model_forward", real)
    assert score(models, *args, "-o", resumed, "--resume").exit_code == 0
    rows = [[line for line in p.read_text().splitlines() if not line.startswith("#")] for p in (plain, resumed)]
    assert rows[0] == rows[1] and not (tmp_path / ".resumed.tsv.resume").exists()
