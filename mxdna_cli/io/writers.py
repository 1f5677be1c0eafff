"""Write results atomically: the atomic-file machinery, provenance headers, TSV, BED6 and BED12, and the
life cycle of binary outputs with a JSON sidecar (their formats: `io/npy.py`, `io/bigwig.py`).

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

from mxdna_cli.errors import UsageError

STDOUT = "-"
BED_STRANDS = ("+", "-", ".")


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
