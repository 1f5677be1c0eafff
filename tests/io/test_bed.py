"""Tests for mxdna_cli.io.bed: samtools-style region text and BED files."""

import gzip
import io
import sys
from pathlib import Path

import pytest

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.bed import parse_region, read_bed
from mxdna_cli.io.fasta import Region

DATA = Path(__file__).resolve().parents[1] / "data"
REGIONS_BED = DATA / "regions.bed"
ALU_BED_GZ = DATA / "aluY.head.bed.gz"

FIXTURE_REGIONS = [
    Region("CHROMOSOME_I", 0, 100, "ce_first100", "+"),
    Region("CHROMOSOME_I", 2900, 3000, "ce_last100", "-"),
    Region("NC_004353.4", 1000, 2100, "dm_softmask_to_N", "+"),
    Region("22:20608432-20611431", 990, 1010, None, "+"),
]


# --- parse_region ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, region",
    [
        ("chr1:1-10", Region("chr1", 0, 10)),
        ("chr1:10,001-20,000", Region("chr1", 10000, 20000)),
        ("  chrX:5-5 ", Region("chrX", 4, 5)),
        # contig names may contain ':' — the coordinates follow the LAST ':'
        ("22:20608432-20611431:991-1010", Region("22:20608432-20611431", 990, 1010)),
        ("HLA-A*01:01:1-100", Region("HLA-A*01:01", 0, 100)),
    ],
)
def test_parse_region(text, region):
    assert parse_region(text) == region


@pytest.mark.parametrize(
    "text, message",
    [
        ("chr1", "expected chr, chr:from or chr:from-to"),  # without the FASTA's contigs
        ("chr1:100", "needs the contig's length"),
        (":1-10", "expected chr, chr:from or chr:from-to"),
        ("chr1:a-10", "'a' is not a position"),
        ("chr1:1-", "'' is not a position"),
        ("chr1:-5-10", "'' is not a position"),
        ("chr1:0-10", "needs 1 <= from <= to"),
        ("chr1:20-10", "needs 1 <= from <= to"),
    ],
)
def test_parse_region_errors_are_usage_errors_with_an_example(text, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_region(text)
    assert "e.g. chr1:10,001-20,000" in str(info.value)
    assert text in str(info.value)


def test_parse_region_gives_the_same_label_back():
    assert parse_region("chr2:1,001-2,000").label == "chr2:1001-2000"


# --- read_bed --------------------------------------------------------------------------------


def test_read_bed_fixture_skips_comment_browser_and_track_lines():
    assert read_bed(str(REGIONS_BED)) == FIXTURE_REGIONS


def test_read_bed_gzip_real_annotation():
    regions = read_bed(str(ALU_BED_GZ))
    assert len(regions) == 20
    assert regions[0] == Region("chr1", 25165800, 25166089, "AluY", "-")
    with gzip.open(ALU_BED_GZ, "rt") as fh:
        lines = [line.split("\t") for line in fh]
    assert [(r.chrom, r.start, r.end, r.strand) for r in regions] == [
        (f[0], int(f[1]), int(f[2]), f[5].strip()) for f in lines
    ]


def test_read_bed_from_stdin_bytes(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(ALU_BED_GZ.read_bytes())))
    assert read_bed("-") == read_bed(str(ALU_BED_GZ))


def test_read_bed_from_stdin_text(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(REGIONS_BED.read_text()))
    assert read_bed("-") == FIXTURE_REGIONS


def test_read_bed_three_columns_and_space_separated(tmp_path):
    path = tmp_path / "r.bed"
    path.write_text("chr1\t5\t10\nchr2 0 3 n2\n\n")
    assert read_bed(str(path)) == [Region("chr1", 5, 10), Region("chr2", 0, 3, "n2")]


def _bad_bed(tmp_path, body: str) -> str:
    path = tmp_path / "bad.bed"
    path.write_text("#header\ntrack name=x\nchr1\t0\t10\tok\t0\t+\n" + body)
    return str(path)


@pytest.mark.parametrize(
    "body, message",
    [
        ("chr1\t5\n", "expected at least 3 columns"),
        ("chr1\tfive\t10\n", "start 'five' is not an integer"),
        ("chr1\t5\t10.5\n", "end '10.5' is not an integer"),
        ("chr1\t-5\t10\n", "start -5 is negative"),
        ("chr1\t10\t10\n", "start 10 must be less than end 10"),
        ("chr1\t20\t10\n", "start 20 must be less than end 10"),
        ("chr1\t0\t10\tn\t0\tplus\n", "strand 'plus' must be"),
    ],
)
def test_read_bed_errors_name_file_and_line(tmp_path, body, message):
    path = _bad_bed(tmp_path, body)
    with pytest.raises(DataError, match=rf"{path}:4: {message}"):
        read_bed(path)


def test_read_bed_stdin_error_names_stdin_and_line(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("chr1\t0\t10\nchr1\tx\t10\n"))
    with pytest.raises(DataError, match=r"^stdin:2: start 'x'"):
        read_bed("-")


def test_read_bed_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_bed(str(tmp_path / "nope.bed"))


def test_read_bed_without_regions(tmp_path):
    path = tmp_path / "empty.bed"
    path.write_text("# nothing\ntrack name=x\n")
    with pytest.raises(DataError, match=rf"{path}: no regions found"):
        read_bed(str(path))


def test_read_bed_binary_file(tmp_path):
    path = tmp_path / "x.bed"
    path.write_bytes(b"chr1\t0\t10\n\xff\xfe\x00\x01")
    with pytest.raises(DataError, match=rf"{path}: cannot read as BED text"):
        read_bed(str(path))


def test_whole_contig_and_open_ended_regions_as_samtools_reads_them():
    lengths = {"chr1": 5000, "22:20608432-20611431": 3000, "HLA-A*01:01": 900}
    assert parse_region("chr1", lengths) == Region("chr1", 0, 5000, name="chr1")
    assert parse_region("chr1:1,001", lengths) == Region("chr1", 1000, 5000)
    assert parse_region("chr1:11-20", lengths) == Region("chr1", 10, 20)
    # a contig name that looks like a region is the contig, as in samtools faidx
    assert parse_region("22:20608432-20611431", lengths) == Region("22:20608432-20611431", 0, 3000,
                                                                     name="22:20608432-20611431")
    assert parse_region("22:20608432-20611431:101-200", lengths) == Region("22:20608432-20611431", 100, 200)
    assert parse_region("HLA-A*01:01:5", lengths) == Region("HLA-A*01:01", 4, 900)
