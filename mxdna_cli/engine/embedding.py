"""The embed verb: token states of the model pooled per record or region (mean, max, [CLS]) or
written per token with its coordinates, to NPY (with index and JSON sidecars) or TSV."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from mxdna_cli.defaults import (
    DEFAULT_BATCH_TOKENS,
    OUT_DTYPES,
    POOLINGS,
)
from mxdna_cli.engine.inputs import Inputs, Target
from mxdna_cli.engine.journal import Journal, reopen_for_append
from mxdna_cli.engine.outputs import (
    check_output,
    output_format,
    run_fingerprint,
    run_meta,
)
from mxdna_cli.engine.report import Reporter, Summary, timed
from mxdna_cli.engine.forward import backbone, resolve_layer
from mxdna_cli.engine.pipeline import Pipeline, WindowTask, window_tasks
from mxdna_cli.engine.stitch import Piece
from mxdna_cli.errors import UsageError
from mxdna_cli.io.npy import NpyWriter
from mxdna_cli.io.writers import TsvWriter
from mxdna_cli.runtime import LoadedModel
from mxdna_cli.windows import DEFAULT_WINDOW, Tiling, resolve_stride

INDEX_COLUMNS = ("name", "chrom", "start", "end", "strand", "n_fraction", "soft_masked_fraction")
TOKEN_COLUMNS = ("record", "chrom", "centre", "unit_start", "unit_end", "strand")
RECORD_COLUMNS = INDEX_COLUMNS + ("first_row", "n_tokens")


@dataclass
class EmbedSettings:
    output: str
    fmt: str | None = None
    pool: str = "mean"
    layer: int | None = None
    dtype_out: str = "float32"
    window: int = DEFAULT_WINDOW
    stride: int | None = None
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    resume: bool = False  # continue an interrupted run from its journal


class Pooler:
    """Per-target running mean / max / [CLS] mean over the kept tokens of each pass."""

    def __init__(self, d: int, pool: str, strands: int) -> None:
        self.pool = pool
        self.sum = np.zeros((strands, d), dtype=np.float64)
        self.count = np.zeros(strands, dtype=np.int64)
        self.max = np.full((strands, d), -np.inf, dtype=np.float32)

    def add(self, pass_index: int, piece: Piece) -> None:
        if self.pool == "cls":
            # one [CLS] per window: every window of the pass is one piece
            self.sum[pass_index] += piece.output.cls
            self.count[pass_index] += 1
            return
        states = piece.states
        if len(states) == 0:
            return
        if self.pool == "mean":
            self.sum[pass_index] += states.sum(axis=0, dtype=np.float64)
            self.count[pass_index] += len(states)
        else:
            np.maximum(self.max[pass_index], states.max(axis=0), out=self.max[pass_index])
            self.count[pass_index] += len(states)

    def vector(self) -> np.ndarray:
        if self.pool == "max":
            per_pass = self.max.astype(np.float64)
        else:
            per_pass = self.sum / np.maximum(self.count, 1)[:, None]
        return per_pass.mean(axis=0).astype(np.float32)


def check_pool_strand(pool: str, strand: str) -> None:
    """Refuse per-token rows (`--pool none`) of both strands: the two strands' tokens differ."""
    if pool == "none" and strand == "both":
        raise UsageError("--pool none with --strand both: per-token outputs of the two strands cannot be averaged "
                         "(their tokens differ); run --strand forward and --strand reverse separately")


def embed(inputs: Inputs, loaded: LoadedModel, settings: EmbedSettings, reporter: Reporter | None = None) -> Summary:
    """Embeddings per target (pooled) or per token (`pool='none'`) to NPY or TSV."""
    reporter = reporter or Reporter()
    s = settings
    if s.pool not in POOLINGS:
        raise UsageError(f"--pool {s.pool}: choose from {', '.join(POOLINGS)}")
    if s.dtype_out not in OUT_DTYPES:
        raise UsageError(f"--dtype-out {s.dtype_out}: choose from {', '.join(OUT_DTYPES)}")
    check_pool_strand(s.pool, inputs.spec.strand)
    fmt = output_format(s.output, s.fmt)
    check_output(s.output)
    stride = resolve_stride(s.window, s.stride)
    layer_index, layer_shown = resolve_layer(s.layer, loaded.num_token_layers)
    meta = run_meta(
        "embed", loaded, inputs, window=s.window, stride=stride, pooling=s.pool, strand=inputs.spec.strand,
        layer=layer_shown, dtype_out=s.dtype_out if fmt == "npy" else None, batch_tokens=s.batch_tokens,
    )
    inputs.peek()  # a stream that is not FASTA fails before any output exists
    pipeline = Pipeline(loaded, batch_tokens=s.batch_tokens, reporter=reporter)
    forward = functools.partial(backbone, loaded, layer=layer_index, states=True)
    geometry = Tiling(s.window, stride)
    if not pipeline.writes:  # another torchrun rank: run a share of the windows, write nothing
        pipeline.serve(window_tasks(inputs.targets(), geometry), forward)
        return Summary()
    journal = Journal([s.output], run_fingerprint(meta, inputs, output=s.output, format=fmt),
                      resume=s.resume, warn=reporter.warn)
    state = journal.state or {"summary": Summary(outputs=[s.output]), "poolers": {}, "records": [], "counts": {}}
    summary: Summary = state["summary"]

    def run(on_piece: Callable[[WindowTask, Piece], None], on_target: Callable[[Target], None]) -> None:
        """Run every window of every target, stitched, calling back per piece and per finished target."""
        tasks = window_tasks(inputs.targets(), geometry, reporter)
        timed(summary, reporter, inputs.nucleotides_to_read, "embedding",
              lambda: pipeline.stitched(tasks, forward, on_piece, on_target, state=state, journal=journal))

    with journal.guard():
        if s.pool == "none":
            _embed_tokens(run, loaded.hidden_size, s, fmt, meta, state, journal)
        else:
            _embed_pooled(run, loaded.hidden_size, s, fmt, meta, state, journal)
    summary.windows = pipeline.windows
    return summary


def _embed_pooled(run, d: int, s: EmbedSettings, fmt: str, meta: dict[str, Any], state: dict[str, Any],
                  journal: Journal) -> None:
    poolers: dict[int, Pooler] = state["poolers"]
    summary: Summary = state["summary"]

    def on_piece(task: WindowTask, piece: Piece) -> None:
        pooler = poolers.setdefault(task.target.index, Pooler(d, s.pool, len(task.target.strands)))
        pooler.add(task.pass_index, piece)

    if fmt == "tsv":
        writer = TsvWriter(s.output, INDEX_COLUMNS + tuple(f"e{i}" for i in range(d)), meta,
                           **journal.file_options("output"))
        journal.track("output", writer)

        def on_target(target: Target) -> None:
            writer.write_row(_index_row(target) + _value_cells(poolers.pop(target.index).vector()))
            summary.count(target)

        with writer:
            run(on_piece, on_target)
        return
    # NPY: rows wait in a spill file (the row count of a stream is known only at its end), so memory
    # does not grow with the input; then they are copied into the matrix
    spill = _Spill(s.output, d, s.dtype_out, journal)

    def on_target_spill(target: Target) -> None:
        spill.write(poolers.pop(target.index).vector()[None, :], [_index_row(target)])
        summary.count(target)

    try:
        run(on_piece, on_target_spill)
        _copy_spill(spill, s.output, d, s.dtype_out, INDEX_COLUMNS, meta)
    finally:
        spill.remove()


def _copy_spill(spill: "_Spill", output: str, d: int, dtype: str, columns: Sequence[str],
                meta: dict[str, Any]) -> None:
    """Write the spilled rows and index lines as the NPY output (in blocks: bounded memory)."""
    matrix, index_rows = spill.finish()
    with NpyWriter(output, spill.rows, d, dtype, index_columns=columns, meta=meta) as npy:
        step = 65536
        for offset in range(0, spill.rows, step):
            npy.write_rows(offset, np.asarray(matrix[offset : offset + step]))
        for row in index_rows:
            npy.write_index_row(row)
    del matrix


class _Spill:
    """Rows of unknown count, appended to temporary files (next to the output, or in a resumable
    run's journal folder), then copied into place."""

    def __init__(self, output: str, d: int, dtype: str, journal: Journal | None = None) -> None:
        self.d = d
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._owned = not (journal is not None and journal.enabled)  # else the journal's folder holds them
        if not self._owned:
            self.matrix_path, self.index_path = journal.path("rows"), journal.path("index")
            matrix_size, index_size = journal.size("rows"), journal.size("index")
            self._matrix = reopen_for_append(self.matrix_path, "wb", matrix_size)
            self._index = reopen_for_append(self.index_path, "w", index_size)
            self.rows = (matrix_size or 0) // (self.d * self.dtype.itemsize)
            journal.track("rows", self._matrix)
            journal.track("index", self._index)
            return
        folder = os.path.dirname(os.path.abspath(output))
        base = os.path.basename(output)
        fd, self.matrix_path = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".rows.tmp")
        self._matrix = os.fdopen(fd, "wb")
        fd, self.index_path = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".index.tmp")
        self._index = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, states: np.ndarray, index_rows: Iterable[Sequence[Any]]) -> None:
        self._matrix.write(np.ascontiguousarray(states, dtype=self.dtype).tobytes())
        self._index.writelines("\t".join(str(v) for v in row) + "\n" for row in index_rows)
        self.rows += len(states)

    def finish(self) -> tuple[np.ndarray, Iterator[list[str]]]:
        self._matrix.close()
        self._index.close()
        if self.rows == 0:
            matrix = np.zeros((0, self.d), dtype=self.dtype)
        else:
            matrix = np.memmap(self.matrix_path, dtype=self.dtype, mode="r", shape=(self.rows, self.d))

        def index_rows() -> Iterator[list[str]]:
            with open(self.index_path, encoding="utf-8") as handle:
                for line in handle:
                    yield line.rstrip("\n").split("\t")

        return matrix, index_rows()

    def remove(self) -> None:
        """Close and delete the spill files (a journal's folder is the journal's to keep or remove)."""
        for handle in (self._matrix, self._index):
            with contextlib.suppress(Exception):
                handle.close()
        if not self._owned:
            return
        for path in (self.matrix_path, self.index_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _token_rows(task: WindowTask, piece: Piece) -> list[list[Any]]:
    target, strand = task.target, task.strand
    centres = target.centre_to_genome(strand, piece.centres)
    starts, ends = target.to_genome(strand, piece.starts, piece.ends)
    return [
        [target.name, target.chrom, int(c), int(a), int(b), strand]
        for c, a, b in zip(centres.tolist(), starts.tolist(), ends.tolist())
    ]


def _embed_tokens(run, d: int, s: EmbedSettings, fmt: str, meta: dict[str, Any], state: dict[str, Any],
                  journal: Journal) -> None:
    summary: Summary = state["summary"]
    if fmt == "tsv":
        writer = TsvWriter(s.output, TOKEN_COLUMNS + tuple(f"e{i}" for i in range(d)), meta,
                           **journal.file_options("output"))
        journal.track("output", writer)

        def on_piece(task: WindowTask, piece: Piece) -> None:
            for row, state_row in zip(_token_rows(task, piece), piece.states):
                writer.write_row(row + _value_cells(state_row))

        with writer:
            run(on_piece, summary.count)
        return

    # NPY: the number of tokens is known only after the model ran; rows wait in a spill file
    if not s.output.endswith(".npy"):
        raise UsageError(f"{s.output}: an NPY output name must end with .npy")
    records_path = s.output[: -len(".npy")] + ".records.tsv"
    spill = _Spill(s.output, d, s.dtype_out, journal)
    records: list[list[Any]] = state["records"]
    counts: dict[int, int] = state["counts"]

    def on_piece_npy(task: WindowTask, piece: Piece) -> None:
        spill.write(piece.states, _token_rows(task, piece))
        counts[task.target.index] = counts.get(task.target.index, 0) + len(piece)

    def on_target_npy(target: Target) -> None:
        n = counts.pop(target.index, 0)
        records.append(_index_row(target) + [spill.rows - n, n])
        summary.count(target)

    try:
        run(on_piece_npy, on_target_npy)
        meta = {**meta, "records": os.path.basename(records_path)}
        # entered first, committed last: the records table never describes a missing matrix
        with TsvWriter(records_path, RECORD_COLUMNS, meta) as record_writer:
            _copy_spill(spill, s.output, d, s.dtype_out, TOKEN_COLUMNS, meta)
            record_writer.write_rows(records)
    finally:
        spill.remove()
    summary.outputs.append(records_path)


def _value_cells(values: np.ndarray) -> list[str]:
    """Numbers as TSV cells, six significant digits."""
    return [f"{v:.6g}" for v in values.tolist()]


def _index_row(target: Target) -> list[Any]:
    """The INDEX_COLUMNS of a target."""
    return [target.name, target.chrom, target.start, target.end, target.strand_label,
            target.n_fraction, target.soft_masked_fraction]
