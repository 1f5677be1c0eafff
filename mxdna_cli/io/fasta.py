"""Read DNA from FASTA: stream whole records, or fetch regions from an indexed file.

Files are read with pysam (htslib): `pysam.FastxFile` streams plain, gzip and bgzip FASTA;
`pysam.FastaFile` gives random access to plain or bgzip FASTA through a `.fai` index. Standard
input (`-`) is parsed here in Python from `sys.stdin`, so that it can be sniffed before parsing
and works when `sys.stdin` is replaced (typer's CliRunner, pytest). Every problem with the input
becomes a one-line `DataError` that names the file and the record or line.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import sys
import zlib
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

import pysam

from mxdna_cli.errors import DataError

STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"
SNIFF_BYTES = 4096  # enough to see the first header line of any real FASTA
MAX_CONTIGS_IN_MESSAGE = 5


@dataclass(frozen=True)
class Region:
    """A stretch of a contig, 0-based half-open; `strand` is kept for the caller to apply."""

    chrom: str
    start: int
    end: int
    name: str | None = None
    strand: str = "+"

    @property
    def label(self) -> str:
        """The region's name, or samtools-style 1-based `chrom:from-to` when it has none."""
        return self.name if self.name else f"{self.chrom}:{self.start + 1}-{self.end}"

    @property
    def length(self) -> int:
        # a property, not __len__: a zero-length Region must not be falsy
        return self.end - self.start


@dataclass
class Record:
    """A named sequence and where it lies (whole records: chrom=name, start=0, end=len)."""

    name: str
    sequence: str
    region: Region


# ---------------------------------------------------------------------------------------------
# Opening inputs


def check_input_file(path: str) -> None:
    """Raise DataError unless `path` is an existing regular file (or `-`)."""
    if path == STDIN:
        return
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, not a file")


def _binary_stdin() -> IO[bytes] | None:
    """The byte stream behind sys.stdin with peek(), or None when sys.stdin is text-only."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return None
    # peek() lets us look for the gzip magic without consuming it; BytesIO (CliRunner) lacks it
    return buffer if hasattr(buffer, "peek") else io.BufferedReader(buffer)


@contextlib.contextmanager
def open_text_input(path: str) -> Iterator[IO[str]]:
    """Open a plain or gzip (incl. bgzip) text file, or stdin for `-`, as a UTF-8 text stream.

    Compression is recognised by its magic bytes, not by the file name.
    """
    check_input_file(path)
    if path == STDIN:
        raw = _binary_stdin()
        if raw is None:  # a text stream (e.g. io.StringIO put in place by a test)
            yield sys.stdin
            return
        stream = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == GZIP_MAGIC else raw
        # do not close stdin itself: wrap without taking ownership
        text = io.TextIOWrapper(stream, encoding="utf-8")
        try:
            yield text
        finally:
            text.detach()
        return
    with open(path, "rb") as fh:
        compressed = fh.read(2) == GZIP_MAGIC
    opener = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8") as fh:
        yield fh


# ---------------------------------------------------------------------------------------------
# Streaming whole records


def _sniff_fasta_file(path: str) -> None:
    """Fail fast, from the first few kB only, on a file that is not FASTA.

    htslib's parser silently skips everything before the first '>' (a text file gives zero
    records, no error) and accepts FASTQ, so we look at the first non-blank line ourselves.
    """
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(2) == GZIP_MAGIC
        opener = gzip.open if compressed else open
        with opener(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read (corrupt compressed file?): {exc}") from None
    if b"\x00" in head:
        raise DataError(f"{path}: binary data, not FASTA")
    text = head.decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            _check_first_line(path, number, line)
            return


def _check_first_line(source: str, number: int, line: str) -> None:
    """The first non-blank line of a FASTA must be a '>' header."""
    if line.startswith(">"):
        return
    if line.startswith("@"):
        raise DataError(f"{source}: line {number}: looks like FASTQ ('@' header); FASTA needed")
    raise DataError(
        f"{source}: line {number}: not FASTA, expected a '>' header, found {line[:30]!r}"
    )


@contextlib.contextmanager
def _quiet_htslib() -> Iterator[None]:
    """Silence htslib's own stderr messages: we report the same problem as a DataError."""
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


def _pysam_entries(path: str) -> Iterator[tuple[str, str, str | None]]:
    """(name, sequence, quality) of each entry of a file, read by htslib."""
    with pysam.FastxFile(path) as fx:
        entries = iter(fx)
        while True:
            # verbosity is toggled around each read only, never left changed while we yield
            try:
                with _quiet_htslib():
                    entry = next(entries)
            except StopIteration:
                return
            except (ValueError, OSError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: cannot parse (truncated or corrupt?): {exc}") from None
            yield entry.name, entry.sequence, entry.quality


def _stream_entries(lines: Iterable[str], source: str) -> Iterator[tuple[str, str, None]]:
    """(name, sequence, None) of each FASTA record in text lines: the stdin parser.

    It follows htslib: the name is the header up to the first whitespace, sequence lines are
    concatenated with line ends stripped.
    """
    name: str | None = None
    chunks: list[str] = []
    seen_header = False
    try:
        for number, line in enumerate(lines, start=1):
            if line.startswith(">"):
                if name is not None:
                    yield name, "".join(chunks), None
                header = line[1:].rstrip("\r\n")
                name = header.split(maxsplit=1)[0] if header[:1].strip() else ""
                chunks = []
                seen_header = True
            elif not seen_header:
                if line.strip():
                    _check_first_line(source, number, line)
            else:
                chunks.append(line.rstrip())
    except (UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source}: cannot read (binary, truncated or corrupt?): {exc}") from None
    if name is not None:
        yield name, "".join(chunks), None


def raw_entries(path: str) -> Iterator[tuple[str, str, str | None]]:
    """(name, sequence, quality or None) of every record of a FASTA file or stdin (`-`), as parsed.

    The parser behind `iter_fasta_records`: only the start of the input is checked (a '>' header
    first); the rules on records (no FASTQ, a name and a sequence in each, unique names, at least
    one record) are left to the caller, for callers with rules of their own.
    """
    if path == STDIN:
        with open_text_input(path) as text:
            yield from _stream_entries(text, "stdin")
    else:
        _sniff_fasta_file(path)
        yield from _pysam_entries(path)


def iter_fasta_records(path: str) -> Iterator[Record]:
    """Stream the records of a plain, gzip or bgzip FASTA file, or of stdin (`-`).

    Raises DataError for a missing file, input that is not FASTA (FASTQ included), a record with
    no name or no sequence, a duplicate record name, and input with no records at all.
    """
    check_input_file(path)
    source = "stdin" if path == STDIN else path
    seen: set[str] = set()  # names only: cheap even for millions of records
    for number, (name, sequence, quality) in enumerate(raw_entries(path), start=1):
        if quality is not None:
            raise DataError(f"{source}: record {number} '{name}' is FASTQ; FASTA needed")
        if not name:
            raise DataError(f"{source}: record {number} has no name (nothing right after '>')")
        if not sequence:
            raise DataError(f"{source}: record {number} '{name}' has an empty sequence")
        if name in seen:
            raise DataError(f"{source}: record {number}: duplicate record name '{name}'")
        seen.add(name)
        yield Record(name=name, sequence=sequence, region=Region(name, 0, len(sequence)))
    if not seen:
        raise DataError(f"{source}: no FASTA records found")


# ---------------------------------------------------------------------------------------------
# Random access


def _compression(path: str) -> str:
    """'plain', 'bgzip' or 'gzip', from the first bytes (BGZF is gzip with a 'BC' extra field)."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != GZIP_MAGIC:
        return "plain"
    has_extra = len(head) >= 14 and head[3] & 0x04
    return "bgzip" if has_extra and head[12:14] == b"BC" else "gzip"


def _index_files(path: str, compression: str) -> list[str]:
    return [path + ".fai"] + ([path + ".gzi"] if compression == "bgzip" else [])


def _check_indexable(path: str) -> None:
    """Explain, before htslib fails with a vague message, why a file cannot be indexed."""
    check_input_file(path)
    if path == STDIN:
        raise DataError("stdin: regions need an indexed FASTA file, not a stream")
    compression = _compression(path)
    if compression == "gzip":
        raise DataError(
            f"{path}: plain gzip cannot be indexed for regions; recompress with "
            f"`bgzip` (zcat {path} | bgzip > x.fa.gz) or stream whole records"
        )
    missing = [f for f in _index_files(path, compression) if not os.path.exists(f)]
    folder = os.path.dirname(os.path.abspath(path))
    if missing and not os.access(folder, os.W_OK):
        raise DataError(
            f"{path}: index {os.path.basename(missing[0])} is missing and folder {folder} is "
            f"not writable to build it; run `samtools faidx` on a writable copy"
        )
    if missing:
        _sniff_fasta_file(path)  # htslib would index a FASTQ without complaint


def _region_text(region: Region) -> str:
    coords = f"{region.chrom}:{region.start + 1}-{region.end}"
    return f"'{region.name}' ({coords})" if region.name else coords


class IndexedFasta:
    """Random access to a plain or bgzip FASTA file; builds a missing `.fai` (and `.gzi`)."""

    def __init__(self, path: str) -> None:
        _check_indexable(path)
        self.path = path
        try:
            with _quiet_htslib():
                self._fasta = pysam.FastaFile(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot open or index as FASTA: {exc}") from None
        self.contigs: tuple[str, ...] = tuple(self._fasta.references)
        self.lengths: dict[str, int] = dict(zip(self.contigs, self._fasta.lengths))

    def fetch(self, region: Region) -> str:
        """The forward-strand sequence of `region`, case kept; DataError if it does not fit."""
        length = self.lengths.get(region.chrom)
        if length is None:
            shown = ", ".join(self.contigs[:MAX_CONTIGS_IN_MESSAGE])
            more = ", ..." if len(self.contigs) > MAX_CONTIGS_IN_MESSAGE else ""
            raise DataError(
                f"{self.path}: unknown contig '{region.chrom}' in region {_region_text(region)}"
                f" (contigs: {shown}{more})"
            )
        if region.start < 0 or region.start >= region.end:
            raise DataError(
                f"{self.path}: invalid region {_region_text(region)}: needs 0 <= start < end"
            )
        if region.end > length:
            # htslib would silently return a shorter sequence
            raise DataError(
                f"{self.path}: region {_region_text(region)} ends past the end of contig "
                f"'{region.chrom}' (length {length})"
            )
        sequence = self._fasta.fetch(region.chrom, region.start, region.end)
        if len(sequence) != region.end - region.start:
            raise DataError(f"{self.path}: short read for {_region_text(region)}; stale .fai?")
        return sequence

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> IndexedFasta:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_regions(fasta_path: str, regions: Iterable[Region]) -> Iterator[Record]:
    """Fetch each region in the given order, named by its label, always as the forward strand.

    Sorting regions by (contig, start) first makes bgzip access much faster; that is the
    caller's choice, as is reverse-complementing regions on the '-' strand.
    """
    with IndexedFasta(fasta_path) as fasta:
        for region in regions:
            yield Record(name=region.label, sequence=fasta.fetch(region), region=region)
