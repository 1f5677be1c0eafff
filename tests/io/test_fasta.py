"""Tests for mxdna_cli.io.fasta and mxdna_cli.io.faidx: streaming records, indexed region access, index
checks against their FASTA, and their errors."""

import contextlib
import gzip
import hashlib
import io
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pysam
import pytest

from mxdna_cli.engine.inputs import Inputs, InputSpec
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io import fasta as fasta_module
from mxdna_cli.io.faidx import IndexedFasta
from mxdna_cli.io.fasta import Region, iter_fasta_records

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


# --- indexes that do not fit their FASTA, control bytes, pipes ------------------------------


def dna(length: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGTacgtN") for _ in range(length))


def fasta_bytes(records: list[tuple[str, str]], width: int = 60, newline: str = "\n") -> bytes:
    lines = []
    for name, sequence in records:
        lines.append(f">{name} some description")
        lines += [sequence[i : i + width] for i in range(0, len(sequence), width)]
    return (newline.join(lines) + newline).encode()


THREE = [("chr1", dna(5000, 1)), ("chr2", dna(3000, 2)), ("chr3", dna(200, 3))]


def write_fasta(path: Path, content: bytes) -> str:
    """Write plain FASTA, or bgzip it when the name ends in .gz; no index."""
    if path.suffix == ".gz":
        plain = path.with_suffix("")
        plain.write_bytes(content)
        pysam.tabix_compress(str(plain), str(path), force=True)
        plain.unlink()
    else:
        path.write_bytes(content)
    return str(path)


def indexed(path: Path, content: bytes) -> str:
    write_fasta(path, content)
    pysam.faidx(str(path))
    return str(path)


def index_files(path: str) -> list[str]:
    return [f for f in (path + ".fai", path + ".gzi") if os.path.exists(f)]


def set_times(path: str, newer: bool) -> None:
    """The FASTA modified in the same instant as its index (as a fast script would), or later."""
    when = os.stat(path + ".fai").st_mtime_ns
    for name in index_files(path):
        os.utime(name, ns=(when, when))
    later = when + 2_000_000_000 if newer else when
    os.utime(path, ns=(later, later))


def assert_one_line_error(path: str, *fragments: str) -> None:
    """The region fetch, the --region run and the whole-record run all fail the same way."""
    attempts = {
        "fetch": lambda: IndexedFasta(path).fetch(Region("chr2", 10, 100)),
        "--region": lambda: list(Inputs(InputSpec(path, regions=["chr2:11-100"])).targets()),
        "records": lambda: list(Inputs(InputSpec(path)).targets()),
    }
    for how, attempt in attempts.items():
        with pytest.raises(DataError) as caught:
            attempt()
        message = str(caught.value)
        assert "\n" not in message, how
        assert message.startswith(f"{path}: "), (how, message)
        for fragment in fragments:
            assert fragment in message, (how, message)


STALE = ("is out of date", "re-index with 'samtools faidx")
FORMS = pytest.mark.parametrize("name", ["g.fa", "g.fa.gz"], ids=["plain", "bgzip"])
TIMES = pytest.mark.parametrize("newer", [False, True], ids=["same-time", "fasta-newer"])


@FORMS
@TIMES
def test_index_copied_from_another_file(tmp_path, name, newer):
    other = indexed(tmp_path / ("other" + name[1:]), fasta_bytes([("chr1", dna(4000, 9)), ("chr2", dna(3100, 8))]))
    path = indexed(tmp_path / name, fasta_bytes(THREE))
    for source in index_files(other):
        shutil.copy(source, path + source[len(other) :])
    set_times(path, newer)
    assert_one_line_error(path, *STALE)


@FORMS
@TIMES
def test_record_appended_after_indexing(tmp_path, name, newer):
    path = indexed(tmp_path / name, fasta_bytes(THREE))
    write_fasta(tmp_path / name, fasta_bytes(THREE + [("chr4", dna(100, 4))]))
    set_times(path, newer)
    assert_one_line_error(path, *STALE, "'chr4'")


@FORMS
@TIMES
def test_record_edited_to_another_length(tmp_path, name, newer):
    path = indexed(tmp_path / name, fasta_bytes(THREE))
    edited = [("chr1", THREE[0][1][:2000] + "ACGTACGTAC" + THREE[0][1][2000:])] + THREE[1:]
    write_fasta(tmp_path / name, fasta_bytes(edited))
    set_times(path, newer)
    assert_one_line_error(path, *STALE)


@TIMES
@pytest.mark.parametrize("cut", [10, 28, 500])
def test_truncated_bgzip_with_its_index(tmp_path, newer, cut):
    path = indexed(tmp_path / "g.fa.gz", fasta_bytes(THREE))
    content = Path(path).read_bytes()
    Path(path).write_bytes(content[:-cut])
    set_times(path, newer)
    assert_one_line_error(path, "truncated or corrupt compressed file")


def test_a_shifted_line_is_found_when_the_fasta_is_newer(tmp_path):
    # one base moved from line 2 to line 3: same size, same first and last lines; only the full
    # check (run because the FASTA is newer than its index) sees it
    sequence = dna(300, 5)
    path = indexed(tmp_path / "g.fa", fasta_bytes([("chr1", sequence), ("chr2", dna(3000, 2))]))
    lines = [sequence[i : i + 60] for i in range(0, 300, 60)]
    lines[1], lines[2] = lines[1][:-1], lines[1][-1] + lines[2]
    Path(path).write_text(">chr1 some description\n" + "\n".join(lines) + "\n" + fasta_bytes([("chr2", dna(3000, 2))]).decode())
    set_times(path, newer=True)
    assert_one_line_error(path, *STALE, "record 'chr1'")


def test_gzi_copied_from_another_file(tmp_path):
    path = indexed(tmp_path / "g.fa.gz", fasta_bytes(THREE))
    other = indexed(tmp_path / "other.fa.gz", fasta_bytes([("x", dna(70000, 7)), ("y", dna(90000, 6))]))
    shutil.copy(other + ".gzi", path + ".gzi")
    set_times(path, newer=True)
    assert_one_line_error(path, "g.fa.gz.gzi is out of date")


# random DNA compresses to blocks larger than the small file; a run of A to blocks of a few bytes
@pytest.mark.parametrize("other, problem", [(dna(160_000, 7), "past the end of the"),
                                            ("A" * 160_000, "no BGZF block at byte")], ids=["beyond", "inside"])
def test_gzi_of_a_larger_file_on_a_one_block_file(tmp_path, other, problem):
    # no region of the small file reaches the foreign blocks; the index is refused all the same
    path = indexed(tmp_path / "g.fa.gz", fasta_bytes([("chr1", dna(3000, 3)), ("chr2", dna(3000, 2))]))
    other = indexed(tmp_path / "other.fa.gz", fasta_bytes([("x", other)]))
    shutil.copy(other + ".gzi", path + ".gzi")
    set_times(path, newer=False)  # the index looks current: only the cheap check runs
    assert_one_line_error(path, "g.fa.gz.gzi is out of date", problem)


@FORMS
def test_touched_but_unchanged_fasta_is_accepted_silently(tmp_path, capfd, name):
    records = THREE + [(f"s{i}", dna(150, 100 + i)) for i in range(300)]  # many records: checked at once
    path = indexed(tmp_path / name, fasta_bytes(records))
    set_times(path, newer=True)
    with Inputs(InputSpec(path)) as inputs:
        got = {t.name: t.sequence for t in inputs.targets()}
    assert got == dict(records)
    with IndexedFasta(path) as fa:
        assert fa.fetch(Region("chr2", 10, 100)) == THREE[1][1][10:100]
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    "content",
    [
        fasta_bytes(THREE, newline="\r\n"),
        fasta_bytes(THREE)[:-1],  # no line end at the end of the file
        fasta_bytes(THREE).replace(b"\n>", b"\n\n\n>") + b"\n\n",  # blank lines between records
        b">chr1\nACGT  \nACGT  \nAC\n>chr2\nGGGG\n",  # trailing spaces on lines
        b"\n\n" + fasta_bytes(THREE),
    ],
    ids=["crlf", "no-final-newline", "blank-lines", "trailing-spaces", "leading-blank-lines"],
)
@TIMES
def test_unusual_but_valid_layouts_are_accepted(tmp_path, content, newer):
    path = indexed(tmp_path / "g.fa", content)
    set_times(path, newer)
    expected = {r.name: r.sequence for r in iter_fasta_records(path)}
    with Inputs(InputSpec(path)) as inputs:
        assert {t.name: t.sequence for t in inputs.targets()} == expected


@pytest.mark.parametrize("many", [False, True], ids=["few-records", "many-records"])
def test_appended_record_is_found_among_many_records(tmp_path, many):
    records = THREE + [(f"s{i}", dna(150, 100 + i)) for i in range(300 if many else 3)]
    path = indexed(tmp_path / "g.fa", fasta_bytes(records))
    with open(path, "ab") as fh:
        fh.write(fasta_bytes([("late", "ACGT")]))
    set_times(path, newer=False)
    assert_one_line_error(path, *STALE, "'late'")


def test_empty_record_left_out_of_the_index_is_not_dropped(tmp_path):
    path = indexed(tmp_path / "g.fa", b">chr1\nACGT\n>hollow\n>chr2\nGGGGCCCCAAAATTTTACGTACGTGGGGCCCCAAAATTTT\n")
    assert "hollow" not in Path(path + ".fai").read_text()  # samtools leaves it out
    with pytest.raises(DataError, match=rf"{path}: record 'hollow' has an empty sequence"):
        Inputs(InputSpec(path))
    with Inputs(InputSpec(path, regions=["chr2:11-20"])) as inputs:  # regions elsewhere still work
        assert [t.sequence for t in inputs.targets()] == ["AATTTTACGT"]


def test_duplicate_record_name_with_an_index(tmp_path):
    path = indexed(tmp_path / "g.fa", fasta_bytes(THREE + [("chr2", "ACGT" * 30)]))
    assert_one_line_error(path, "duplicate record name 'chr2'")


@TIMES
def test_control_byte_in_an_indexed_record(tmp_path, newer):
    content = bytearray(fasta_bytes(THREE))
    start = content.index(b">chr2")
    at = content.index(b"\n", start) + 1 + 5  # chr2 base 6
    path = indexed(tmp_path / "g.fa", bytes(content))
    content[at] = 0x01  # htslib would skip it and shift every base after it
    Path(path).write_bytes(bytes(content))
    set_times(path, newer)
    assert_one_line_error(path, "record 'chr2': position 6", "byte 0x01")


# --- bytes that are not text in a sequence ---------------------------------------------------


@pytest.mark.parametrize("byte", [0x00, 0x01, 0x7F, 0x0B, 0xC3], ids=["nul", "soh", "del", "vt", "non-ascii"])
@pytest.mark.parametrize("form", ["plain", "gzip", "bgzip", "stdin"])
def test_control_byte_in_a_sequence_names_file_record_position_and_byte(tmp_path, monkeypatch, byte, form):
    sequence = bytearray(dna(6000, 11).encode())
    sequence[4320] = byte  # base 4,321: line 4 + 4320 // 60 of the file
    content = b">a\nACGT\n>b desc\n" + b"\n".join(bytes(sequence[i : i + 60]) for i in range(0, 6000, 60)) + b"\n"
    path = tmp_path / "c.fa"
    if form == "gzip":
        path.write_bytes(gzip.compress(content))
    elif form == "bgzip":
        write_fasta(tmp_path / "c.fa.gz", content)
        path = tmp_path / "c.fa.gz"
    else:
        path.write_bytes(content)
    source = str(path)
    if form == "stdin":
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(content)))
        source, path = "stdin", "-"
    with pytest.raises(DataError) as caught:
        list(iter_fasta_records(str(path)))
    message = str(caught.value)
    assert message.startswith(f"{source}: ") and "\n" not in message
    assert "record 'b'" in message and "position 4,321 (line 76)" in message
    assert f"byte 0x{byte:02x}" in message


def test_a_space_inside_a_line_is_left_to_encode(tmp_path):
    path = write(tmp_path / "s.fa", ">a\nAC GT\n")
    assert [r.sequence for r in iter_fasta_records(path)] == ["AC GT"]


def test_records_before_a_control_byte_are_yielded(tmp_path):
    path = tmp_path / "late.fa"
    path.write_bytes(b">a\nACGT\n>b\nAC\x00GT\n")
    records = iter_fasta_records(str(path))
    assert next(records).sequence == "ACGT"
    with pytest.raises(DataError, match=r"record 'b', position 3 \(line 4\): byte 0x00"):
        next(records)


@pytest.mark.parametrize("use_index", [False, True], ids=["streamed", "indexed"])
def test_encode_errors_name_the_file_and_the_record(tmp_path, use_index):
    content = fasta_bytes([("a", "ACGT" * 30), ("b", "ACGTJACGT")])
    path = indexed(tmp_path / "j.fa", content) if use_index else write_fasta(tmp_path / "j.fa", content)
    with Inputs(InputSpec(path)) as inputs, pytest.raises(DataError) as caught:
        targets = inputs.targets()
        next(targets).model_ids("+")
        # an indexed record is checked as it is first read, before any window; a streamed one when encoded
        next(targets).model_ids("-")
    assert str(caught.value) == f"{path}: record 'b': position 5: 'J' is not a DNA letter (ACGT, N or IUPAC)"


def test_encode_errors_name_the_region(tmp_path):
    path = indexed(tmp_path / "j.fa", fasta_bytes([("a", "ACGT" * 30 + "J" + "ACGT")]))
    with Inputs(InputSpec(path, regions=["a:111-124"])) as inputs:
        with pytest.raises(DataError, match=rf"^{path}: region 'a:111-124': position 11: 'J'"):
            list(inputs.targets())


# --- truncated compressed files --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gzip", "bgzip"])
@pytest.mark.parametrize("cut", [5, 28, 700])
def test_truncated_compressed_stream_is_one_line(tmp_path, kind, cut):
    content = (MINI_GZIP if kind == "gzip" else MINI_BGZIP).read_bytes()
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(content[:-cut])
    if kind == "bgzip" and cut == 28:
        assert [r.name for r in iter_fasta_records(str(path))] == NAMES  # only the empty end block
        return
    with pytest.raises(DataError, match=rf"^{path}: truncated or corrupt compressed file \(") as caught:
        list(iter_fasta_records(str(path)))
    assert "\n" not in str(caught.value)


def _run_quietly(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)


def test_htslib_never_writes_to_stderr(tmp_path):
    """A bgzip file corrupt inside (its end block intact), without an index: htslib fails to
    build one and would print its own messages; the user sees our one line only."""
    content = bytearray(MINI_BGZIP.read_bytes())
    content[900:960] = b"\x00" * 60
    path = tmp_path / "bad.fa.gz"
    path.write_bytes(bytes(content))
    script = (
        "from mxdna_cli.io.faidx import IndexedFasta\n"
        "from mxdna_cli.errors import DataError\n"
        "try:\n"
        f"    IndexedFasta({str(path)!r})\n"
        "except DataError as e:\n"
        "    print('DataError', e)\n"
    )
    result = _run_quietly(script)
    assert result.stderr == ""
    assert result.stdout.startswith(f"DataError {path}: ") and len(result.stdout.splitlines()) == 1


@TIMES
def test_corrupt_bgzip_block_inside_a_region_is_one_line_and_quiet(tmp_path, newer):
    """A damaged block in the middle of a record, the index intact: only the fetch meets it.
    htslib prints its own error and pysam raises ValueError; the user must see one line."""
    path = indexed(tmp_path / "big.fa.gz", fasta_bytes([("big", dna(200_000, 12)), ("small", "ACGT")]))
    gzi = Path(path + ".gzi").read_bytes()
    coffset, uoffset = struct.unpack_from("<QQ", gzi, 8)  # the second block
    content = bytearray(Path(path).read_bytes())
    content[coffset + 40 : coffset + 80] = b"\xff" * 40
    Path(path).write_bytes(bytes(content))
    set_times(path, newer)
    script = (
        "from mxdna_cli.io.faidx import IndexedFasta; from mxdna_cli.io.fasta import Region\n"
        "from mxdna_cli.errors import DataError\n"
        "try:\n"
        f"    IndexedFasta({path!r}).fetch(Region('big', {uoffset}, {uoffset + 5000}))\n"
        "except DataError as e:\n"
        "    print('DataError', e)\n"
    )
    result = _run_quietly(script)
    assert result.stderr == ""
    assert result.stdout.startswith(f"DataError {path}: ") and len(result.stdout.splitlines()) == 1
    assert "corrupt" in result.stdout


def test_cli_truncated_bgzip_with_index_is_one_line(tmp_path):
    path = indexed(tmp_path / "g.fa.gz", fasta_bytes(THREE))
    Path(path).write_bytes(Path(path).read_bytes()[:-100])
    mxdna = Path(sys.executable).parent / "mxdna"
    for extra in ([], ["-r", "chr2:1-100"]):
        result = subprocess.run(
            [str(mxdna), "embed", path, *extra, "-m", str(tmp_path / "no-model"), "-q"],
            capture_output=True, text=True, cwd=REPO,
        )
        assert result.returncode == 1
        assert result.stderr == f"mxdna: error: {path}: truncated or corrupt compressed file " \
            "(no BGZF end-of-file block: cut short?)\n"


# --- named pipes and process substitution ----------------------------------------------------


@contextlib.contextmanager
def fifo_feeding(path: Path, content: bytes) -> Iterator[None]:
    """A named pipe at `path` that a thread writes `content` into, once.

    Later openings (a reader that sniffs the pipe and opens it again: the old bug) find it
    empty instead of waiting forever; a writer still waiting at the end is released.
    """
    os.mkfifo(path)
    stop = threading.Event()

    def writer() -> None:
        first = True
        while not stop.is_set():
            try:
                with open(path, "wb") as fh:  # blocks until a reader opens the pipe
                    fh.write(content if first else b"")
            except BrokenPipeError:
                pass
            first = False
            time.sleep(0.05)  # let that reader close before the next (empty) session

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        release = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        thread.join(timeout=10)
        os.close(release)


@pytest.mark.parametrize("source", [MINI, MINI_GZIP, MINI_BGZIP], ids=["plain", "gzip", "bgzip"])
def test_named_pipe_is_read_once_as_a_stream(tmp_path, source):
    fifo = tmp_path / "pipe.fa"
    with fifo_feeding(fifo, source.read_bytes()):
        records = list(iter_fasta_records(str(fifo)))
    assert {r.name: r.sequence for r in records} == EXPECTED


def test_named_pipe_through_inputs_ignores_an_index_next_to_it(tmp_path):
    fifo = tmp_path / "pipe.fa"
    shutil.copy(DATA / "mini.fa.fai", tmp_path / "pipe.fa.fai")  # must not be used for a pipe
    with fifo_feeding(fifo, MINI_GZIP.read_bytes()):
        with Inputs(InputSpec(str(fifo))) as inputs:
            assert not inputs.known
            got = {t.name: t.sequence for t in inputs.targets()}
    assert got == EXPECTED


@pytest.mark.parametrize("option", ["region", "bed"])
def test_regions_on_a_named_pipe_are_a_usage_error(tmp_path, option):
    fifo = tmp_path / "pipe.fa"
    with fifo_feeding(fifo, MINI.read_bytes()):
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        if option == "region":
            spec = InputSpec(str(fifo), regions=["CHROMOSOME_I:1-10"])
        else:
            spec = InputSpec(str(fifo), bed=str(DATA / "regions.bed"))
        with pytest.raises(UsageError, match=r"need an indexed FASTA file, not a pipe"):
            Inputs(spec)


def test_bed_from_a_named_pipe(tmp_path):
    from mxdna_cli.io.bed import read_bed

    fifo = tmp_path / "regions.bed"
    with fifo_feeding(fifo, gzip.compress((DATA / "regions.bed").read_bytes())):
        assert read_bed(str(fifo)) == read_bed(str(DATA / "regions.bed"))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("source", [MINI, MINI_GZIP], ids=["plain", "gzip"])
def test_process_substitution(source):
    script = _stdin_digest_script().replace("it('-')", "it(__import__('sys').argv[1])")
    result = subprocess.run(
        ["bash", "-c", f"{sys.executable} -c \"{script}\" <(cat {source})"],
        capture_output=True, cwd=REPO, text=True,
    )
    assert result.stderr == ""
    assert result.stdout.splitlines() == _expected_digest_lines()
