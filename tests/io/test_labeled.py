"""Labelled-set readers: CSV/TSV tables, LABEL=FASTA per class, BED + genome; refusals name file and line."""

import shutil
from pathlib import Path

import pytest

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.labeled import file_stem, input_format, parse_input_spec, read_labeled

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "promoter"


def as_pairs(examples):
    return sorted((s.upper(), label) for s, label in zip(examples.sequences, examples.labels))


@pytest.fixture()
def genome(tmp_path):
    """The fixture genome copied to a scratch folder (reading it builds a .fai index beside it)."""
    path = tmp_path / "genome.fa"
    shutil.copy(FIXTURES / "genome.fa", path)
    return str(path)


def test_each_input_format_reads_the_same_sequences(genome):
    table = read_labeled([str(FIXTURES / "regions.csv")])
    fasta = read_labeled([str(FIXTURES / "promoter.fa"), str(FIXTURES / "nonpromoter.fa")])
    bed = read_labeled([str(FIXTURES / "regions.bed")], genome=genome)
    assert len(table) == 6
    assert as_pairs(table) == as_pairs(fasta) == as_pairs(bed)
    # '-' strand regions are reverse-complemented: the third BED region is on '-'
    assert bed.sequences[2].upper() == table.sequences[2].upper()
    assert bed.sources[0].endswith("regions.bed:2")  # line 1 is a comment


def test_label_given_on_the_command_line_overrides_file_stem_and_bed_names(tmp_path, genome):
    lines = (FIXTURES / "regions.bed").read_text().splitlines()[1:]
    promoters = [line for line in lines if "\tpromoter\t" in line]
    plain = tmp_path / "unnamed.bed"
    plain.write_text("".join("\t".join(line.split("\t")[:3] + [".", "0", line.split("\t")[5]]) + "\n" for line in promoters))
    by_file = read_labeled([f"promoter={plain}"], genome=genome)
    assert by_file.labels == ["promoter"] * 3
    expected = [s for s, label in as_pairs(read_labeled([str(FIXTURES / "regions.csv")])) if label == "promoter"]
    assert sorted(s.upper() for s in by_file.sequences) == expected
    renamed = read_labeled([f"TATA={FIXTURES / 'promoter.fa'}"])
    assert set(renamed.labels) == {"TATA"}
    with pytest.raises(DataError, match="column 4"):
        read_labeled([str(plain)], genome=genome)
    with pytest.raises(UsageError, match="genome"):
        read_labeled([str(FIXTURES / "regions.bed")])
    with pytest.raises(UsageError, match="label column"):
        read_labeled([f"x={FIXTURES / 'regions.csv'}"])


def test_gue_csv_is_read():
    path = Path(__file__).resolve().parents[3] / "shared/data/labeled/dnabert2_sample_data/train.csv"
    if not path.is_file():
        pytest.skip("shared data not available")
    examples = read_labeled([str(path)])
    assert len(examples) == 15 and set(examples.labels) <= {"0", "1"}


@pytest.mark.parametrize("bad", ["ACGTACGUAC", "MKVLEFPQ", "ACGT ACGT", "ACGT-ACGT"])
def test_wrong_alphabet_is_a_data_error_naming_file_and_line(tmp_path, bad):
    path = tmp_path / "bad.csv"
    path.write_text(f"sequence,label\nACGTACGTAC,1\n{bad},0\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: position \d+"):
        read_labeled([str(path)])
    fasta = tmp_path / "bad.fa"
    fasta.write_text(f">ok\nACGT\n>wrong\n{bad}\n")
    with pytest.raises(DataError, match=r"record 2 'wrong'"):
        read_labeled([str(fasta)])


def test_missing_header_and_empty_sequence_are_data_errors(tmp_path):
    path = tmp_path / "noheader.csv"
    path.write_text("ACGT,1\nACGA,0\n")
    with pytest.raises(DataError, match="header"):
        read_labeled([str(path)])
    path.write_text("sequence,label\n,1\n")
    with pytest.raises(DataError, match="empty sequence"):
        read_labeled([str(path)])



def test_input_specs_formats_and_stems(tmp_path):
    assert parse_input_spec("promoter=a.fa") == ("promoter", "a.fa")
    assert parse_input_spec("a.fa") == (None, "a.fa")
    odd = tmp_path / "x=y.fa"
    odd.write_text(">r\nACGT\n")
    assert parse_input_spec(str(odd)) == (None, str(odd))  # an existing file named with '=' is a file
    with pytest.raises(UsageError, match="empty label"):
        parse_input_spec("=a.fa")
    assert [input_format(p) for p in ("a.TSV", "b.csv.gz", "c.fa.bgz", "d.bed")] == ["table", "table", "fasta", "bed"]
    with pytest.raises(UsageError, match="unknown input format"):
        input_format("reads.bam")
    assert file_stem("data/promoter.fa.gz") == "promoter" and file_stem("x/Set.TSV") == "Set"
