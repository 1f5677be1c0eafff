"""The tokenize verb: the model's learnt tokenization as BED, basic units (BED6) and assembled tokens
with the units their deformable sampling reads (BED12), plus unit-length counts and a histogram."""

from __future__ import annotations

import contextlib
import functools
import heapq
from dataclasses import dataclass

import numpy as np

from mxdna_cli.defaults import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_MIN_WEIGHT,
)
from mxdna_cli.engine.inputs import Inputs, Target
from mxdna_cli.engine.journal import Journal
from mxdna_cli.engine.outputs import check_output, run_fingerprint, run_meta
from mxdna_cli.engine.report import Reporter, Summary, timed
from mxdna_cli.engine.forward import backbone
from mxdna_cli.engine.pipeline import Pipeline, WindowTask, window_tasks
from mxdna_cli.engine.stitch import Piece
from mxdna_cli.errors import UsageError
from mxdna_cli.io.writers import (
    STDOUT,
    Bed6Writer,
    Bed12Writer,
    TsvWriter,
    atomic_output,
)
from mxdna_cli.runtime import LoadedModel
from mxdna_cli.windows import DEFAULT_WINDOW, Tiling, resolve_stride


@dataclass
class TokenizeSettings:
    units: str | None = "-"
    tokens: str | None = None
    summary: str | None = None
    plot: str | None = None
    min_weight: float = DEFAULT_MIN_WEIGHT
    window: int = DEFAULT_WINDOW
    stride: int | None = None
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    resume: bool = False  # continue an interrupted run from its journal


def unit_name(length: int, expert: int, clipped: bool) -> str:
    return f"{length}nt_e{expert}" + ("_clip" if clipped else "")


def gate_score(gate: float) -> int:
    """BED scores are integers 0..1000: the gate probability x 1000, rounded."""
    return int(min(1000, max(0, round(gate * 1000))))


def token_footprints(piece: Piece, min_weight: float) -> list[tuple[list[tuple[int, int]], float]]:
    """For each token of a piece: its units' model-space spans (merged) and its largest sampling weight.

    A token's footprint is its own unit (its residual path) plus every unit of its window whose
    centre gets an effective weight (modulation x linear-interpolation weight) above `min_weight`
    from one of the token's deformable sampling positions.
    """
    out = piece.output
    window = piece.window
    n_bases = window.end - window.start
    centre_to_unit = np.full(n_bases, -1, dtype=np.int64)
    centre_to_unit[out.centres] = np.arange(len(out.starts))
    samples = out.sample_positions[piece.selected]  # (S, f)
    modulation = out.modulation[piece.selected]
    low = np.floor(samples)
    frac = samples - low
    low = low.astype(np.int64)
    positions = np.stack([low, low + 1], axis=-1)  # (S, f, 2)
    weights = np.stack([1 - frac, frac], axis=-1) * modulation[..., None]
    inside = (positions >= 0) & (positions < n_bases)
    units = np.where(inside, centre_to_unit[np.clip(positions, 0, n_bases - 1)], -1)
    hits = units >= 0
    starts = window.start + out.starts
    ends = starts + out.lengths
    result = []
    for row, own in enumerate(piece.selected.tolist()):
        row_units = units[row][hits[row]]
        row_weights = weights[row][hits[row]]
        chosen = {own} | set(row_units[row_weights > min_weight].tolist())
        score = float(row_weights.max()) if row_weights.size else 0.0
        blocks: list[tuple[int, int]] = []
        for unit in sorted(chosen):
            a, b = int(starts[unit]), int(ends[unit])
            if blocks and blocks[-1][1] == a:
                blocks[-1] = (blocks[-1][0], b)  # touching units make one block
            else:
                blocks.append((a, b))
        result.append((blocks, score))
    return result


def _genome_blocks(target: Target, strand: str, blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Model-space blocks (sorted) as sorted forward genome blocks (plain ints: this runs per token)."""
    if strand == "+":
        return [(target.start + a, target.start + b) for a, b in blocks]
    return [(target.end - b, target.end - a) for a, b in reversed(blocks)]


def check_one_strand(strand: str) -> None:
    """Refuse `--strand both`: the two strands give different units, which cannot be averaged."""
    if strand == "both":
        raise UsageError("tokenize --strand both: the two strands give different units; "
                         "run --strand forward and --strand reverse separately")


def tokenize(inputs: Inputs, loaded: LoadedModel, settings: TokenizeSettings, reporter: Reporter | None = None) -> Summary:
    """Basic units as BED6, assembled tokens as BED12, a unit-length summary and histogram."""
    reporter = reporter or Reporter()
    s = settings
    check_one_strand(inputs.spec.strand)
    if s.units is None and s.tokens is None and s.summary is None and s.plot is None:
        raise UsageError("nothing to write: give --export-bed, --tokens, --summary or --plot")
    outputs = [p for p in (s.units, s.tokens, s.summary, s.plot) if p is not None]
    if outputs.count(STDOUT) > 1:
        raise UsageError("only one output can go to stdout ('-')")
    if s.plot == STDOUT:
        raise UsageError("--plot: a PNG cannot go to stdout ('-'); give a file name")
    if not 0 <= s.min_weight < 2:
        raise UsageError(f"--min-weight {s.min_weight}: must be in [0, 2) (modulation x interpolation weight)")
    for path in outputs:
        check_output(path)
    stride = resolve_stride(s.window, s.stride)
    meta = run_meta("tokenize", loaded, inputs, window=s.window, stride=stride, strand=inputs.spec.strand,
                    batch_tokens=s.batch_tokens)
    unit_meta = {**meta, "name": "<unit length>nt_e<expert> (_clip: clipped at a window seam)",
                 "score": "round(1000 x gate probability)"}
    token_meta = {**meta, "min_weight": s.min_weight, "name": "token index within its record",
                  "score": "min(1000, round(1000 x largest sampling weight))"}
    inputs.peek()  # a stream that is not FASTA fails before any output exists
    pipeline = Pipeline(loaded, batch_tokens=s.batch_tokens, reporter=reporter)
    forward = functools.partial(backbone, loaded, sampling=s.tokens is not None)
    geometry = Tiling(s.window, stride)
    # Every BED is coordinate-sorted (contigs in FASTA order, by start within each), as tabix and
    # bedtools want: targets run in genome order when the plan is known, and rows wait in a heap
    # until no later row can start before them (a row never starts before its window).
    next_start: dict[int, float] = {}  # a target's rows can be released only below the next one's start
    if inputs.known:
        rank = inputs.contig_order()
        order = sorted(inputs.plan(), key=lambda t: (rank[t.chrom], t.start, t.end))
        for before, after in zip(order, order[1:]):
            if before.chrom == after.chrom:
                next_start[before.index] = after.start
    else:  # a stream: whole records in file order, each its own contig
        rank, order = {}, None
    if not pipeline.writes:  # another torchrun rank: run a share of the windows, write nothing
        pipeline.serve(window_tasks(inputs.targets(order), geometry), forward)
        return Summary()
    fingerprint = run_fingerprint(meta, inputs, outputs=[s.units, s.tokens, s.summary, s.plot], min_weight=s.min_weight)
    journal = Journal(outputs, fingerprint, resume=s.resume, warn=reporter.warn)
    state = journal.state or {"summary": Summary(outputs=outputs), "units": [], "tokens": [], "rows": 0,
                              "counts": np.zeros(max(loaded.kernel_sizes) + 1, dtype=np.int64)}
    summary: Summary = state["summary"]
    counts: np.ndarray = state["counts"]

    with journal.guard(), contextlib.ExitStack() as stack:
        unit_writer = token_writer = None
        if s.units is not None:
            unit_writer = stack.enter_context(Bed6Writer(s.units, unit_meta, **journal.file_options("units")))
            journal.track("units", unit_writer)
        if s.tokens is not None:
            token_writer = stack.enter_context(Bed12Writer(s.tokens, token_meta, **journal.file_options("tokens")))
            journal.track("tokens", token_writer)

        def contig_rank(chrom: str) -> int:
            return rank.setdefault(chrom, len(rank))

        def push(heap: str, chrom: str, start: int, end: int, row: tuple) -> None:
            state["rows"] += 1
            heapq.heappush(state[heap], (contig_rank(chrom), start, end, state["rows"], chrom, row))

        def release(below: tuple[int, int] | None) -> None:
            """Write every waiting row that starts before `below` (all of them for None)."""
            for heap, write in (("units", write_unit), ("tokens", write_token)):
                rows = state[heap]
                while rows and (below is None or rows[0][:2] < below):
                    _, _, _, _, chrom, row = heapq.heappop(rows)
                    write(chrom, *row)

        def write_unit(chrom: str, a: int, b: int, k: int, e: int, c: bool, g: float, strand: str) -> None:
            unit_writer.write(chrom, a, b, unit_name(k, e, c), gate_score(g), strand)

        def write_token(chrom: str, blocks: list, index: int, score: float, strand: str) -> None:
            token_writer.write(chrom, blocks[0][0], blocks[-1][1], blocks, name=str(index),
                               score=int(min(1000, round(1000 * score))), strand=strand)

        def on_piece(task: WindowTask, piece: Piece) -> None:
            target, strand = task.target, task.strand
            np.add.at(counts, piece.lengths, 1)
            if unit_writer is not None:
                starts, ends = target.to_genome(strand, piece.starts, piece.ends)
                for a, b, k, e, c, g in zip(starts.tolist(), ends.tolist(), piece.lengths.tolist(),
                                            piece.experts.tolist(), piece.clipped.tolist(), piece.gates.tolist()):
                    push("units", target.chrom, a, b, (a, b, k, e, c, g, strand))
            if token_writer is not None:
                for index, (blocks, score) in enumerate(token_footprints(piece, s.min_weight)):
                    genome = _genome_blocks(target, strand, blocks)
                    push("tokens", target.chrom, genome[0][0], genome[-1][1],
                         (genome, piece.first_token + index, score, strand))
            # later rows of this target start at or after the current window on '+' (windows run left
            # to right), anywhere in the target on '-'; later targets at or after their own start
            floor = target.start + task.window.start if strand == "+" else target.start
            release((contig_rank(target.chrom), min(floor, next_start.get(target.index, floor))))

        def on_target(target: Target) -> None:
            summary.count(target)

        tasks = window_tasks(inputs.targets(order), geometry, reporter)
        timed(summary, reporter, inputs.nucleotides_to_read, "tokenizing",
              lambda: pipeline.stitched(tasks, forward, on_piece, on_target, state=state, journal=journal))
        release(None)
        lengths = np.arange(len(counts))
        total = int(counts.sum())
        summary.extra["length_counts"] = {int(k): int(counts[k]) for k in lengths if counts[k]}
        summary.extra["units"] = total
        summary.extra["mean_length"] = float((counts * lengths).sum() / total) if total else float("nan")
        if s.summary is not None:
            with TsvWriter(s.summary, ("length", "count", "fraction"), {**meta, "mean_length": round(summary.extra["mean_length"], 4), "units": total}) as table:
                for k in range(1, len(counts)):
                    table.write_row([k, int(counts[k]), round(counts[k] / total, 6) if total else 0.0])
        if s.plot is not None:
            plot_lengths(counts, s.plot, title=f"{loaded.name}: {total:,} basic units, mean {summary.extra['mean_length']:.2f} nt")
    summary.windows = pipeline.windows
    return summary


def plot_lengths(counts: np.ndarray, path: str, title: str) -> None:
    """A bar chart of basic units per length, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = np.arange(1, len(counts))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(lengths, counts[1:], color="#3b6ea5")
    ax.set_xticks(lengths)
    ax.set_xlabel("basic unit length (nt)")
    ax.set_ylabel("units")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        with atomic_output(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
    finally:
        plt.close(fig)

