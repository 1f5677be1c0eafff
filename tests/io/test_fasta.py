"""Tests for mxdna_cli.io.fasta: streaming records, indexed region access and their errors."""

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mxdna_cli.errors import DataError
from mxdna_cli.io import fasta as fasta_module
from mxdna_cli.io.fasta import IndexedFasta, Record, Region, iter_fasta_records, read_regions

DATA = Path(__file__).resolve().parents[1] / "data"
MINI = DATA / "mini.fa"
MINI_BGZIP = DATA / "mini.fa.gz"
MINI_GZIP = DATA / "mini.plain.fa.gz"
COLON_CONTIG = "22:20608432-20611431"
NAMES = ["CHROMOSOME_I", "NC_004353.4", COLON_CONTIG]
REPO = Path(__file__).resolve().parents[2]


def expected_records() -> dict[str, str]:
    """The fixture's records, parsed independently of the code under test."""
    records: dict[str, list[str]] = {}
    for line in MINI.read_text().splitlines():
        if line.startswith(">"):
            current = records.setdefault(line[1:], [])
        else:
            current.append(line)
    return {name: "".join(lines) for name, lines in records.items()}


EXPECTED = expected_records()


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --- fixture sanity: the fixtures hold what the tests rely on --------------------------------


def test_fixture_has_soft_masking_and_n_runs():
    assert list(EXPECTED) == NAMES
    assert all(len(seq) == 3000 for seq in EXPECTED.values())
    assert EXPECTED["NC_004353.4"].endswith("N" * 1000)
    assert any(c.islower() for c in EXPECTED["NC_004353.4"])
    assert EXPECTED[COLON_CONTIG].startswith("N" * 1000)


# --- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [MINI, MINI_BGZIP, MINI_GZIP], ids=["plain", "bgzip", "gzip"])
def test_iter_fasta_records_reads_every_format(path):
    records = list(iter_fasta_records(str(path)))
    assert [r.name for r in records] == NAMES
    for record in records:
        assert record.sequence == EXPECTED[record.name]  # case and N kept as in the file
        assert record.region == Region(record.name, 0, 3000)


def _stdin_digest_script() -> str:
    return (
        "import hashlib;from mxdna_cli.io.fasta import iter_fasta_records as it;"
        "[print(r.name, len(r.sequence), hashlib.md5(r.sequence.encode()).hexdigest()) "
        "for r in it('-')]"
    )


def _expected_digest_lines() -> list[str]:
    return [f"{n} {len(s)} {hashlib.md5(s.encode()).hexdigest()}" for n, s in EXPECTED.items()]


@pytest.mark.parametrize("path", [MINI, MINI_GZIP, MINI_BGZIP], ids=["plain", "gzip", "bgzip"])
def test_stdin_streaming_in_a_real_process(path):
    result = subprocess.run(
        [sys.executable, "-c", _stdin_digest_script()],
        input=path.read_bytes(), capture_output=True, cwd=REPO, check=True,
    )
    assert result.stdout.decode().splitlines() == _expected_digest_lines()


def test_stdin_error_is_a_clean_data_error_in_a_real_process():
    script = (
        "from mxdna_cli.io.fasta import iter_fasta_records as it\n"
        "try:\n    list(it('-'))\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], input=b"@r1\nACGT\n+\nIIII\n",
        capture_output=True, cwd=REPO, check=True,
    )
    assert result.stdout.decode().startswith("DataError stdin: line 1: looks like FASTQ")


@pytest.mark.parametrize("path", [MINI, MINI_GZIP], ids=["plain", "gzip"])
def test_stdin_replaced_by_a_byte_stream(monkeypatch, path):
    # what typer's CliRunner does: a text wrapper over BytesIO, with no peek()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    records = list(iter_fasta_records("-"))
    assert {r.name: r.sequence for r in records} == EXPECTED


def test_stdin_replaced_by_a_text_stream(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(">a desc\nAC\r\ngt\n\n>b\nNN\n"))
    records = list(iter_fasta_records("-"))
    assert [(r.name, r.sequence) for r in records] == [("a", "ACgt"), ("b", "NN")]


def test_stdin_and_pysam_parse_the_same_edge_cases(tmp_path, monkeypatch):
    text = "\n\n>a some description\nACGT\nac\r\n\n>b\tx\nNNNN\n"
    from_file = [(r.name, r.sequence) for r in iter_fasta_records(write(tmp_path / "e.fa", text))]
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    from_stdin = [(r.name, r.sequence) for r in iter_fasta_records("-")]
    assert from_file == from_stdin == [("a", "ACGTac"), ("b", "NNNN")]


# --- streaming errors ------------------------------------------------------------------------


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.fa")
    with pytest.raises(DataError, match=f"{missing}: file not found"):
        list(iter_fasta_records(missing))


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        list(iter_fasta_records(str(tmp_path)))


def test_text_file_is_not_fasta(tmp_path):
    path = write(tmp_path / "notes.txt", "\nhello world\n>a\nACGT\n")
    with pytest.raises(DataError, match=rf"{path}: line 2: not FASTA.*hello world"):
        list(iter_fasta_records(path))


def test_gzip_text_file_is_not_fasta(tmp_path):
    path = tmp_path / "notes.fa.gz"
    path.write_bytes(gzip.compress(b"chr1\t0\t10\n"))
    with pytest.raises(DataError, match=rf"{path}: line 1: not FASTA"):
        list(iter_fasta_records(str(path)))


def test_fastq_file_is_refused(tmp_path):
    path = write(tmp_path / "reads.fq", "@r1\nACGT\n+\nIIII\n")
    with pytest.raises(DataError, match=rf"{path}: line 1: looks like FASTQ"):
        list(iter_fasta_records(path))


def test_fastq_record_after_fasta_records_is_refused(tmp_path):
    path = write(tmp_path / "mixed.fa", ">a\nACGT\n@r1\nACGT\n+\nIIII\n")
    with pytest.raises(DataError, match=rf"{path}: record 2 'r1' is FASTQ"):
        list(iter_fasta_records(path))


@pytest.mark.parametrize("use_stdin", [False, True], ids=["file", "stdin"])
def test_empty_record_names_the_record(tmp_path, monkeypatch, use_stdin):
    text = ">a\nACGT\n>hollow\n>c\nAC\n"
    path = write(tmp_path / "e.fa", text)
    if use_stdin:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        path, source = "-", "stdin"
    else:
        source = path
    with pytest.raises(DataError, match=rf"{source}: record 2 'hollow' has an empty sequence"):
        list(iter_fasta_records(path))


@pytest.mark.parametrize("use_stdin", [False, True], ids=["file", "stdin"])
def test_duplicate_name_names_the_record(tmp_path, monkeypatch, use_stdin):
    text = ">a\nACGT\n>b\nAA\n>a second\nAC\n"
    path = write(tmp_path / "d.fa", text)
    if use_stdin:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        path = "-"
    with pytest.raises(DataError, match=r"record 3: duplicate record name 'a'"):
        list(iter_fasta_records(path))


def test_record_without_name(tmp_path):
    path = write(tmp_path / "n.fa", ">a\nAC\n> spaced\nACGT\n")
    with pytest.raises(DataError, match=rf"{path}: record 2 has no name"):
        list(iter_fasta_records(path))


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["empty", "blank"])
def test_no_records(tmp_path, content):
    path = tmp_path / "empty.fa"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"{path}: no FASTA records found"):
        list(iter_fasta_records(str(path)))


def test_binary_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b">a\nAC\x00\x01\x02" * 10)
    with pytest.raises(DataError, match=rf"{path}: binary data"):
        list(iter_fasta_records(str(path)))


def test_truncated_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(MINI_GZIP.read_bytes()[:1500])
    with pytest.raises(DataError, match=str(path)):
        list(iter_fasta_records(str(path)))


def test_records_stream_before_a_late_error(tmp_path):
    # errors surface when reached: records before them have already been yielded
    path = write(tmp_path / "late.fa", ">a\nACGT\n>a\nAC\n")
    records = iter_fasta_records(path)
    assert next(records).name == "a"
    with pytest.raises(DataError):
        next(records)


# --- indexed access --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [MINI, MINI_BGZIP], ids=["plain", "bgzip"])
def test_indexed_fasta_contigs_lengths_and_fetch(path):
    with IndexedFasta(str(path)) as fa:
        assert fa.contigs == tuple(NAMES)
        assert fa.lengths == {name: 3000 for name in NAMES}
        for name, seq in EXPECTED.items():
            assert fa.fetch(Region(name, 0, 3000)) == seq
            assert fa.fetch(Region(name, 990, 1010)) == seq[990:1010]
            assert fa.fetch(Region(name, 2999, 3000)) == seq[2999]


def test_fetch_keeps_case_and_contig_names_with_colons():
    with IndexedFasta(str(MINI_BGZIP)) as fa:
        soft = fa.fetch(Region("NC_004353.4", 1010, 1030))
        assert soft == EXPECTED["NC_004353.4"][1010:1030] and soft != soft.upper()
        expected = "NNNNN" + EXPECTED[COLON_CONTIG][1000:1005]
        assert fa.fetch(Region(COLON_CONTIG, 995, 1005)) == expected


def test_fetch_unknown_contig_names_contig_and_file():
    with IndexedFasta(str(MINI)) as fa:
        with pytest.raises(DataError, match=rf"{MINI}: unknown contig 'chrZ' in region chrZ:1-10"):
            fa.fetch(Region("chrZ", 0, 10))


@pytest.mark.parametrize(
    "region, message",
    [
        (
            Region("CHROMOSOME_I", -1, 10),
            r"invalid region CHROMOSOME_I:0-10: needs 0 <= start < end",
        ),
        (Region("CHROMOSOME_I", 10, 10), r"invalid region CHROMOSOME_I:11-10"),
        (Region("CHROMOSOME_I", 20, 10, name="backwards"), r"invalid region 'backwards'"),
        (
            Region("CHROMOSOME_I", 2990, 3001),
            r"region CHROMOSOME_I:2991-3001 ends past the end of contig 'CHROMOSOME_I' "
            r"\(length 3000\)",
        ),
    ],
)
def test_fetch_rejects_bad_coordinates(region, message):
    with IndexedFasta(str(MINI)) as fa:
        with pytest.raises(DataError, match=message):
            fa.fetch(region)


def test_plain_gzip_cannot_be_indexed():
    with pytest.raises(DataError, match=rf"{MINI_GZIP}: plain gzip cannot be indexed.*bgzip"):
        IndexedFasta(str(MINI_GZIP))


@pytest.mark.parametrize("name", ["mini.fa", "mini.fa.gz"])
def test_missing_index_is_built_in_a_writable_folder(tmp_path, name):
    shutil.copy(DATA / name, tmp_path / name)
    with IndexedFasta(str(tmp_path / name)) as fa:
        assert fa.fetch(Region("NC_004353.4", 0, 50)) == EXPECTED["NC_004353.4"][:50]
    assert (tmp_path / (name + ".fai")).exists()
    assert (tmp_path / (name + ".gzi")).exists() == name.endswith(".gz")


def test_missing_index_in_read_only_folder_is_explained(tmp_path, monkeypatch):
    shutil.copy(MINI, tmp_path / "mini.fa")
    monkeypatch.setattr(fasta_module.os, "access", lambda path, mode: False)
    message = r"mini\.fa: index mini\.fa\.fai is missing and folder .* not writable"
    with pytest.raises(DataError, match=message):
        IndexedFasta(str(tmp_path / "mini.fa"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_missing_index_in_really_read_only_folder(tmp_path):
    shutil.copy(MINI, tmp_path / "mini.fa")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(DataError, match="not writable"):
            IndexedFasta(str(tmp_path / "mini.fa"))
    finally:
        tmp_path.chmod(0o755)


def test_existing_index_in_read_only_folder_is_fine(monkeypatch):
    monkeypatch.setattr(fasta_module.os, "access", lambda path, mode: False)
    with IndexedFasta(str(MINI_BGZIP)) as fa:
        assert fa.contigs == tuple(NAMES)


def test_unindexed_fastq_is_not_indexed(tmp_path):
    path = write(tmp_path / "reads.fq", "@r1\nACGT\n+\nIIII\n")
    with pytest.raises(DataError, match="looks like FASTQ"):
        IndexedFasta(path)
    assert not (tmp_path / "reads.fq.fai").exists()


def test_indexed_fasta_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        IndexedFasta(str(tmp_path / "nope.fa"))


def test_indexed_fasta_refuses_stdin():
    with pytest.raises(DataError, match="stdin"):
        IndexedFasta("-")


# --- regions ---------------------------------------------------------------------------------


def test_region_label():
    assert Region("chr1", 0, 10).label == "chr1:1-10"
    assert Region("chr1", 0, 10, name="promoter").label == "promoter"
    assert Region("chr1", 5, 5).length == 0 and Region("chr1", 5, 5)  # truthy even when empty


def test_read_regions_keeps_order_and_strand():
    regions = [
        Region(COLON_CONTIG, 990, 1010),
        Region("CHROMOSOME_I", 100, 130, name="minus", strand="-"),
        Region("NC_004353.4", 1000, 2100),
    ]
    records = list(read_regions(str(MINI_BGZIP), regions))
    names = [f"{COLON_CONTIG}:991-1010", "minus", "NC_004353.4:1001-2100"]
    assert [r.name for r in records] == names
    assert all(isinstance(r, Record) for r in records)
    assert [r.region for r in records] == regions
    # the '-' strand region comes back as the forward strand: reverse complement is the caller's
    assert records[1].sequence == EXPECTED["CHROMOSOME_I"][100:130]
    assert records[2].sequence == EXPECTED["NC_004353.4"][1000:2100]


def test_read_regions_stops_at_a_bad_region():
    regions = [Region("CHROMOSOME_I", 0, 10), Region("CHROMOSOME_I", 0, 5000, name="too_long")]
    records = read_regions(str(MINI), regions)
    assert next(records).sequence == EXPECTED["CHROMOSOME_I"][:10]
    with pytest.raises(DataError, match=r"'too_long' \(CHROMOSOME_I:1-5000\).*length 3000"):
        next(records)
