"""Write results atomically: TSV, BED6, BED12, NPY (+ index and JSON sidecars) and bigWig.

Every writer writes to a temporary file in the output folder and renames it into place only
when the work succeeded, so a failed or interrupted run never leaves a truncated output and never
destroys a previous one. Text writers also accept `-` (standard output) so that results pipe.
Writers are context managers: leaving the `with` block normally commits, an exception aborts.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

import numpy as np
from numpy.lib.format import open_memmap

from mxdna_cli.errors import UsageError

STDOUT = "-"
BED_STRANDS = ("+", "-", ".")
BIGWIG_BATCH_VALUES = 1 << 20  # values buffered before one addEntries call (8 MB as float64)


# ---------------------------------------------------------------------------------------------
# Atomic files


def _umask() -> int:
    # os.umask can only be read by setting it; put it straight back
    mask = os.umask(0)
    os.umask(mask)
    return mask


def output_folder(path: str) -> str:
    """The folder an output file `path` goes into; UsageError when `path` is a folder itself or
    its folder does not exist."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a folder; give an output file name")
    if os.path.exists(path) and not os.path.isfile(path):
        # a device or a pipe: the atomic rename would replace it (e.g. /dev/null) with a plain file
        raise UsageError(f"{path}: is not a regular file; outputs are written as files ('-' = stdout)")
    if not os.path.isdir(folder):
        raise UsageError(f"{path}: output folder {folder} does not exist")
    return folder


def _temporary_path(path: str) -> str:
    """A new empty file next to `path` (same folder, so the final rename is atomic)."""
    folder = output_folder(path)
    try:
        fd, temporary = tempfile.mkstemp(
            dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
        )
    except PermissionError:
        raise UsageError(f"{path}: output folder {folder} is not writable") from None
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions a normal open would
    os.chmod(temporary, 0o666 & ~_umask())
    return temporary


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def move_into_place(source: str, path: str) -> None:
    """Rename `source` to `path` atomically; across file systems, copy beside `path` first."""
    try:
        os.replace(source, path)
    except OSError as error:
        if error.errno != 18:  # EXDEV: another file system
            raise
        temporary = _temporary_path(path)
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, path)
        except BaseException:
            _remove_quietly(temporary)
            raise
        os.unlink(source)


class AtomicFile:
    """A file written under a temporary name and renamed to `path` by commit(); `-` = stdout.

    `temporary` names the temporary file instead of a random one beside `path` (a resumable run
    keeps its temporaries in its journal folder); with `resume_size`, that file is reopened and
    cut to the size a journal recorded, and writing continues from there. `keep_on_abort` leaves
    the temporary file for the journal to resume or delete.
    """

    def __init__(self, path: str, mode: str = "w", *, temporary: str | None = None,
                 resume_size: int | None = None, keep_on_abort: bool = False) -> None:
        self.path = path
        self._done = False
        self._keep_on_abort = keep_on_abort
        if path == STDOUT:
            if "b" in mode:
                raise UsageError("binary output cannot go to stdout ('-'); give a file name")
            self._temporary = None
            self.stream: IO[Any] = sys.stdout
            return
        output_folder(path)  # the final folder must exist, wherever the temporary file is
        self._temporary = temporary or _temporary_path(path)
        text_options = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        if resume_size is None:
            self.stream = open(self._temporary, mode, **text_options)
        else:
            with open(self._temporary, "r+b") as handle:
                handle.truncate(resume_size)
            self.stream = open(self._temporary, mode.replace("w", "a"), **text_options)

    def tell(self) -> int:
        """Flush and return the size written so far (for a journal)."""
        self.stream.flush()
        return os.path.getsize(self._temporary) if self._temporary else 0

    def _close(self) -> bool:
        """Close the stream, once; whether a temporary file is left to move or delete.

        Stdout is only flushed: the process's stdout is never closed, and what reached it cannot
        be taken back.
        """
        if self._done:
            return False
        self._done = True
        if self._temporary is None:
            self.stream.flush()
            return False
        self.stream.close()
        return True

    def commit(self) -> None:
        """Close and move the file into place (replacing any previous file); idempotent."""
        if self._close():
            try:
                move_into_place(self._temporary, self.path)
            except BaseException:
                _remove_quietly(self._temporary)
                raise

    def abort(self) -> None:
        """Close and delete the temporary file; the previous file at `path`, if any, is kept."""
        if self._close() and not self._keep_on_abort:
            _remove_quietly(self._temporary)


@contextlib.contextmanager
def atomic_output(path: str, mode: str = "w") -> Iterator[IO[Any]]:
    """Yield a stream for `path` that only replaces `path` if the block succeeds.

    `-` yields sys.stdout (text modes only). On any exception (KeyboardInterrupt included) the
    temporary file is deleted and the exception propagates.
    """
    output = AtomicFile(path, mode)
    try:
        yield output.stream
    except BaseException:
        output.abort()
        raise
    output.commit()


# ---------------------------------------------------------------------------------------------
# Metadata


def _json_default(value: Any) -> Any:
    """JSON for the numpy scalars/arrays and paths that end up in metadata."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON serialisable")


def _header_value(value: Any) -> str:
    # plain strings stay readable; anything else (or a string that would break the line) is JSON
    if isinstance(value, str) and not any(c in value for c in "\t\r\n"):
        return value
    return json.dumps(value, default=_json_default)


def metadata_header_lines(meta: dict[str, Any]) -> list[str]:
    """`#key=value` lines (no newline) for the top of a text output, in the order of `meta`."""
    lines = []
    for key, value in meta.items():
        if not key or any(c in key for c in "=\t\r\n "):
            raise ValueError(f"metadata key {key!r}: must be non-empty without '=' or whitespace")
        lines.append(f"#{key}={_header_value(value)}")
    return lines


def _json_text(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=2, default=_json_default) + "\n"


def write_json_sidecar(path: str, meta: dict[str, Any]) -> str:
    """Write `meta` to `path + ".json"` atomically and return that name."""
    if path == STDOUT:
        raise UsageError("stdout ('-') has no sidecar file; give an output file name")
    sidecar = path + ".json"
    with atomic_output(sidecar) as fh:
        fh.write(_json_text(meta))
    return sidecar


# ---------------------------------------------------------------------------------------------
# Text tables


def _cell(value: Any, missing: str = ".") -> str:
    """One TSV/BED cell: str() round-trips floats (Python and numpy) in their shortest form."""
    text = missing if value is None else str(value)
    if any(c in text for c in "\t\r\n"):
        raise ValueError(f"value {text!r} contains a tab or newline")
    return text


class _CommitOnExit:
    """`with` support for a writer with close() and abort(): leaving the block normally commits
    (close), an exception aborts."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _TextWriter(_CommitOnExit):
    """Shared life cycle of the text writers: header lines first, then one line per row.

    `temporary`, `resume_size` and `keep_on_abort` are AtomicFile's (a resumed file already has
    its header).
    """

    def __init__(self, path: str, meta: dict[str, Any] | None = None, **atomic: Any) -> None:
        header = metadata_header_lines(meta or {})  # validate before creating any file
        self.path = path
        self.resumed = atomic.get("resume_size") is not None
        self._output = AtomicFile(path, "w", **atomic)
        try:
            if not self.resumed:
                self._write_lines(header)
        except BaseException:
            self._output.abort()
            raise

    def tell(self) -> int:
        return self._output.tell()

    def _write_lines(self, lines: Iterable[str]) -> None:
        self._output.stream.writelines(line + "\n" for line in lines)

    def close(self) -> None:
        """Commit: the output appears at `path` now."""
        self._output.commit()

    def abort(self) -> None:
        """Discard everything written; a previous file at `path` is kept."""
        self._output.abort()


class TsvWriter(_TextWriter):
    """`#key=value` metadata lines, one column header line, then tab-separated rows."""

    def __init__(
        self, path: str, columns: Sequence[str], meta: dict[str, Any] | None = None, **atomic: Any
    ) -> None:
        super().__init__(path, meta, **atomic)
        self.columns = list(columns)
        if not self.resumed:
            self._write_lines(["\t".join(_cell(c) for c in self.columns)])

    def write_row(self, values: Sequence[Any]) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"row has {len(values)} values for {len(self.columns)} columns")
        # NA, not BED's '.', is what pandas and R read as missing
        self._write_lines(["\t".join(_cell(v, missing="NA") for v in values)])

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.write_row(row)


def _check_interval(start: int, end: int) -> None:
    if not 0 <= start < end:
        raise ValueError(f"BED interval {start}-{end}: needs 0 <= start < end")


def _check_strand(strand: str) -> None:
    if strand not in BED_STRANDS:
        raise ValueError(f"BED strand {strand!r}: must be one of + - .")


class Bed6Writer(_TextWriter):
    """BED6 lines (chrom, start, end, name, score, strand) after `#key=value` comment lines."""

    def write(
        self, chrom: str, start: int, end: int, name: str | None = None,
        score: float = 0, strand: str = ".",
    ) -> None:
        _check_interval(start, end)
        _check_strand(strand)
        self._write_lines(["\t".join(_cell(v) for v in (chrom, start, end, name, score, strand))])


def bed12_blocks(
    chrom_start: int, chrom_end: int, blocks: Sequence[tuple[int, int]]
) -> tuple[int, str, str]:
    """(blockCount, blockSizes, blockStarts) for absolute `blocks`, relative to chrom_start.

    BED12 requires sorted, non-overlapping blocks (touching is fine) that start at chromStart
    and end at chromEnd; anything else is a ValueError.
    """
    if not blocks:
        raise ValueError("BED12 needs at least one block")
    previous_end = chrom_start
    for block_start, block_end in blocks:
        if block_start >= block_end:
            raise ValueError(f"BED12 block {block_start}-{block_end} is empty or reversed")
        if block_start < previous_end:
            raise ValueError(f"BED12 block {block_start}-{block_end} overlaps or is out of order")
        previous_end = block_end
    if blocks[0][0] != chrom_start or blocks[-1][1] != chrom_end:
        raise ValueError(
            f"BED12 blocks must span exactly {chrom_start}-{chrom_end}, "
            f"got {blocks[0][0]}-{blocks[-1][1]}"
        )
    sizes = ",".join(str(e - s) for s, e in blocks)
    starts = ",".join(str(s - chrom_start) for s, _ in blocks)
    return len(blocks), sizes, starts


class Bed12Writer(_TextWriter):
    """BED12 lines; blocks are absolute (start, end) pairs, thickStart/End = chromStart/End."""

    def write(
        self, chrom: str, start: int, end: int, blocks: Sequence[tuple[int, int]],
        name: str | None = None, score: float = 0, strand: str = ".",
    ) -> None:
        _check_interval(start, end)
        _check_strand(strand)
        count, sizes, starts = bed12_blocks(start, end, blocks)
        fields = (chrom, start, end, name, score, strand, start, end, 0, count, sizes, starts)
        self._write_lines(["\t".join(_cell(v) for v in fields)])


# ---------------------------------------------------------------------------------------------
# Binary outputs


def _prepared_sidecar(path: str, meta: dict[str, Any]) -> AtomicFile:
    """The JSON sidecar of `path`, written to its temporary file, waiting for commit()."""
    sidecar = AtomicFile(path + ".json")
    try:
        sidecar.stream.write(_json_text(meta))
    except BaseException:
        sidecar.abort()
        raise
    return sidecar


def _refuse_stdout(path: str, what: str) -> None:
    if path == STDOUT:
        raise UsageError(f"{what} output cannot go to stdout ('-'); give a file name")


class _BinaryOutput(_CommitOnExit, abc.ABC):
    """The life cycle of a binary output written to a temporary file, with a JSON sidecar.

    close() finishes the file and prepares the sidecar, then renames the file into place and only
    then commits the sidecar, so a sidecar never describes a file that is not there; abort()
    deletes what was written. Subclasses set `path`, `_temporary` and `_done` and say how to
    finish and how to discard.
    """

    path: str
    _temporary: str
    _done: bool

    @abc.abstractmethod
    def _finish(self) -> dict[str, Any]:
        """Complete the temporary file and close it; return the sidecar's metadata."""

    def _committed(self) -> None:
        """The file is in place: commit what else goes with it (before the sidecar)."""

    def _discard(self) -> None:
        """Let go of the temporary file (and of anything else written) before it is deleted."""

    def close(self) -> None:
        """Finish the file and move it (and its sidecar) into place."""
        if self._done:
            return
        try:
            sidecar = _prepared_sidecar(self.path, self._finish())
        except BaseException:
            self.abort()
            raise
        self._done = True
        os.replace(self._temporary, self.path)
        self._committed()
        sidecar.commit()

    def abort(self) -> None:
        """Delete the temporary file and sidecars; nothing appears at `path`."""
        if self._done:
            return
        self._done = True
        self._discard()
        _remove_quietly(self._temporary)


class NpyWriter(_BinaryOutput):
    """A (n_rows, n_cols) .npy matrix filled in place, plus `.index.tsv` and `.npy.json` sidecars.

    The matrix is a memory map on a temporary file (rows can be written in any order without
    holding the matrix in memory); index rows describe matrix rows in order, one line each.
    """

    def __init__(
        self, path: str, n_rows: int, n_cols: int, dtype: Any,
        index_columns: Sequence[str] = (), meta: dict[str, Any] | None = None,
    ) -> None:
        _refuse_stdout(path, "NPY")
        if not path.endswith(".npy"):
            raise UsageError(f"{path}: an NPY output name must end with .npy")
        if n_rows < 0 or n_cols < 1:
            raise ValueError(f"NPY shape ({n_rows}, {n_cols}) is invalid")
        self.path = path
        self.index_path = path[: -len(".npy")] + ".index.tsv"
        self.shape = (n_rows, n_cols)
        self.dtype = np.dtype(dtype)
        self.meta = dict(meta or {})
        self._written = np.zeros(n_rows, dtype=bool)  # 1 byte per row, to catch gaps at commit
        self._index_rows = 0
        self._done = False
        self._temporary = _temporary_path(path)
        self._index: TsvWriter | None = None
        try:
            self._matrix = open_memmap(
                self._temporary, mode="w+", dtype=self.dtype, shape=self.shape
            )
            if index_columns:
                self._index = TsvWriter(self.index_path, index_columns, self.meta)
        except BaseException:
            self.abort()
            raise

    def write_rows(self, offset: int, array: np.ndarray) -> None:
        """Write rows offset .. offset+len(array)-1 (a 1-D array is one row)."""
        rows = np.asarray(array)
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
        if rows.ndim != 2 or rows.shape[1] != self.shape[1]:
            raise ValueError(f"rows of shape {rows.shape} do not fit {self.shape[1]} columns")
        if offset < 0 or offset + rows.shape[0] > self.shape[0]:
            raise ValueError(f"rows {offset}..{offset + rows.shape[0]} outside 0..{self.shape[0]}")
        self._matrix[offset : offset + rows.shape[0]] = rows
        self._written[offset : offset + rows.shape[0]] = True

    def write_index_row(self, values: Sequence[Any]) -> None:
        """Describe the next matrix row (rows are described in order)."""
        if self._index is None:
            raise ValueError("this NpyWriter has no index columns")
        self._index.write_row(values)
        self._index_rows += 1

    def _check_complete(self) -> None:
        missing = int((~self._written).sum())
        if missing:
            first = int(np.argmin(self._written))
            raise ValueError(f"{self.path}: {missing} rows never written (first: row {first})")
        if self._index is not None and self._index_rows != self.shape[0]:
            raise ValueError(
                f"{self.index_path}: {self._index_rows} index rows for {self.shape[0]} matrix rows"
            )

    def _finish(self) -> dict[str, Any]:
        """Check every row was written and flush the matrix."""
        self._check_complete()
        self._matrix.flush()
        self._matrix = None  # drop the memory map before the rename
        return {
            **self.meta, "shape": list(self.shape), "dtype": self.dtype.name,
            "index": os.path.basename(self.index_path) if self._index else None,
        }

    def _committed(self) -> None:
        if self._index is not None:
            self._index.close()

    def _discard(self) -> None:
        self._matrix = None
        if self._index is not None:
            self._index.abort()


class BigWigWriter(_BinaryOutput):
    """A bigWig track, written chromosome by chromosome in header order, plus a JSON sidecar.

    add() buffers contiguous pieces and hands pyBigWig large fixedStep numpy batches (one entry
    at a time is very slow). Entries must go in header order, sorted, non-overlapping, inside
    the chromosome, and finite: anything else is a ValueError (pyBigWig itself would accept
    entries past the chromosome end and NaN values without complaint).
    """

    def __init__(
        self, path: str, chrom_sizes: Sequence[tuple[str, int]], meta: dict[str, Any] | None = None
    ) -> None:
        import pyBigWig  # imported here: only bigWig output needs it

        _refuse_stdout(path, "bigWig")
        if not chrom_sizes:
            raise ValueError("a bigWig needs at least one chromosome")
        names = [name for name, _ in chrom_sizes]
        if len(set(names)) != len(names):
            raise ValueError("duplicate chromosome names in the bigWig header")
        if any(int(length) < 1 for _, length in chrom_sizes):
            raise ValueError("bigWig chromosome lengths must be positive")
        self.path = path
        self.meta = dict(meta or {})
        self._sizes = {name: int(length) for name, length in chrom_sizes}
        self._order = {name: rank for rank, (name, _) in enumerate(chrom_sizes)}
        self._chrom_rank = -1
        self._chrom: str | None = None
        self._position = 0  # end of the last entry on the current chromosome
        self._pending: list[np.ndarray] = []  # contiguous values not yet given to pyBigWig
        self._pending_start = 0
        self._pending_span = 1
        self._pending_values = 0
        self._done = False
        self._temporary = _temporary_path(path)
        try:
            self._bigwig = pyBigWig.open(self._temporary, "w")
            # the header is written once, up front: pyBigWig cannot add chromosomes later
            self._bigwig.addHeader([(name, int(length)) for name, length in chrom_sizes])
        except BaseException:
            _remove_quietly(self._temporary)
            raise

    def _enter_chrom(self, chrom: str) -> None:
        rank = self._order.get(chrom)
        if rank is None:
            raise ValueError(f"chromosome '{chrom}' is not in the bigWig header")
        if rank < self._chrom_rank:
            raise ValueError(
                f"chromosome '{chrom}' comes before '{self._chrom}' in the header; "
                "bigWig entries must follow header order"
            )
        if rank > self._chrom_rank:
            self._flush()
            self._chrom, self._chrom_rank, self._position = chrom, rank, 0

    def add(self, chrom: str, start: int, values: np.ndarray, span: int = 1) -> None:
        """Values for consecutive `span`-base steps from `start` (fixedStep, step = span)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return
        if span < 1:
            raise ValueError(f"span {span} must be at least 1")
        self._enter_chrom(chrom)
        end = start + span * values.size
        if start < self._position:
            raise ValueError(
                f"{chrom}:{start}: entries must be sorted and not overlap "
                f"(last end {self._position})"
            )
        if end > self._sizes[chrom]:
            raise ValueError(
                f"{chrom}:{start}-{end} runs past the chromosome end {self._sizes[chrom]}"
            )
        if not np.isfinite(values).all():
            raise ValueError(
                f"{chrom}:{start}-{end}: values must be finite "
                "(readers take NaN to mean no data)"
            )
        contiguous = self._pending and start == self._position and span == self._pending_span
        if not contiguous:
            self._flush()
            self._pending_start, self._pending_span = start, span
        self._pending.append(values)
        self._pending_values += values.size
        self._position = end
        if self._pending_values >= BIGWIG_BATCH_VALUES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        batch = np.concatenate(self._pending)
        self._pending, self._pending_values = [], 0
        self._bigwig.addEntries(
            self._chrom, self._pending_start, values=batch,
            span=self._pending_span, step=self._pending_span,
        )
        # the next batch continues right after this one
        self._pending_start += batch.size * self._pending_span

    def _finish(self) -> dict[str, Any]:
        """Write the remaining entries and close the bigWig."""
        self._flush()
        self._bigwig.close()
        return self.meta

    def _discard(self) -> None:
        with contextlib.suppress(Exception):
            self._bigwig.close()
