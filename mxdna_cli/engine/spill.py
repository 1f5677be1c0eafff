"""Rows waiting for the end of a run: fixed-size records (a numpy structured dtype) appended to a
temporary file, read back as a memory map once every window is done, so that memory does not grow
with the genome. Used where an output can only be written at the end (a bigWig's header, a VCF in
input order from scores computed out of it).

The file sits next to the output, or, in a resumable run, in the journal's folder, where the
journal records its size at every checkpoint and a resumed run cuts it back to that size.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

import numpy as np

from mxdna_cli.engine.journal import Journal, reopen_for_append
from mxdna_cli.io.writers import STDOUT

BUFFERED_ROWS = 4096  # rows gathered in memory before one write


class RowSpill:
    """Rows of `dtype` appended to a temporary file (see the module docstring)."""

    def __init__(self, output: str, dtype: np.dtype, journal: Journal, key: str = "rows") -> None:
        self.dtype = np.dtype(dtype)
        self._owned = not journal.enabled
        if self._owned:
            folder = os.path.dirname(os.path.abspath(output)) if output != STDOUT else None
            name = os.path.basename(output) if output != STDOUT else "mxdna"
            fd, self.path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".rows.tmp")
            os.close(fd)
            self._file = reopen_for_append(self.path, "wb", None)
        else:
            self.path = journal.path(key)
            self._file = reopen_for_append(self.path, "wb", journal.size(key))
            journal.track(key, self)  # its tell() writes the buffered rows first
        self._rows: list[tuple[Any, ...]] = []

    def add(self, *row: Any) -> None:
        self._rows.append(row)
        if len(self._rows) >= BUFFERED_ROWS:
            self.tell()

    def tell(self) -> int:
        """Write the buffered rows; the file's size."""
        if self._rows:
            self._file.write(np.array(self._rows, dtype=self.dtype).tobytes())
            self._rows = []
        return self._file.tell()

    def rows(self) -> np.ndarray:
        """Every row, in the order added (a read-only memory map; empty without rows)."""
        self.tell()
        self._file.close()
        if not os.path.getsize(self.path):
            return np.zeros(0, self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r")

    def remove(self) -> None:
        """Close and delete the file (a journal's folder is the journal's to keep or remove)."""
        with contextlib.suppress(Exception):
            self._file.close()
        if self._owned:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
