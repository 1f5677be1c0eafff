"""Indexed FASTA: regions fetched through a `.fai` (and `.gzi` for bgzip), after the index is
checked against the file it describes.

`IndexedFasta` opens a plain or bgzip FASTA with `pysam.FastaFile` (htslib) and builds a missing
index where the folder is writable. An existing index is never trusted blindly: a cheap
structural check always runs (each record's header ends just before its offset, its first and
last lines sit where the index says, nothing follows the last record), and a full pass over the
file when an index file is older than the FASTA. A `.fai` made for another file or an older
version of this one, a record added after indexing, or a truncated bgzip file is then a one-line
`DataError` that says to re-index, never another record's bases.

An index built by a command that then fails is removed again (`discard_built_indexes`, called by
the CLI on every error and interrupt), so a failed run leaves the FASTA's folder as it found it.
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import os
import struct
import zlib
from typing import IO, Iterator, NamedTuple

import numpy as np
import pysam

from mxdna_cli.errors import DataError
from mxdna_cli.io.fasta import (
    BGZF_EOF,
    BGZF_MAX_BLOCK,
    GZIP_MAGIC,
    MAX_CONTIGS_IN_MESSAGE,
    READ_BUFFER,
    STDIN,
    _GRAPHIC,
    _PRINTABLE,
    _WHITESPACE,
    Region,
    _bad_byte,
    _check_first_line,
    _first_word,
    _gunzip,
    _header_name,
    _quiet_htslib,
    _sniff_fasta_file,
    check_input_file,
    is_stream,
)


# ---------------------------------------------------------------------------------------------
# Index files: reading them and checking them against the FASTA


class FaiEntry(NamedTuple):
    """One line of a `.fai`: where a record's bases lie in the (uncompressed) file."""

    name: str
    length: int
    offset: int
    linebases: int
    linewidth: int

    @property
    def end(self) -> int:
        """The byte just after the record's last base."""
        if self.length == 0:
            return self.offset
        lines = (self.length - 1) // self.linebases
        return self.offset + lines * self.linewidth + (self.length - lines * self.linebases)


class _StaleIndex(Exception):
    """The index does not describe the file: `detail` says how; `index` names the index file."""

    def __init__(self, detail: str, index: str = ".fai") -> None:
        super().__init__(detail)
        self.detail = detail
        self.index = index


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


def _stale_error(path: str, compression: str, problem: _StaleIndex) -> DataError:
    index = os.path.basename(path + problem.index)
    delete = "the .fai and .gzi" if compression == "bgzip" else "the .fai"
    return DataError(
        f"{path}: index {index} is out of date ({problem.detail}); re-index with "
        f"'samtools faidx {path}' (or delete {delete})"
    )


def _read_fai(path: str) -> list[FaiEntry]:
    fai = path + ".fai"
    entries = []
    try:
        with open(fai, "rb") as fh:
            content = fh.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read index {os.path.basename(fai)} ({exc})") from None
    for number, line in enumerate(content.split(b"\n"), start=1):
        fields = line.split(b"\t")
        try:
            name, length, offset, linebases, linewidth = fields
            entry = FaiEntry(name.decode("utf-8"), int(length), int(offset), int(linebases), int(linewidth))
            if entry.length < 0 or entry.offset < 0 or (entry.length and not 0 < entry.linebases < entry.linewidth):
                raise ValueError
        except ValueError:
            if not line.strip():
                continue
            if len(fields) == 6:
                raise _StaleIndex(f"line {number} indexes a FASTQ record") from None
            raise _StaleIndex(f"line {number} is not a valid .fai line") from None
        entries.append(entry)
    if not entries:
        raise _StaleIndex("it lists no records")
    return entries


def _read_gzi(path: str) -> list[tuple[int, int]]:
    """(compressed, uncompressed) offset of each BGZF block listed in `.gzi` (block 0 implicit)."""
    try:
        with open(path + ".gzi", "rb") as fh:
            content = fh.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read index {os.path.basename(path)}.gzi ({exc})") from None
    if len(content) < 8:
        raise _StaleIndex("it is not a .gzi index", ".gzi")
    (count,) = struct.unpack_from("<Q", content)
    if len(content) != 8 + 16 * count:
        raise _StaleIndex(f"its size does not match its {count:,} entries", ".gzi")
    values = struct.unpack_from(f"<{2 * count}Q", content, 8)
    return list(zip(values[0::2], values[1::2]))


class _PlainReader:
    """Random reads from a plain file."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "rb")
        size = os.fstat(self._fh.fileno()).st_size
        self._data: bytes | mmap.mmap = (
            mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        )

    def read(self, position: int, size: int) -> bytes:
        return self._data[position : position + size]

    def whole(self) -> bytes | mmap.mmap | None:
        """All the bytes (mapped, not read), or None for a file too large to check at once."""
        return self._data if len(self._data) <= DENSE_MAX_BYTES else None

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()
        self._fh.close()


class _BgzfReader:
    """Random reads from the uncompressed bytes of a bgzip file, through its `.gzi` index.

    Each BGZF block is a complete gzip member of at most 64 KiB. Blocks met at a `.gzi` point are
    checked against it, so a stale `.gzi` is found when it is used.
    """

    CACHE = 8

    def __init__(self, path: str, gzi: list[tuple[int, int]]) -> None:
        self.path = path
        self._fh = open(path, "rb")
        points = sorted({(0, 0), *gzi}, key=lambda p: (p[1], p[0]))
        self._coffsets = [c for c, _ in points]
        self._uoffsets = [u for _, u in points]
        self._known = dict(points)
        self._cache: dict[int, tuple[bytes, int]] = {}

    def _block(self, coffset: int) -> tuple[bytes, int]:
        """(data, next block's offset) of the block at `coffset`; next == coffset at end of file."""
        hit = self._cache.get(coffset)
        if hit is not None:
            return hit
        self._fh.seek(coffset)
        raw = self._fh.read(BGZF_MAX_BLOCK)
        if not raw:
            return b"", coffset
        inflate = zlib.decompressobj(31)
        try:
            data = inflate.decompress(raw)
        except zlib.error as exc:
            if coffset in self._known and coffset:
                raise _StaleIndex(f"no BGZF block at byte {coffset:,} ({exc})", ".gzi") from None
            raise DataError(f"{self.path}: truncated or corrupt compressed file ({exc})") from None
        if not inflate.eof:
            raise DataError(
                f"{self.path}: truncated or corrupt compressed file "
                f"(the block at byte {coffset:,} is cut short)"
            )
        result = (data, coffset + len(raw) - len(inflate.unused_data))
        if len(self._cache) >= self.CACHE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[coffset] = result
        return result

    def read(self, position: int, size: int) -> bytes:
        point = bisect.bisect_right(self._uoffsets, position) - 1
        coffset, uoffset = self._coffsets[point], self._uoffsets[point]
        stop = position + size
        parts = []
        while uoffset < stop:
            expected = self._known.get(coffset)
            if expected is not None and expected != uoffset:
                raise _StaleIndex(
                    f"the block at byte {coffset:,} holds uncompressed byte {uoffset:,}, "
                    f"the index says {expected:,}",
                    ".gzi",
                )
            data, following = self._block(coffset)
            if following == coffset:
                break  # end of file
            if uoffset + len(data) > position:
                parts.append(data[max(0, position - uoffset) : stop - uoffset])
            uoffset += len(data)
            coffset = following
        return b"".join(parts)

    def whole(self) -> bytes | None:
        """All the uncompressed bytes, or None when they would take too much memory."""
        if self._uoffsets[-1] > DENSE_MAX_BYTES:
            return None
        self._fh.seek(0)
        view = memoryview(self._fh.read())
        parts, position = [], 0
        while position < len(view):  # block by block: gzip.decompress copies the rest each time
            inflate = zlib.decompressobj(31)
            piece = view[position : position + BGZF_MAX_BLOCK]
            try:
                parts.append(inflate.decompress(piece))
            except zlib.error as exc:
                raise DataError(f"{self.path}: truncated or corrupt compressed file ({exc})") from None
            if not inflate.eof:
                raise DataError(
                    f"{self.path}: truncated or corrupt compressed file "
                    f"(the block at byte {position:,} is cut short)"
                )
            position += len(piece) - len(inflate.unused_data)
        return b"".join(parts)

    def close(self) -> None:
        self._fh.close()


def _check_bgzf_end(path: str) -> None:
    """A bgzip file ends with an empty BGZF block; without it, the file was cut short."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - len(BGZF_EOF)))
        tail = fh.read()
    if tail != BGZF_EOF:
        raise DataError(
            f"{path}: truncated or corrupt compressed file (no BGZF end-of-file block: cut short?)"
        )


def _line_check(
    source: str, reader, entry: FaiEntry, start: int, bases: int, first_base: int, ending: int | None
) -> int:
    """Check the `bases` bases of one line of `entry` at byte `start`, and its line end.

    ending: the bytes after a full line the index implies (a line end, after trailing spaces if
    the lines have some), or None for the record's last line (then a line end or the end of the
    file, after optional trailing whitespace). Returns the byte after the bases.
    """
    data = reader.read(start, bases + (ending if ending is not None else 64))
    sequence = data[:bases]
    if len(sequence) < bases:
        raise _StaleIndex(
            f"record '{entry.name}': the file ends at base {first_base + len(sequence):,} "
            f"of the {entry.length:,} it says"
        )
    bad = sequence.translate(None, _GRAPHIC)
    if bad:
        index = sequence.find(bad[:1])
        if bad[0] not in b"\r\n":
            raise _bad_byte(source, entry.name, first_base + index + 1, None, bad[0])
        raise _StaleIndex(
            f"record '{entry.name}': a line ends at base {first_base + index:,}, not where "
            f"the index puts line ends ({entry.linebases:,} bases a line)"
        )
    if b">" in sequence:
        raise _StaleIndex(f"record '{entry.name}': a '>' header inside its {entry.length:,} bases")
    rest = data[bases:]
    if ending is not None:
        if len(rest) != ending or rest[-1:] != b"\n" or rest.translate(None, _WHITESPACE):
            raise _StaleIndex(
                f"record '{entry.name}': its lines are not {entry.linebases:,} bases long"
            )
        return start + bases
    after = rest.lstrip(b" \t\r\x0b\x0c")
    if after[:1] not in (b"", b"\n"):
        raise _StaleIndex(f"record '{entry.name}' has more than the {entry.length:,} bases the index says")
    return start + bases


def _header_before(reader, offset: int) -> tuple[int, bytes] | None:
    """(byte where it starts, text after '>') of the header line that ends just before `offset`."""
    if offset < 2:
        return None
    span = 256
    while True:
        low = max(0, offset - span)
        data = reader.read(low, offset - low)
        if len(data) != offset - low or not data.endswith(b"\n"):
            return None
        body = data[:-1].rstrip(b"\r")
        newline = body.rfind(b"\n")
        if newline >= 0:
            start, line = low + newline + 1, body[newline + 1 :]
            break
        if low == 0:
            start, line = 0, body
            break
        if span >= 1 << 20:
            return None
        span *= 8
    return (start, line[1:]) if line[:1] == b">" else None


def _skip_space(reader, position: int) -> tuple[int, bool]:
    """(first byte at or after `position` that is not whitespace, whether the file ended first)."""
    size = 64  # usually a line end or two: read little, then more
    while True:
        data = reader.read(position, size)
        rest = data.lstrip(_WHITESPACE)
        if rest:
            return position + len(data) - len(rest), False
        position += len(data)
        if len(data) < size:
            return position, True
        size = min(size * 8, 1 << 16)


_FAST_SPAN = 1 << 16
DENSE_MIN_RECORDS = 256  # from this many records on, check them all at once with numpy
DENSE_MAX_BYTES = 1 << 28
_NOT_TEXT = np.ones(256, dtype=bool)
_NOT_TEXT[np.frombuffer(_PRINTABLE + _WHITESPACE, dtype=np.uint8)] = False


def _dense_check(source: str, buffer, entries: list[FaiEntry]) -> bool:
    """The structural check of many records at once, on the whole (uncompressed) file.

    True when every record is laid out as usual: its header line right after the line end of
    the record before, its first and last bases and line ends where the index says, nothing but
    whitespace after the last record. False: let the record-by-record check find and name the
    problem (or accept an unusual but valid layout). DataError for a byte that is not text
    inside a record's bases.
    """
    data = np.frombuffer(buffer, dtype=np.uint8)
    size = data.size
    _, length, offsets, bases, width = (np.array(column, dtype=np.int64) if i else None
                                        for i, column in enumerate(zip(*entries)))
    if size < 2 or (length == 0).any() or (offsets < 2).any() or (np.diff(offsets) <= 0).any():
        return False
    if ((width - bases != 1) & (width - bases != 2)).any():
        return False
    lines = (length - 1) // bases
    last = offsets + lines * width
    ends = last + (length - lines * bases)
    if ends[-1] > size or (ends[:-1] >= offsets[1:]).any():
        return False

    def base(at: np.ndarray) -> np.ndarray:
        value = data[at]
        return (value > 0x20) & (value < 0x7F) & (value != ord(">"))

    ok = (data[offsets - 1] == 10) & base(offsets) & base(last) & base(ends - 1)
    multi = length > bases
    if multi.any():
        line_end = offsets[multi] + bases[multi]
        ok[multi] &= base(line_end - 1) & (data[offsets[multi] + width[multi] - 1] == 10)
        ok[multi] &= (width[multi] - bases[multi] == 1) | (data[line_end] == 13)
        ok[multi] &= data[last[multi] - 1] == 10
    after = data[np.minimum(ends, size - 1)]
    crlf = (after == 13) & (data[np.minimum(ends + 1, size - 1)] == 10)
    ending = np.where(after == 10, 1, np.where(crlf, 2, 0))
    following = ends[:-1] + ending[:-1]
    ok[:-1] &= (ending[:-1] > 0) & (following < offsets[1:]) & (data[np.minimum(following, size - 1)] == ord(">"))
    if not ok.all():
        return False
    if bytes(buffer[ends[-1] :]).strip(_WHITESPACE):
        return False  # a record after the last indexed one, or more bases
    first = offsets[0] - 1 - len(bytes(buffer[: offsets[0] - 1]).lstrip(_WHITESPACE))
    starts = [int(first)] + following.tolist()
    for start, offset, entry in zip(starts, offsets.tolist(), entries):
        header = buffer[start + 1 : offset - 1]
        if b"\n" in header or _first_word(header.rstrip(b"\r")) != entry.name.encode("utf-8"):
            return False
    for low in range(0, size, 1 << 24):  # bytes that are not text, in the bases (not in headers)
        where = np.flatnonzero(_NOT_TEXT[data[low : low + (1 << 24)]]) + low
        if where.size:
            record = np.maximum(np.searchsorted(offsets, where, side="right") - 1, 0)
            inside = (where >= offsets[record]) & (where < ends[record])
            if inside.any():
                at = int(where[np.argmax(inside)])
                entry = entries[int(record[np.argmax(inside)])]
                into = at - entry.offset
                index = into - (into // entry.linewidth) * (entry.linewidth - entry.linebases)
                raise _bad_byte(source, entry.name, index + 1, None, int(data[at]))
    return True


def _fast_entry(data: bytes, cursor: int, entry: FaiEntry) -> int | None:
    """The common case of `_check_structure` in one read: `data` runs from `cursor` (the end of
    the record before) to past this record's end. Returns the byte after the record's bases, or
    None when anything is not as usual (the slow path then finds and names the problem)."""
    rel = entry.offset - cursor
    if rel < 2 or data[rel - 1] != 10:
        return None
    header = data[: rel - 1].lstrip(_WHITESPACE)
    if header[:1] != b">" or b"\n" in header:
        return None
    if _first_word(header[1:].rstrip(b"\r")) != entry.name.encode("utf-8"):
        return None
    length, B, W = entry.length, entry.linebases, entry.linewidth
    if length > B:
        first, ending = data[rel : rel + B], data[rel + B : rel + W]
        if first.translate(None, _GRAPHIC) or b">" in first or ending[-1:] != b"\n":
            return None
        if len(ending) != W - B or ending.translate(None, _WHITESPACE):
            return None
    lines = (length - 1) // B
    start = rel + lines * W
    last = data[start : start + length - lines * B]
    if len(last) != length - lines * B or last.translate(None, _GRAPHIC) or b">" in last:
        return None
    if data[start + len(last) :].lstrip(b" \t\r\x0b\x0c")[:1] not in (b"", b"\n"):
        return None
    return cursor + start + len(last)


def _check_structure(source: str, reader, entries: list[FaiEntry]) -> list[str]:
    """The cheap check of an index against its file; returns the names of empty records.

    Each record's header line must end just before its offset, its first and last lines must be
    where the index says, and between records (and after the last) there may be only whitespace
    or a record with no sequence (which samtools leaves out of the index).
    """
    empty: list[str] = []
    names = {e.name for e in entries}
    ordered = sorted(entries, key=lambda e: e.offset)
    if len(ordered) >= DENSE_MIN_RECORDS:
        buffer = reader.whole()
        if buffer is not None and _dense_check(source, buffer, ordered):
            return empty
    cursor, previous = 0, None
    for entry in ordered + [None]:  # None: after the last record, the end of the file
        if entry is not None and entry.length and entry.end - cursor < _FAST_SPAN:
            following = _fast_entry(reader.read(cursor, entry.end - cursor + 64), cursor, entry)
            if following is not None:
                cursor, previous = following, entry
                continue
        if entry is not None:
            found = _header_before(reader, entry.offset)
            if found is None or _first_word(found[1]) != entry.name.encode("utf-8"):
                raise _StaleIndex(
                    f"record '{entry.name}': no '>{entry.name}' header line just before byte "
                    f"{entry.offset:,}"
                )
            header_start = found[0]
        position, at_end = _skip_space(reader, cursor)
        while entry is None and not at_end or entry is not None and position < header_start:
            head = reader.read(position, 1 << 16)
            if head[:1] != b">":
                if previous is None:
                    raise _StaleIndex(f"text before the first indexed record '{entry.name}'")
                raise _StaleIndex(
                    f"record '{previous.name}' has more than the {previous.length:,} bases "
                    f"the index says"
                )
            newline = head.find(b"\n")
            name = _first_word(head[1 : newline if newline >= 0 else None].rstrip(b"\r"))
            shown = name.decode("utf-8", errors="replace")
            after = position + newline + 1 if newline >= 0 else position + len(head)
            following, ended = _skip_space(reader, after)
            if ended or reader.read(following, 1) == b">":
                empty.append(shown)  # no sequence: samtools leaves it out of the index
                position, at_end = following, ended
                continue
            if shown in names:
                raise DataError(f"{source}: duplicate record name '{shown}'")
            place = f"after '{previous.name}'" if previous is not None else "first"
            raise _StaleIndex(f"record '{shown}', {place}, is not in the index")
        if entry is None:
            break
        if position != header_start:
            raise _StaleIndex(f"record '{entry.name}' overlaps the record before it")
        if entry.length:
            B, W = entry.linebases, entry.linewidth
            if entry.length > B:
                _line_check(source, reader, entry, entry.offset, B, 0, W - B)
            lines = (entry.length - 1) // B
            cursor = _line_check(
                source, reader, entry, entry.offset + lines * W, entry.length - lines * B,
                lines * B, None,
            )
        else:
            cursor = entry.offset
        previous = entry
    return empty


def _scan_layout(source: str, stream: IO[bytes]) -> tuple[list[FaiEntry], list[str]]:
    """Each record's fai entry as samtools faidx computes it, from one pass over the file.

    Returns (entries of records with bases, names of empty records). Raises DataError for a byte
    that is not text in a sequence, and _StaleIndex for lines no index could describe.
    """
    entries: list[FaiEntry] = []
    empty: list[str] = []
    seen: set[str] = set()
    offset = 0
    name: str | None = None
    state: list[int] = []

    def finish() -> None:
        if name is None:
            return
        start, length, linebases, linewidth = state[:4]
        if length:
            entries.append(FaiEntry(name, length, start, linebases, linewidth))
        else:
            empty.append(name)

    number = 0
    for number, line in enumerate(stream, start=1):
        if line[:1] == b">":
            finish()
            name = _header_name(line, source, number)
            if name in seen:
                raise DataError(f"{source}: line {number:,}: duplicate record name '{name}'")
            seen.add(name)
            offset += len(line)
            # start, length, linebases, linewidth, lines, short line seen, blank line seen
            state = [offset, 0, 0, 0, 0, 0, 0]
            continue
        width = len(line) if line[-1:] == b"\n" else len(line) + 1
        offset += len(line)
        if name is None:
            if line.strip():
                _check_first_line(source, number, line.decode("utf-8", errors="replace"))
            continue
        content = line.rstrip()
        bases = len(content)
        if content.translate(None, _GRAPHIC):
            bad = content.translate(None, _GRAPHIC)
            index = content.find(bad[:1])
            raise _bad_byte(source, name, state[1] + index + 1, number, bad[0])
        if not bases:
            state[6] = 1
            continue
        if state[6] or state[5]:
            raise _StaleIndex(
                f"record '{name}': line {number:,} follows a shorter or blank line, "
                f"a layout samtools cannot index"
            )
        if state[4] == 0:
            state[2], state[3] = bases, width
        elif (bases, width) != (state[2], state[3]):
            if bases > state[2]:
                raise _StaleIndex(
                    f"record '{name}': line {number:,} is longer than the lines before it, "
                    f"a layout samtools cannot index"
                )
            state[5] = 1
        state[1] += bases
        state[4] += 1
    finish()
    return entries, empty


def _bgzf_blocks(path: str) -> Iterator[tuple[int, int]]:
    """(compressed, uncompressed) offset of every BGZF block, from block headers and sizes."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        coffset = uoffset = 0
        while coffset < size:
            fh.seek(coffset)
            head = fh.read(18)
            if len(head) < 18 or head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
                raise DataError(f"{path}: truncated or corrupt compressed file (byte {coffset:,})")
            (bsize,) = struct.unpack_from("<H", head, 16)
            following = coffset + bsize + 1
            if following > size:
                raise DataError(f"{path}: truncated or corrupt compressed file (cut short)")
            fh.seek(following - 4)
            (isize,) = struct.unpack("<I", fh.read(4))
            yield coffset, uoffset
            coffset, uoffset = following, uoffset + isize


def _full_check(path: str, compression: str, entries: list[FaiEntry], gzi) -> list[str]:
    """Compare the index with the file, read once (when the index is older than the file)."""
    if gzi is not None:
        blocks = dict(_bgzf_blocks(path))
        for coffset, uoffset in gzi:
            if blocks.get(coffset) != uoffset:
                raise _StaleIndex(
                    f"its block at byte {coffset:,} (uncompressed {uoffset:,}) is not in the file",
                    ".gzi",
                )
    try:
        with open(path, "rb", buffering=READ_BUFFER) as raw:
            with _gunzip(raw) if compression != "plain" else contextlib.nullcontext(raw) as stream:
                found, empty = _scan_layout(path, stream)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt compressed file ({exc})") from None
    indexed = sorted(entries, key=lambda e: e.offset)
    for number, (got, want) in enumerate(zip(found, indexed), start=1):
        if got.name != want.name:
            raise _StaleIndex(f"record {number} is '{got.name}' in the file, '{want.name}' in the index")
        if got.length != want.length:
            raise _StaleIndex(
                f"record '{got.name}' has {got.length:,} bases, the index says {want.length:,}"
            )
        if got.offset != want.offset:
            raise _StaleIndex(
                f"record '{got.name}' starts at byte {got.offset:,}, the index says {want.offset:,}"
            )
        multiline = got.length > got.linebases
        if (got.linebases, got.linewidth) != (want.linebases, want.linewidth) and (
            multiline or want.linebases < got.length or want.linewidth <= want.linebases
        ):
            raise _StaleIndex(
                f"record '{got.name}' has lines of {got.linebases:,} bases, the index says "
                f"{want.linebases:,}"
            )
    if len(found) > len(indexed):
        raise _StaleIndex(f"record '{found[len(indexed)].name}' is not in the index")
    if len(found) < len(indexed):
        raise _StaleIndex(f"record '{indexed[len(found)].name}' is not in the file")
    return empty


def _older(index: str, path: str) -> bool:
    return os.stat(index).st_mtime_ns < os.stat(path).st_mtime_ns



def validate_index(path: str, compression: str, built: bool = False) -> tuple[list[FaiEntry], list[str]]:
    """Check the `.fai` (and `.gzi`) of `path` before it is trusted; (entries, empty records).

    Always the cheap structural check; a full pass over the file as well when an index file is
    older than the FASTA (and was not just built). DataError when the index does not fit.
    """
    try:
        entries = _read_fai(path)
        gzi = _read_gzi(path) if compression == "bgzip" else None
        reader = _BgzfReader(path, gzi) if gzi is not None else _PlainReader(path)
        try:
            empty = _check_structure(path, reader, entries)
            if gzi:  # a .gzi made for another file lists blocks that are not there
                size = os.path.getsize(path)
                if gzi[-1][0] >= size:
                    raise _StaleIndex(f"it lists a block at byte {gzi[-1][0]:,}, past the end of the "
                                      f"{size:,}-byte file", ".gzi")
                for _, uoffset in (gzi[0], gzi[len(gzi) // 2], gzi[-1]):
                    reader.read(uoffset, 1)
        finally:
            reader.close()
        stale = not built and any(_older(f, path) for f in _index_files(path, compression))
        if stale:
            empty = _full_check(path, compression, entries, gzi)
    except _StaleIndex as problem:
        raise _stale_error(path, compression, problem) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return entries, empty


# ---------------------------------------------------------------------------------------------
# Random access


def _check_indexable(path: str) -> str:
    """Explain, before htslib fails with a vague message, why a file cannot be indexed.

    Returns the compression ('plain' or 'bgzip').
    """
    check_input_file(path)
    if path == STDIN:
        raise DataError("stdin: regions need an indexed FASTA file, not a stream")
    if is_stream(path):
        raise DataError(
            f"{path}: regions need an indexed FASTA file, not a pipe or other stream"
        )
    compression = _compression(path)
    if compression == "gzip":
        raise DataError(
            f"{path}: plain gzip cannot be indexed for regions; recompress with "
            f"`bgzip` (zcat {path} | bgzip > x.fa.gz) or stream whole records"
        )
    if compression == "bgzip":
        _check_bgzf_end(path)
    missing = [f for f in _index_files(path, compression) if not os.path.exists(f)]
    folder = os.path.dirname(os.path.abspath(path))
    if missing and not os.access(folder, os.W_OK):
        raise DataError(
            f"{path}: index {os.path.basename(missing[0])} is missing and folder {folder} is "
            f"not writable to build it; run `samtools faidx` on a writable copy"
        )
    if missing:
        _sniff_fasta_file(path)  # htslib would index a FASTQ without complaint
    return compression


# Index files this process has built beside their FASTA since `forget_built_indexes`.
_built_indexes: list[str] = []


def forget_built_indexes() -> None:
    """Start a new command: the indexes built so far are kept whatever happens next."""
    _built_indexes.clear()


def discard_built_indexes() -> None:
    """A command failed: remove the index files it built, so its input's folder is as it was."""
    for index in _built_indexes:
        with contextlib.suppress(OSError):
            os.remove(index)
    _built_indexes.clear()


def _region_text(region: Region) -> str:
    coords = f"{region.chrom}:{region.start + 1}-{region.end}"
    return f"'{region.name}' ({coords})" if region.name else coords


class IndexedFasta:
    """Random access to a plain or bgzip FASTA file; builds a missing `.fai` (and `.gzi`).

    An existing index is checked against the file first (`validate_index`): a `.fai` made for
    another file or an older version of this one, a record added after indexing, or a truncated
    bgzip file is a DataError, never another record's bases. `empty_records` names records with
    no sequence, which samtools leaves out of the index.
    """

    def __init__(self, path: str) -> None:
        compression = _check_indexable(path)
        self.path = path
        self._compression = compression
        missing = [f for f in _index_files(path, compression) if not os.path.exists(f)]
        built = bool(missing)
        if not built:  # check before htslib reads a stale or foreign index
            entries, self.empty_records = validate_index(path, compression)
        try:
            with _quiet_htslib():
                self._fasta = pysam.FastaFile(path)
        except (OSError, ValueError, RuntimeError) as exc:
            raise DataError(f"{path}: cannot open or index as FASTA: {exc}") from None
        finally:
            _built_indexes.extend(f for f in missing if os.path.exists(f))
        try:
            if built:  # htslib has just built it: the cheap check only
                entries, self.empty_records = validate_index(path, compression, built=True)
            self.contigs: tuple[str, ...] = tuple(self._fasta.references)
            self.lengths: dict[str, int] = dict(zip(self.contigs, self._fasta.lengths))
            if [(e.name, e.length) for e in entries] != list(self.lengths.items()):
                raise DataError(f"{path}: the index changed while it was read; run again")
        except DataError:
            self._fasta.close()
            raise

    def check(self, region: Region, where: str | None = None) -> None:
        """DataError unless `region` lies inside a contig of the index (`where`: the region as the
        message names it; its coordinates by default)."""
        where = where or _region_text(region)
        length = self.lengths.get(region.chrom)
        if length is None:
            shown = ", ".join(self.contigs[:MAX_CONTIGS_IN_MESSAGE])
            more = ", ..." if len(self.contigs) > MAX_CONTIGS_IN_MESSAGE else ""
            raise DataError(f"{self.path}: unknown contig '{region.chrom}' in region {where} (contigs: {shown}{more})")
        if region.start < 0 or region.start >= region.end:
            raise DataError(f"{self.path}: invalid region {where}: needs 0 <= start < end")
        if region.end > length:
            # htslib would silently return a shorter sequence
            raise DataError(f"{self.path}: region {where} ends past the end of contig '{region.chrom}' (length {length})")

    def fetch(self, region: Region) -> str:
        """The forward-strand sequence of `region`, case kept; DataError if it does not fit."""
        self.check(region)
        try:
            with _quiet_htslib():
                sequence = self._fasta.fetch(region.chrom, region.start, region.end)
        except (OSError, ValueError, KeyError, IndexError, RuntimeError) as exc:
            raise DataError(
                f"{self.path}: cannot read region {_region_text(region)} "
                f"(truncated or corrupt file?): {exc}"
            ) from None
        if len(sequence) != region.end - region.start or ">" in sequence:
            problem = _StaleIndex(
                f"region {_region_text(region)} reads {len(sequence):,} bases"
                + (" and a '>' header" if ">" in sequence else "")
            )
            raise _stale_error(self.path, self._compression, problem)
        return sequence

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> IndexedFasta:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
