"""NPY output: a (rows, columns) matrix filled in place through a memory map, with its `.index.tsv`
and `.npy.json` sidecars, committed together."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from numpy.lib.format import open_memmap

from mxdna_cli.errors import UsageError
from mxdna_cli.io.writers import TsvWriter, _BinaryOutput, _refuse_stdout, _temporary_path


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
