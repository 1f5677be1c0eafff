"""Read DNA from FASTA as a stream of whole records, and the helpers every FASTA reader shares.

Whole records are parsed here, in Python, from bytes: plain, gzip and bgzip files (gzip found by
its magic bytes), standard input (`-`) and any other stream (a named pipe, `<(zcat x.fa.gz)`),
which is read exactly once. A byte that is not printable text inside a sequence is an error, not
silently dropped or a place where the record ends. Regions come from `mxdna_cli.io.faidx`
(`IndexedFasta`: htslib through a checked `.fai`). Every problem with the input becomes a
one-line `DataError` that names the file and the record, line or position; htslib's own messages
are silenced.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import sys
import zlib
from dataclasses import dataclass
from typing import IO, Iterable, Iterator


import pysam

from mxdna_cli.errors import DataError

pysam.set_verbosity(0)  # htslib must never write to the user's stderr: we report problems ourselves

STDIN = "-"
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")  # with or without .gz
GZIP_MAGIC = b"\x1f\x8b"
SNIFF_BYTES = 4096  # enough to see the first header line of any real FASTA
MAX_CONTIGS_IN_MESSAGE = 5
READ_BUFFER = 1 << 20

_PRINTABLE = bytes(range(0x20, 0x7F))  # what a sequence line may hold (letters checked later)
_GRAPHIC = bytes(range(0x21, 0x7F))  # what htslib counts as a base in an indexed file
_WHITESPACE = b" \t\r\n\x0b\x0c"
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
BGZF_MAX_BLOCK = 1 << 16


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
    """Raise DataError unless `path` is an existing file, pipe or device (or `-`)."""
    if path == STDIN:
        return
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, not a file")


def is_stream(path: str) -> bool:
    """True for stdin (`-`) and any other path that is not a regular file (a named pipe, the
    `/dev/fd/N` of a process substitution, a device): such input can be read only once, in order.
    A missing path or a folder is not a stream (check_input_file reports those)."""
    if path == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read (to look for the gzip magic) put back in front.

    Closing it does not close the stream under it."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        super().__init__()
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:
            return readinto(buffer)
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _gunzip(raw: IO[bytes]) -> IO[bytes]:
    """A gzip (or bgzip: many gzip members) stream, decompressed.

    GzipFile's own readline is Python code; a BufferedReader over it reads lines in C, which
    makes reading a chromosome line by line several times faster.
    """
    return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), READ_BUFFER)  # type: ignore[arg-type]


@contextlib.contextmanager
def _open_bytes(path: str) -> Iterator[tuple[IO[bytes] | None, bool]]:
    """(decompressed byte stream, whether it was gzip) of a file, stream or stdin (`-`).

    Compression is recognised by its magic bytes, not by the file name. A stream (stdin, a pipe)
    is opened once and read once. The stream is None for a text-only sys.stdin (io.StringIO put in
    place by a test): read sys.stdin itself then. Stdin is never closed.
    """
    if path == STDIN:
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:
            yield None, False
            return
        handle: IO[bytes] | None = None
        head = buffer.read(2)
        raw: IO[bytes] = io.BufferedReader(_Prefixed(head, buffer), READ_BUFFER)
    elif is_stream(path):
        handle = open(path, "rb", buffering=0)
        head = handle.read(2)
        # a pipe may give one byte per read: read(2) on the raw file could return 1
        while len(head) < 2:
            more = handle.read(2 - len(head))
            if not more:
                break
            head += more
        raw = io.BufferedReader(_Prefixed(head, handle), READ_BUFFER)
    else:
        handle = raw = open(path, "rb", buffering=READ_BUFFER)
        head = raw.peek(2)[:2]  # a regular file: peek fills the buffer
    compressed = head == GZIP_MAGIC
    stream: IO[bytes] = _gunzip(raw) if compressed else raw
    try:
        yield stream, compressed
    finally:
        # none of these closes stdin: GzipFile and _Prefixed leave the stream under them open
        stream.close()
        raw.close()
        if handle is not None:
            handle.close()


@contextlib.contextmanager
def open_text_input(path: str) -> Iterator[IO[str]]:
    """Open a plain or gzip (incl. bgzip) file, a stream, or stdin for `-`, as UTF-8 text.

    Compression is recognised by its magic bytes, not by the file name; a stream is read once.
    """
    check_input_file(path)
    with _open_bytes(path) as (stream, _compressed):
        if stream is None:  # a text stream (e.g. io.StringIO put in place by a test)
            yield sys.stdin
            return
        text = io.TextIOWrapper(stream, encoding="utf-8")  # type: ignore[arg-type]
        try:
            yield text
        finally:
            text.detach()  # closing is _open_bytes' job (and stdin is never closed)


# ---------------------------------------------------------------------------------------------
# Streaming whole records


def _sniff_fasta_file(path: str) -> None:
    """Fail fast, from the first few kB of a regular file only, on a file that is not FASTA.

    Used before htslib builds an index: it would index a FASTQ or a text file without complaint.
    """
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(2) == GZIP_MAGIC
        opener = gzip.open if compressed else open
        with opener(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt compressed file ({exc})") from None
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


def _bad_byte(source: str, name: str, position: int, line: int | None, byte: int) -> DataError:
    """The error for a byte that is not text inside a sequence (position: 1-based, in the record)."""
    at = f"position {position:,}" + (f" (line {line:,})" if line else "")
    if byte == 0:
        return DataError(f"{source}: binary data, not FASTA: record '{name}', {at}: byte 0x00")
    if byte == 0x20:  # only where htslib reads the file: it would skip the space, shifting bases
        kind = "a space inside a sequence line"
    else:
        kind = "a control character" if byte < 0x20 or byte == 0x7F else "not ASCII text"
    return DataError(f"{source}: record '{name}': {at}: byte 0x{byte:02x} is {kind}, not DNA text (corrupt file?)")


def _first_word(header: bytes) -> bytes:
    """The record name in a header line (without '>'): up to the first whitespace, as htslib."""
    if not header[:1] or header[:1] in _WHITESPACE:
        return b""
    return header.split(None, 1)[0]


def _header_name(line: bytes, source: str, number: int) -> str:
    if b"\x00" in line:
        raise DataError(f"{source}: line {number}: binary data, not FASTA (byte 0x00 in a header)")
    try:
        return _first_word(line[1:].rstrip(b"\r\n")).decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{source}: line {number}: the record name is not UTF-8 text") from None


def _join_sequence(chunks: list[bytes], source: str, name: str, header_line: int) -> str:
    """The sequence of a record from its stripped lines; DataError on a byte that is not text.

    chunks[i] is line header_line + 1 + i (blank lines included), so errors can name the line.
    """
    sequence = b"".join(chunks)
    bad = sequence.translate(None, _PRINTABLE)
    if bad:
        index = sequence.find(bad[:1])  # the first byte that is not printable
        seen = 0
        for offset, chunk in enumerate(chunks):
            if seen + len(chunk) > index:
                raise _bad_byte(source, name, index + 1, header_line + 1 + offset, bad[0])
            seen += len(chunk)
    return sequence.decode("ascii")


def _parse_lines(
    lines: Iterable[bytes], source: str, compressed: bool
) -> Iterator[tuple[str, str, str | None]]:
    """(name, sequence, quality) of each record in byte lines: the parser for every input.

    As htslib: the name is the header up to the first whitespace; sequence lines are
    concatenated with trailing whitespace (line ends) stripped. A line starting with '@' after a
    record is a FASTQ record, given with a quality ('') for the caller to refuse.
    """
    name: str | None = None
    chunks: list[bytes] = []
    header_line = 0
    number = 0
    try:
        for number, line in enumerate(lines, start=1):
            first = line[:1]
            if first == b">":
                if name is not None:
                    yield name, _join_sequence(chunks, source, name, header_line), None
                name = _header_name(line, source, number)
                header_line = number
                chunks = []
            elif name is None:
                if line.strip():
                    _check_first_line(source, number, line.decode("utf-8", errors="replace"))
            elif first == b"@":
                yield name, _join_sequence(chunks, source, name, header_line), None
                yield _header_name(line, source, number), "", ""
                raise DataError(f"{source}: line {number}: FASTQ record; FASTA needed")
            else:
                chunks.append(line.rstrip())
    except (OSError, EOFError, zlib.error) as exc:
        if compressed:
            raise DataError(f"{source}: truncated or corrupt compressed file ({exc})") from None
        raise DataError(f"{source}: cannot read after line {number:,} ({exc})") from None
    if name is not None:
        yield name, _join_sequence(chunks, source, name, header_line), None


def raw_entries(path: str) -> Iterator[tuple[str, str, str | None]]:
    """(name, sequence, quality or None) of every record of a FASTA file, stream or stdin (`-`).

    The parser behind `iter_fasta_records`: the start of the input (a '>' header first) and the
    bytes of the sequences (printable text only) are checked; the rules on records (no FASTQ, a
    name and a sequence in each, unique names, at least one record) are left to the caller, for
    callers with rules of their own. A stream is read once.
    """
    check_input_file(path)
    source = "stdin" if path == STDIN else path
    with _open_bytes(path) as (stream, compressed):
        if stream is None:  # text-only sys.stdin
            lines: Iterable[bytes] = (line.encode("utf-8", "surrogateescape") for line in sys.stdin)
        else:
            lines = stream
        yield from _parse_lines(lines, source, compressed)


def iter_fasta_records(path: str) -> Iterator[Record]:
    """Stream the records of a plain, gzip or bgzip FASTA file, a pipe, or stdin (`-`).

    Raises DataError for a missing file, input that is not FASTA (FASTQ included), a byte that is
    not text in a sequence, a record with no name or no sequence, a duplicate record name, a
    truncated compressed file, and input with no records at all.
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
