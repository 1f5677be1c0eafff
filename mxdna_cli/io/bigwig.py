"""bigWig output (through pyBigWig): fixedStep entries in header order, checked, with a JSON sidecar."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np

from mxdna_cli.io.writers import _BinaryOutput, _refuse_stdout, _remove_quietly, _temporary_path

BIGWIG_BATCH_VALUES = 1 << 20  # values buffered before one addEntries call (8 MB as float64)


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
