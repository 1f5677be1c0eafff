"""Labelled DNA sequences for training and evaluating classifiers (`mxdna finetune`, `mxdna evaluate`).

Each input is `FILE` or `LABEL=FILE`; the format comes from the file name (`.gz` allowed):

* CSV/TSV (`.csv`, `.tsv`, `.txt`): a header naming a `sequence` and a `label` column (the GUE
  format, `sequence,label`); other columns are ignored. `.csv` is comma-separated, `.tsv` tab-
  separated, `.txt` is sniffed from the header. `LABEL=` is not allowed here.
* FASTA (`.fa`, `.fasta`, `.fna`, `.fas`): one file per class. Every record gets the file's label:
  `LABEL=` if given, else the file name without its extensions (`promoter.fa.gz` -> `promoter`).
* BED (`.bed`) with `genome` (an indexed or indexable FASTA): the label is `LABEL=` if given (one BED
  per class), else column 4 (the BED name) of each line. A region on the `-` strand (column 6) is
  read reverse-complemented; a region without strand is read as `+`.

Sequences may contain N and IUPAC codes (read as [UNK]); any other letter is a DataError naming the
file, line or record and the position. Every example keeps where it came from (file:line or record).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mxdna_cli import sequence as vocab
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.fasta import FASTA_SUFFIXES
from mxdna_cli.io.bed import is_skipped, read_bed
from mxdna_cli.io.faidx import IndexedFasta
from mxdna_cli.io.fasta import check_input_file, open_text_input, raw_entries

TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
BED_SUFFIXES = (".bed",)
COMPRESSED_SUFFIXES = (".gz", ".bgz")

@dataclass
class LabeledExamples:
    """Sequences (text), their labels (strings) and where each came from (file:line or record)."""

    sequences: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def extend(self, other: LabeledExamples) -> None:
        self.sequences += other.sequences
        self.labels += other.labels
        self.sources += other.sources

    def __len__(self) -> int:
        return len(self.sequences)


def parse_input_spec(spec: str) -> tuple[str | None, str]:
    """`FILE` or `LABEL=FILE` -> (label or None, path). An existing file named with '=' is a file."""
    if os.path.exists(spec) or "=" not in spec:
        return None, spec
    label, path = spec.split("=", 1)
    if not label.strip():
        raise UsageError(f"input '{spec}': empty label before '='; use LABEL=FILE")
    return label.strip(), path


def input_format(path: str) -> str:
    """'table', 'fasta' or 'bed', from the file name."""
    name = Path(path).name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    if name.endswith(FASTA_SUFFIXES):
        return "fasta"
    if name.endswith(BED_SUFFIXES):
        return "bed"
    known = ", ".join(TABLE_SUFFIXES + FASTA_SUFFIXES + BED_SUFFIXES)
    raise UsageError(f"{path}: unknown input format (file name must end in {known}, optionally .gz)")


def file_stem(path: str) -> str:
    """`data/promoter.fa.gz` -> `promoter`."""
    name = Path(path).name
    lowered = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lowered.endswith(suffix):
            name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
    for suffix in TABLE_SUFFIXES + FASTA_SUFFIXES + BED_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_sequence(sequence: str, where: str) -> str:
    if not sequence:
        raise DataError(f"{where}: empty sequence")
    vocab.encode(sequence, where)  # DataError naming `where` and the position of a non-DNA letter
    return sequence


def read_table(path: str) -> LabeledExamples:
    """A CSV/TSV file with `sequence` and `label` columns (header required, any column order)."""
    check_input_file(path)
    lowered = Path(path).name.lower()
    examples = LabeledExamples()
    try:
        with open_text_input(path) as handle:
            lines = enumerate(handle, start=1)
            header_number, header = next(((n, line) for n, line in lines if line.strip()), (0, ""))
            if not header:
                raise DataError(f"{path}: empty file, expected a header with 'sequence' and 'label' columns")
            if ".tsv" in lowered:
                delimiter = "\t"
            elif ".csv" in lowered:
                delimiter = ","
            else:
                delimiter = "\t" if "\t" in header else ","
            columns = [c.strip().lower() for c in next(csv.reader([header], delimiter=delimiter))]
            if "sequence" not in columns or "label" not in columns:
                raise DataError(
                    f"{path}:{header_number}: expected a header with 'sequence' and 'label' columns, "
                    f"found {header.strip()[:60]!r}"
                )
            seq_col, label_col = columns.index("sequence"), columns.index("label")
            for number, line in lines:
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                row = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter))
                if len(row) <= max(seq_col, label_col):
                    raise DataError(f"{where}: expected {len(columns)} columns, got {len(row)}")
                sequence, label = row[seq_col].strip(), row[label_col].strip()
                if not label:
                    raise DataError(f"{where}: empty label")
                examples.sequences.append(_check_sequence(sequence, where))
                examples.labels.append(label)
                examples.sources.append(where)
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read as CSV/TSV text ({error})") from None
    if not examples.sequences:
        raise DataError(f"{path}: no sequences (only a header)")
    return examples


def read_fasta_class(path: str, label: str | None = None) -> LabeledExamples:
    """Every record of a FASTA file (plain or gzip), all with one label (default: the file name's stem).

    Unlike a genome, a labelled set may repeat record names (CNNProm's headers are gene
    descriptions), so names are not required to be unique here.
    """
    check_input_file(path)
    label = label if label is not None else file_stem(path)
    examples = LabeledExamples()
    for number, (name, sequence, quality) in enumerate(raw_entries(path), start=1):
        where = f"{path}: record {number} '{name}'"
        if quality is not None:
            raise DataError(f"{where} is FASTQ; FASTA needed")
        examples.sequences.append(_check_sequence(sequence, where))
        examples.labels.append(label)
        examples.sources.append(where)
    if not examples.sequences:
        raise DataError(f"{path}: no FASTA records found")
    return examples


def _bed_line_numbers(path: str) -> list[int]:
    """Line number of each region of a BED file, in the order `read_bed` returns them."""
    with open_text_input(path) as handle:
        return [number for number, line in enumerate(handle, start=1) if not is_skipped(line)]


def read_bed_labeled(path: str, genome: str | None, label: str | None = None) -> LabeledExamples:
    """BED regions fetched from `genome` ('-' strand reverse-complemented); label: given or column 4."""
    if genome is None:
        raise UsageError(f"{path}: a BED input needs a genome FASTA to read the sequences from (--genome)")
    regions = read_bed(path)
    numbers = _bed_line_numbers(path)
    examples = LabeledExamples()
    with IndexedFasta(genome) as fasta:
        for region, number in zip(regions, numbers):
            where = f"{path}:{number}"
            region_label = label if label is not None else region.name
            if not region_label:
                raise DataError(
                    f"{where}: no label: column 4 (name) holds the class label, or give the file as LABEL={path}"
                )
            try:
                sequence = fasta.fetch(region)
            except DataError as error:
                raise DataError(f"{where}: {error}") from None
            if region.strand == "-":
                sequence = vocab.reverse_complement(sequence)
            examples.sequences.append(_check_sequence(sequence, where))
            examples.labels.append(region_label)
            examples.sources.append(where)
    return examples


def read_labeled(specs: Sequence[str], genome: str | None = None) -> LabeledExamples:
    """Read and concatenate inputs given as FILE or LABEL=FILE (see the module docstring)."""
    examples = LabeledExamples()
    for spec in specs:
        label, path = parse_input_spec(spec)
        check_input_file(path)
        kind = input_format(path)
        if kind == "table":
            if label is not None:
                raise UsageError(f"input '{spec}': a CSV/TSV file has its own label column; give it without LABEL=")
            examples.extend(read_table(path))
        elif kind == "fasta":
            examples.extend(read_fasta_class(path, label))
        else:
            examples.extend(read_bed_labeled(path, genome, label))
    return examples

