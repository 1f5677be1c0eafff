"""VCF reading and writing through pysam (mxdna_cli.io.vcf): symbolic alleles, one-line errors,
htslib's header quirks, bgzip + tabix output and atomic replacement."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pysam
import pytest

from mxdna_cli.errors import DataError
from mxdna_cli.io.vcf import VcfReader, VcfWriter, is_symbolic

DATA = Path(__file__).resolve().parents[1] / "data" / "variants"


def test_symbolic_alleles():
    for allele in ("<DEL>", "<*>", "*", ".", "G]chr2:5]", "[chr1:7[T", None):
        assert is_symbolic(allele), allele
    for allele in ("A", "GTACT", "N"):
        assert not is_symbolic(allele)


def test_reader_numbers_records_and_refuses_what_is_not_vcf(tmp_path):
    with VcfReader(str(DATA / "variants.vcf")) as reader:
        numbers = [n for n, _ in reader]
    assert numbers == list(range(1, 16))
    fasta = DATA / "genome.fa"
    with pytest.raises(DataError, match="genome.fa: not a VCF/BCF file"):
        VcfReader(str(fasta))
    with pytest.raises(DataError, match="file not found"):
        VcfReader(str(tmp_path / "missing.vcf"))
    broken = tmp_path / "broken.vcf"
    text = (DATA / "variants.vcf").read_text().splitlines()
    broken.write_text("\n".join(text[:15] + ["chr2\tnotanumber\t.\tA\tG\t.\t.\t."] + text[15:]) + "\n")
    with pytest.raises(DataError, match=r"broken.vcf: record \d+: cannot parse"), VcfReader(str(broken)) as reader:
        for _ in reader:
            pass


def test_a_record_without_the_headers_sample_columns_is_refused_when_read(tmp_path):
    # htslib reads such a line, then refuses to write it: the error must come before any work
    short = tmp_path / "short.vcf"
    lines = (DATA / "variants.vcf").read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    short.write_text("\n".join(header + ["chr2\t10\t.\tG\tA\t.\t.\t."]) + "\n")
    with pytest.raises(DataError, match=r"short.vcf: record 1 \(chr2:10\): 0 sample columns where the header names 2"):
        with VcfReader(str(short)) as reader:
            list(reader)


def _copy(source: Path, out: Path, reader_path: Path) -> VcfWriter:
    reader = VcfReader(str(reader_path))
    reader.complete_header()
    writer = VcfWriter(str(out), reader)
    for _, record in reader:
        writer.write(record)
    writer.commit()
    reader.close()
    return writer


def test_sorted_bgzip_output_gets_a_tabix_index_and_keeps_every_record(tmp_path):
    out = tmp_path / "copy.vcf.gz"
    writer = _copy(DATA / "variants.vcf", out, DATA / "variants.vcf")
    assert writer.indexed and (tmp_path / "copy.vcf.gz.tbi").is_file()
    with gzip.open(out, "rt") as handle:  # BGZF is gzip
        assert handle.readline().startswith("##fileformat=VCF")
    with pysam.VariantFile(str(out)) as copy, pysam.VariantFile(str(DATA / "variants.vcf")) as original:
        assert [(r.chrom, r.pos, r.id, r.ref, r.alts) for r in copy] == \
               [(r.chrom, r.pos, r.id, r.ref, r.alts) for r in original]
        assert [r.id for r in copy.fetch("chr2", 690, 810)] == ["deletion", "insertion"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.vcf.gz", "copy.vcf.gz.tbi"]  # no temporaries left


def test_unsorted_real_sample_vcf_is_written_without_an_index(tmp_path):
    # the janggu sample: records out of order, undeclared contig, IUPAC REF
    out = tmp_path / "sample.vcf.gz"
    (tmp_path / "sample.vcf.gz.tbi").write_text("stale")
    writer = _copy(DATA / "sample.vcf", out, DATA / "sample.vcf")
    assert not writer.sorted and not writer.indexed
    assert not (tmp_path / "sample.vcf.gz.tbi").exists()  # a stale index would describe another file
    with pysam.VariantFile(str(out)) as copy:
        assert [r.id for r in copy][:3] == [None, "rs6040355", "microsat1"]


def test_abort_leaves_the_previous_file(tmp_path):
    out = tmp_path / "keep.vcf"
    shutil.copy(DATA / "variants.vcf", out)
    before = out.read_bytes()
    reader = VcfReader(str(DATA / "unknown_contig.vcf"))
    writer = VcfWriter(str(out), reader)
    for _, record in reader:
        writer.write(record)
    writer.abort()
    reader.close()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.vcf"]
