"""Tests for mxdna_cli.io.writers: atomic outputs, TSV/BED/NPY/bigWig writers and sidecars."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyBigWig
import pytest

from mxdna_cli.errors import UsageError
from mxdna_cli.io.bigwig import BigWigWriter
from mxdna_cli.io.npy import NpyWriter
from mxdna_cli.io.writers import (
    Bed6Writer,
    Bed12Writer,
    TsvWriter,
    atomic_output,
    bed12_blocks,
    metadata_header_lines,
)

REPO = Path(__file__).resolve().parents[2]


class Boom(Exception):
    pass


def leftovers(folder: Path) -> list[str]:
    """Temporary files a writer may have left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- atomic_output ---------------------------------------------------------------------------


def test_atomic_output_writes_on_success(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_output(str(path)) as fh:
        fh.write("hello\n")
        assert not path.exists()  # nothing visible until the block succeeds
    assert path.read_text() == "hello\n"
    assert leftovers(tmp_path) == []
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_output_failure_leaves_no_file(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(Boom):
        with atomic_output(str(path)) as fh:
            fh.write("partial")
            raise Boom()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("previous\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(str(path)) as fh:
            fh.write("new")
            raise KeyboardInterrupt()
    assert path.read_text() == "previous\n"
    assert leftovers(tmp_path) == []


def test_atomic_output_replaces_previous_file_on_success(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with atomic_output(str(path), "wb") as fh:
        fh.write(b"\x00new")
    assert path.read_bytes() == b"\x00new"


def test_atomic_output_stdout(capsys):
    with atomic_output("-") as fh:
        fh.write("to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"
    assert not sys.stdout.closed


def test_atomic_output_binary_stdout_is_refused():
    with pytest.raises(UsageError, match="stdout"):
        with atomic_output("-", "wb"):
            pass


def test_atomic_output_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        with atomic_output(str(tmp_path / "no" / "out.txt")):
            pass


def test_atomic_output_onto_a_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="is a folder"):
        with atomic_output(str(tmp_path)):
            pass


# --- metadata --------------------------------------------------------------------------------


def test_metadata_header_lines():
    meta = {"model": "mxdna-small", "window": 1000, "pool": None, "strand": ["+", "-"],
            "note": "two\nlines", "scale": np.float32(0.5)}
    assert metadata_header_lines(meta) == [
        "#model=mxdna-small", "#window=1000", "#pool=null", '#strand=["+", "-"]',
        '#note="two\\nlines"', "#scale=0.5",
    ]


@pytest.mark.parametrize("key", ["", "a=b", "has space", "tab\tkey"])
def test_metadata_bad_keys(key):
    with pytest.raises(ValueError, match="metadata key"):
        metadata_header_lines({key: 1})


# --- TSV -------------------------------------------------------------------------------------


def test_tsv_writer(tmp_path):
    path = tmp_path / "out.tsv"
    with TsvWriter(str(path), ["name", "n_frac", "score"], {"window": 512}) as tsv:
        tsv.write_row(["seq1", 0.25, np.float32(0.1)])
        tsv.write_rows([["seq2", 0, None]])
    assert path.read_text().splitlines() == [
        "#window=512", "name\tn_frac\tscore", "seq1\t0.25\t0.1", "seq2\t0\tNA",
    ]


def test_tsv_writer_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "out.tsv"
    path.write_text("previous\n")
    with pytest.raises(ValueError, match="2 values for 3 columns"):
        with TsvWriter(str(path), ["a", "b", "c"]) as tsv:
            tsv.write_row([1, 2, 3])
            tsv.write_row([1, 2])
    assert path.read_text() == "previous\n"
    assert leftovers(tmp_path) == []


def test_tsv_writer_refuses_tabs_in_values(tmp_path):
    with pytest.raises(ValueError, match="tab or newline"):
        with TsvWriter(str(tmp_path / "x.tsv"), ["a"]) as tsv:
            tsv.write_row(["a\tb"])
    assert list(tmp_path.iterdir()) == []


def test_tsv_writer_to_stdout_in_a_real_process():
    script = (
        "from mxdna_cli.io.writers import TsvWriter\n"
        "with TsvWriter('-', ['a', 'b'], {'k': 'v'}) as t:\n    t.write_row([1, 2.5])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, cwd=REPO, check=True
    )
    assert result.stdout.decode() == "#k=v\na\tb\n1\t2.5\n"


# --- BED -------------------------------------------------------------------------------------


def test_bed6_writer(tmp_path):
    path = tmp_path / "out.bed"
    with Bed6Writer(str(path), {"model": "m"}) as bed:
        bed.write("chr1", 10, 20, "r1", 0.75, "-")
        bed.write("chr1", 30, 40)
    assert path.read_text().splitlines() == [
        "#model=m", "chr1\t10\t20\tr1\t0.75\t-", "chr1\t30\t40\t.\t0\t.",
    ]


@pytest.mark.parametrize("args", [("chr1", 5, 5), ("chr1", -1, 5), ("chr1", 1, 5, "n", 0, "x")])
def test_bed6_writer_rejects_bad_lines(tmp_path, args):
    with pytest.raises(ValueError):
        with Bed6Writer(str(tmp_path / "x.bed")) as bed:
            bed.write(*args)
    assert list(tmp_path.iterdir()) == []


def test_bed12_block_maths():
    blocks = [(100, 110), (150, 160), (190, 200)]
    assert bed12_blocks(100, 200, blocks) == (3, "10,10,10", "0,50,90")
    assert bed12_blocks(5, 9, [(5, 9)]) == (1, "4", "0")
    # touching blocks (consecutive tokens) are allowed
    assert bed12_blocks(0, 6, [(0, 2), (2, 3), (3, 6)]) == (3, "2,1,3", "0,2,3")


@pytest.mark.parametrize(
    "blocks, message",
    [
        ([], "at least one block"),
        ([(100, 110), (105, 200)], "overlaps"),
        ([(150, 200), (100, 110)], "overlaps or is out of order"),
        ([(100, 100), (100, 200)], "empty"),
        ([(101, 200)], "span exactly 100-200"),
        ([(100, 199)], "span exactly 100-200"),
    ],
)
def test_bed12_block_errors(blocks, message):
    with pytest.raises(ValueError, match=message):
        bed12_blocks(100, 200, blocks)


def test_bed12_writer_line(tmp_path):
    path = tmp_path / "tokens.bed"
    with Bed12Writer(str(path)) as bed:
        bed.write("chrX", 1000, 1012, [(1000, 1003), (1003, 1008), (1010, 1012)], "seq1", 0, "+")
    assert path.read_text() == "chrX\t1000\t1012\tseq1\t0\t+\t1000\t1012\t0\t3\t3,5,2\t0,3,10\n"


def test_bed12_blocks_round_trip(tmp_path):
    # read the line back as a BED12 reader would: chromStart + blockStarts, blockSizes
    blocks = [(5000, 5003), (5003, 5010), (5100, 5101), (5200, 5260)]
    path = tmp_path / "tokens.bed"
    with Bed12Writer(str(path)) as bed:
        bed.write("22:1-10", 5000, 5260, blocks, "s", 1, "-")
    fields = path.read_text().rstrip("\n").split("\t")
    chrom_start, count = int(fields[1]), int(fields[9])
    sizes = [int(x) for x in fields[10].split(",")]
    starts = [int(x) for x in fields[11].split(",")]
    assert fields[0] == "22:1-10" and count == len(blocks)
    assert [(chrom_start + s, chrom_start + s + n) for s, n in zip(starts, sizes)] == blocks
    assert fields[6:8] == ["5000", "5260"]  # thickStart/End = chromStart/End


# --- NPY -------------------------------------------------------------------------------------


def test_npy_writer_rows_index_and_sidecar(tmp_path):
    path = tmp_path / "emb.npy"
    data = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    with NpyWriter(str(path), 4, 3, np.float16, ["name", "start"], {"pool": "mean"}) as npy:
        npy.write_rows(2, data[2:])  # rows in any order
        npy.write_rows(0, data[:2])
        for i in range(4):
            npy.write_index_row([f"s{i}", i * 10])
        assert not path.exists()  # nothing visible before commit
    matrix = np.load(path)
    assert matrix.dtype == np.float16 and matrix.shape == (4, 3)
    np.testing.assert_array_equal(matrix, data.astype(np.float16))
    assert (tmp_path / "emb.index.tsv").read_text().splitlines() == [
        "#pool=mean", "name\tstart", "s0\t0", "s1\t10", "s2\t20", "s3\t30",
    ]
    meta = json.loads((tmp_path / "emb.npy.json").read_text())
    assert meta == {"pool": "mean", "shape": [4, 3], "dtype": "float16", "index": "emb.index.tsv"}
    assert leftovers(tmp_path) == []


def test_npy_writer_single_row_and_no_index(tmp_path):
    path = tmp_path / "one.npy"
    with NpyWriter(str(path), 1, 2, "float32") as npy:
        npy.write_rows(0, np.array([1.5, 2.5]))
    np.testing.assert_array_equal(np.load(path), [[1.5, 2.5]])
    assert not (tmp_path / "one.index.tsv").exists()


def test_npy_writer_failure_leaves_nothing_and_keeps_previous(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, np.zeros((1, 1)))
    previous = path.read_bytes()
    with pytest.raises(Boom):
        with NpyWriter(str(path), 2, 2, "float32", ["name"]) as npy:
            npy.write_rows(0, np.ones((1, 2)))
            npy.write_index_row(["a"])
            raise Boom()
    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy"]


@pytest.mark.parametrize(
    "rows_written, index_rows, message",
    [(1, 2, "1 rows never written"), (2, 1, "1 index rows for 2")],
)
def test_npy_writer_refuses_incomplete_output(tmp_path, rows_written, index_rows, message):
    path = tmp_path / "emb.npy"
    with pytest.raises(ValueError, match=message):
        with NpyWriter(str(path), 2, 2, "float32", ["name"]) as npy:
            npy.write_rows(0, np.ones((rows_written, 2)))
            for i in range(index_rows):
                npy.write_index_row([f"r{i}"])
    assert list(tmp_path.iterdir()) == []


def test_npy_writer_rejects_rows_out_of_bounds(tmp_path):
    with NpyWriter(str(tmp_path / "e.npy"), 2, 2, "float32") as npy:
        with pytest.raises(ValueError, match="outside"):
            npy.write_rows(1, np.ones((2, 2)))
        with pytest.raises(ValueError, match="columns"):
            npy.write_rows(0, np.ones((1, 3)))
        npy.write_rows(0, np.ones((2, 2)))


@pytest.mark.parametrize("name", ["-", "emb.npz"])
def test_npy_writer_refuses_stdout_and_other_suffixes(tmp_path, name):
    target = name if name == "-" else str(tmp_path / name)
    with pytest.raises(UsageError):
        NpyWriter(target, 1, 1, "float32")


# --- bigWig ----------------------------------------------------------------------------------

SIZES = [("chrB", 1000), ("chrA", 500)]  # header order, not alphabetical


def test_bigwig_writer_reads_back(tmp_path):
    path = tmp_path / "track.bw"
    values = np.linspace(0, 1, 300, dtype=np.float32)
    with BigWigWriter(str(path), SIZES, {"model": "m"}) as bw:
        bw.add("chrB", 0, values[:100])
        bw.add("chrB", 100, values[100:])  # contiguous: merged into one batch
        bw.add("chrB", 500, np.array([2.0, 3.0]), span=10)
        bw.add("chrA", 10, np.array([7.0]))
        assert not path.exists()
    reader = pyBigWig.open(str(path))
    try:
        assert reader.chroms() == {"chrB": 1000, "chrA": 500}
        np.testing.assert_allclose(reader.values("chrB", 0, 300), values, rtol=1e-6)
        assert reader.values("chrB", 505, 515) == [2.0] * 5 + [3.0] * 5
        assert np.isnan(reader.values("chrB", 300, 301)[0])  # no data between entries
        assert reader.values("chrA", 9, 12)[1] == 7.0
    finally:
        reader.close()
    assert json.loads((tmp_path / "track.bw.json").read_text()) == {"model": "m"}
    assert leftovers(tmp_path) == []


def test_bigwig_writer_large_batches_are_split_and_contiguous(tmp_path, monkeypatch):
    from mxdna_cli.io import bigwig

    monkeypatch.setattr(bigwig, "BIGWIG_BATCH_VALUES", 64)  # force several addEntries calls
    path = tmp_path / "track.bw"
    values = np.arange(1000, dtype=np.float64)
    with BigWigWriter(str(path), SIZES) as bw:
        for start in range(0, 1000, 50):
            bw.add("chrB", start, values[start : start + 50])
    reader = pyBigWig.open(str(path))
    try:
        np.testing.assert_array_equal(reader.values("chrB", 0, 1000), values)
    finally:
        reader.close()


def test_bigwig_out_of_order_chromosome_is_refused(tmp_path):
    path = tmp_path / "track.bw"
    with pytest.raises(ValueError, match="header order"):
        with BigWigWriter(str(path), SIZES) as bw:
            bw.add("chrA", 0, np.ones(5))
            bw.add("chrB", 0, np.ones(5))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "entries, message",
    [
        ([("chrB", 10, 5), ("chrB", 12, 5)], "sorted and not overlap"),
        ([("chrB", 998, 5)], "past the chromosome end"),
        ([("chrZ", 0, 5)], "not in the bigWig header"),
    ],
)
def test_bigwig_bad_entries_are_refused(tmp_path, entries, message):
    path = tmp_path / "track.bw"
    path.write_bytes(b"previous")
    with pytest.raises(ValueError, match=message):
        with BigWigWriter(str(path), SIZES) as bw:
            for chrom, start, n in entries:
                bw.add(chrom, start, np.ones(n))
    assert path.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_bigwig_nan_is_refused(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        with BigWigWriter(str(tmp_path / "t.bw"), SIZES) as bw:
            bw.add("chrB", 0, np.array([1.0, np.nan]))


def test_bigwig_refuses_stdout():
    with pytest.raises(UsageError, match="stdout"):
        BigWigWriter("-", SIZES)
