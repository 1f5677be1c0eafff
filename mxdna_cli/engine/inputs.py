"""The targets of a run: whole FASTA records or regions (`--region`, `--bed`), read on one strand
or both, with their sequences.

Coordinates. A *target* is what an output row (or a group of rows) describes: a whole FASTA record,
a `--region` or a BED line, in forward genome coordinates (0-based half-open). The model reads a
target on one strand or on both; the reverse strand is the reverse complement. What the model
returns is in *model space* (0 = the first base the model read) and is mapped back to forward
genome coordinates only when written: model [a, b) is genome [start + a, start + b) on '+' and
[end - b, end - a) on '-'.
"""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from mxdna_cli import distributed
from mxdna_cli import sequence as dna
from mxdna_cli.defaults import STRANDS
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.bed import parse_region, read_bed
from mxdna_cli.io.faidx import IndexedFasta
from mxdna_cli.io.fasta import (
    STDIN,
    Region,
    check_input_file,
    is_stream,
    iter_fasta_records,
)


READ_PIECE = 1 << 22  # bases read at a time when a target is first read through the index


def _flip(strand: str) -> str:
    return "-" if strand == "+" else "+"


def strands_for(region_strand: str, choice: str) -> tuple[str, ...]:
    """The strands the model reads for a target: `--strand` is relative to the BED strand."""
    if choice == "forward":
        return (region_strand,)
    if choice == "reverse":
        return (_flip(region_strand),)
    if choice == "both":
        return (region_strand, _flip(region_strand))
    raise UsageError(f"--strand {choice}: choose from {', '.join(STRANDS)}")


@dataclass
class Target:
    """One record or region, in forward genome coordinates, and the strands the model reads."""

    index: int
    name: str
    region: Region
    strands: tuple[str, ...]
    held: str | None = None  # forward-strand text, case kept, when held in memory (see `sequence`)
    n_fraction: float = 0.0  # share of N / ambiguity codes, set with the sequence
    soft_masked_fraction: float = 0.0  # share of lower-case bases, set with the sequence
    source: str = ""  # the input it comes from (its path, or 'stdin'), for messages
    kind: str = "record"  # 'record' (a whole FASTA record) or 'region' (--region, --bed)
    from_bed: bool = False  # a BED line: its strand column is the row's strand
    # forward-strand text of [a, b) (target coordinates), read from an indexed FASTA when asked:
    # such a target never holds its whole sequence, so memory does not grow with the record
    reader: Callable[[int, int], str] | None = None

    @property
    def sequence(self) -> str | None:
        """The forward-strand text (read whole through the reader if the target has one; the
        pipeline itself reads windows, never this)."""
        if self.held is None and self.reader is not None:
            return self.reader(0, self.length)
        return self.held

    def attach(self, sequence: str) -> "Target":
        self.held = sequence
        self.n_fraction = round(dna.n_fraction(sequence), 6)
        self.soft_masked_fraction = round(dna.soft_masked_fraction(sequence), 6)
        return self

    def attach_reader(self, reader: Callable[[int, int], str]) -> "Target":
        """Read the target through `reader` when its windows need it. It is read once now, in
        pieces, for its N and soft-masked shares and to refuse a letter that is not DNA before any
        window runs."""
        unknown = lower = 0
        for a in range(0, self.length, READ_PIECE):
            text = reader(a, min(self.length, a + READ_PIECE))
            unknown += int(np.count_nonzero(dna.encode(text, record=self.where, offset=a) == dna.UNK))
            lower += dna.soft_masked_count(text)
        self.reader = reader
        self.n_fraction = round(unknown / self.length, 6) if self.length else 0.0
        self.soft_masked_fraction = round(lower / self.length, 6) if self.length else 0.0
        return self

    @property
    def attached(self) -> bool:
        """Whether the target's sequence can be read (held, or through its reader)."""
        return self.held is not None or self.reader is not None

    @property
    def chrom(self) -> str:
        return self.region.chrom

    @property
    def start(self) -> int:
        return self.region.start

    @property
    def end(self) -> int:
        return self.region.end

    @property
    def length(self) -> int:
        return self.region.end - self.region.start

    @property
    def strand_label(self) -> str:
        """The strand of an output row: the one the model read; with both read (and averaged), a BED
        line's own strand, else '.'."""
        if len(self.strands) == 1:
            return self.strands[0]
        return self.region.strand if self.from_bed else "."

    @property
    def where(self) -> str:
        """The target in messages: "genome.fa: record 'chr1'" (just the name without a source)."""
        return f"{self.source}: {self.kind} '{self.name}'" if self.source else self.name

    def model_ids(self, strand: str) -> np.ndarray:
        """The ids the model reads on `strand` (the reverse complement for '-')."""
        return self.window_ids(strand, 0, self.length)

    def window_ids(self, strand: str, a: int, b: int) -> np.ndarray:
        """Model-space [a, b) of the ids on `strand`, read from the index when the target has a reader."""
        lo, hi = (a, b) if strand == "+" else (self.length - b, self.length - a)  # forward coordinates
        text = self.reader(lo, hi) if self.reader is not None else self.held[lo:hi]
        ids = dna.encode(text, record=self.where, offset=lo)
        return np.ascontiguousarray(dna.reverse_complement_ids(ids)) if strand == "-" else ids

    def strand_ids(self, strand: str) -> Callable[[int, int], np.ndarray]:
        """(a, b) -> model-space ids on `strand`: read per window through the reader, or sliced from
        the whole strand's ids, encoded once, for a target held in memory (a stream's record)."""
        if self.reader is not None:
            return lambda a, b: self.window_ids(strand, a, b)
        ids = self.model_ids(strand)
        return lambda a, b: ids[a:b]

    def to_genome(self, strand: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-space intervals [a, b) on `strand` as forward genome intervals."""
        if strand == "+":
            return self.start + a, self.start + b
        return self.end - b, self.end - a

    def centre_to_genome(self, strand: str, c: np.ndarray) -> np.ndarray:
        return self.start + c if strand == "+" else self.end - 1 - c


@dataclass
class InputSpec:
    """What the user asked to read: a FASTA path (`-` = stdin), regions, a BED file, a strand."""

    path: str
    regions: Sequence[str] = ()
    bed: str | None = None
    strand: str = "forward"


def _has_index(path: str) -> bool:
    """A plain or bgzip FASTA file whose index files are already there (we never write them).

    Never for a stream (stdin, a pipe): it can be read only once, and has no index.
    """
    if is_stream(path) or not os.path.exists(path + ".fai"):
        return False
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return not gzipped or os.path.exists(path + ".gzi")


class Inputs:
    """The targets of a run.

    Regions (`--region`, `--bed`) are fetched from an indexed FASTA (plain or bgzip; a missing
    `.fai` is built when the folder is writable). Whole records come from the index when one is
    already there (so the plan is known before reading), otherwise they are streamed (plain gzip,
    stdin). Every region is checked against the index before any work starts. A `with` block
    closes the FASTA at its end (as close() does).
    """

    def __init__(self, spec: InputSpec) -> None:
        if spec.strand not in STRANDS:
            raise UsageError(f"--strand {spec.strand}: choose from {', '.join(STRANDS)}")
        self.spec = spec
        self.path = spec.path
        regions: list[Region] = []
        if spec.bed is not None:
            if spec.bed == STDIN and spec.path == STDIN:
                raise UsageError("the FASTA and the --bed file cannot both be stdin ('-')")
            check_input_file(spec.bed)
        if (spec.regions or spec.bed is not None) and spec.path == STDIN:
            raise UsageError("--region and --bed need an indexed FASTA file, not stdin ('-')")
        check_input_file(spec.path)
        if (spec.path == STDIN or is_stream(spec.path)) and distributed.world().distributed:
            raise UsageError("under torchrun every rank reads the input itself: give a FASTA file, "
                             "not stdin or a pipe")
        if (spec.regions or spec.bed is not None) and is_stream(spec.path):
            raise UsageError(
                f"--region and --bed need an indexed FASTA file, not a pipe or other stream ({spec.path})"
            )
        self._fasta: IndexedFasta | None = None
        self._records: list[Target] | None = None
        self._regions: list[Region] | None = None
        self._opened: Iterator[Target] | None = None  # a stream whose first record peek() has read
        if spec.regions or spec.bed is not None:
            self._fasta = IndexedFasta(spec.path)
            # samtools style: a whole contig, chr:from to its end, or chr:from-to (contig names first)
            regions = [parse_region(text, self._fasta.lengths) for text in spec.regions]
            if spec.bed is not None:
                regions += read_bed(spec.bed)
        if regions:
            for region in regions:
                self._check_region(region)
            self._regions = regions
        elif spec.path != STDIN and _has_index(spec.path):
            self._fasta = IndexedFasta(spec.path)
            self._regions = []
            if self._fasta.empty_records:  # left out of the index by samtools: never drop them silently
                self._fasta.close()
                raise DataError(f"{spec.path}: record '{self._fasta.empty_records[0]}' has an empty sequence")
            for chrom in self._fasta.contigs:
                length = self._fasta.lengths[chrom]
                if length == 0:
                    raise DataError(f"{spec.path}: record '{chrom}' has an empty sequence")
                self._regions.append(Region(chrom, 0, length, name=chrom))

    @classmethod
    def from_sequences(cls, sequences: Sequence[str], names: Sequence[str] | None = None,
                       strand: str = "forward") -> Inputs:
        """Sequences held in memory (the Python API): one whole-record target each, in order."""
        if names is not None and len(names) != len(sequences):
            raise UsageError(f"{len(names)} names for {len(sequences)} sequences")
        self = cls.__new__(cls)
        self.spec = InputSpec("<sequences>", strand=strand)
        self.path = self.spec.path
        self._fasta = self._regions = self._opened = None
        records = []
        for index, text in enumerate(sequences):
            if not isinstance(text, str):
                raise UsageError(f"sequence {index}: expected a string of bases, got {type(text).__name__}")
            name = str(names[index]) if names is not None else f"sequence {index}"
            if not text:
                raise DataError(f"{name}: the sequence is empty")
            records.append(Target(index, name, Region(name, 0, len(text), name=name), strands_for("+", strand),
                                  kind="sequence").attach(text))
        self._records = records
        return self

    @property
    def regions_mode(self) -> bool:
        return bool(self.spec.regions) or self.spec.bed is not None

    def _check_region(self, region: Region) -> None:
        assert self._fasta is not None
        if region.name and region.name == region.chrom:  # a whole contig, as named
            where = f"'{region.name}'"
        elif region.name:
            where = f"'{region.name}' ({region.chrom}:{region.start + 1}-{region.end})"
        else:
            where = region.label
        self._fasta.check(region, where)

    def _target(self, index: int, region: Region, sequence: str | None) -> Target:
        name = region.name if region.name else region.label
        target = Target(index, name, region, strands_for(region.strand, self.spec.strand),
                        source="stdin" if self.path == STDIN else self.path,
                        kind="region" if self.regions_mode else "record",
                        from_bed=index >= len(self.spec.regions) and self.spec.bed is not None)
        return target.attach(sequence) if sequence is not None else target

    def materialize(self) -> None:
        """Read a streamed input completely (needed when the row count or chrom sizes come first)."""
        if self._regions is None and self._records is None:
            self._records = list(self._stream())

    def peek(self) -> None:
        """Read the first record of a streamed input now, so that an input that is not FASTA (or has
        no record) fails before any output is created; targets() then starts with it."""
        if self._regions is not None or self._records is not None or self._opened is not None:
            return
        stream = self._stream()
        first = next(stream)  # iter_fasta_records raises DataError on an input with no record
        self._opened = itertools.chain([first], stream)

    def _stream(self) -> Iterator[Target]:
        for index, record in enumerate(iter_fasta_records(self.path)):
            region = Region(record.name, 0, len(record.sequence), name=record.name)
            yield self._target(index, region, record.sequence)

    @property
    def known(self) -> bool:
        return self._regions is not None or self._records is not None

    def plan(self) -> list[Target]:
        """Every target without its sequence (needs a known plan: call materialize() first)."""
        if self._regions is not None:
            return [self._target(i, region, None) for i, region in enumerate(self._regions)]
        if self._records is not None:
            return self._records
        raise RuntimeError("streamed input: call materialize() first")

    @property
    def count(self) -> int | None:
        return len(self.plan()) if self.known else None

    @property
    def total_nucleotides(self) -> int | None:
        return sum(t.length for t in self.plan()) if self.known else None

    @property
    def passes(self) -> int:
        """How many strands the model reads per target: 2 with --strand both, else 1."""
        return len(strands_for("+", self.spec.strand))

    @property
    def nucleotides_to_read(self) -> int | None:
        """Nucleotides the model reads over every target and strand (None: a streamed input)."""
        total = self.total_nucleotides
        return None if total is None else total * self.passes

    def chrom_sizes(self) -> list[tuple[str, int]]:
        """(name, length) of every contig, in file order (all contigs of the index for regions)."""
        if self._fasta is not None:
            return [(c, self._fasta.lengths[c]) for c in self._fasta.contigs if self._fasta.lengths[c] > 0]
        return [(t.chrom, t.length) for t in self.plan()]

    def contig_order(self) -> dict[str, int]:
        return {name: rank for rank, (name, _) in enumerate(self.chrom_sizes())}

    def targets(self, order: Sequence[Target] | None = None) -> Iterator[Target]:
        """Targets with their sequences, in input order (or in `order`, a reordering of plan())."""
        if self._records is not None:
            yield from (order if order is not None else self._records)
            return
        if self._regions is None:
            if self._opened is not None:  # peek() read the first record already
                stream, self._opened = self._opened, None
                yield from stream
            else:
                yield from self._stream()
            return
        assert self._fasta is not None
        for target in order if order is not None else self.plan():
            yield target.attach_reader(functools.partial(self._read, target.region))

    def _read(self, region: Region, a: int, b: int) -> str:
        """Forward text of [a, b) of `region` (region coordinates), from the index."""
        assert self._fasta is not None
        return self._fasta.fetch(Region(region.chrom, region.start + a, region.start + b, name=region.name))

    def close(self) -> None:
        if self._fasta is not None:
            self._fasta.close()

    def __enter__(self) -> Inputs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

