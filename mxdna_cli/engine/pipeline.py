"""The one loop every verb runs: targets -> window tasks -> token-budget batches -> model -> results
in task order -> the verb's consumer (which stitches, pools and writes).

    targets        engine/inputs.py: records or regions, with their sequences (read, encode)
    window tasks   `window_tasks`: each target cut by a geometry of `mxdna_cli.windows`
    batches        `Pipeline.run`: tasks gathered in chunks, sorted by length inside a chunk (less
                   padding) and packed into batches of at most `batch_tokens` input positions
                   (nucleotides + [CLS] + [SEP]; a longer window is a batch of its own)
    model          engine/forward.py: `backbone` or `classify` on one batch
    stitch         `Pipeline.stitched` + engine/stitch.py: a pass's windows joined into one tiling
    write          the verb modules (embedding.py, tokenization.py, prediction.py)

Two things live only here:
- `--resume`: a `Journal` skips the tasks an interrupted run did and is checkpointed at chunk
  boundaries, so the resumed run batches exactly as an uninterrupted one.
- torchrun: every rank builds the same tasks and the same chunks and batches; the batches of a
  chunk are shared between the ranks, balanced by padded tokens (`distributed.share`), each rank
  runs its own and rank 0 gathers the results and hands them on in task order. A batch is the
  same batch whichever rank runs it, so rank 0 writes the files one process writes. The other
  ranks call `serve` instead of writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from mxdna_cli import distributed
from mxdna_cli import sequence as dna
from mxdna_cli.defaults import DEFAULT_BATCH_TOKENS
from mxdna_cli.engine.forward import WindowOutput
from mxdna_cli.engine.inputs import Target
from mxdna_cli.engine.journal import Journal
from mxdna_cli.engine.memory import bound_memory, release_freed_memory
from mxdna_cli.engine.report import Reporter, check_target
from mxdna_cli.engine.stitch import Piece, UnitStitcher
from mxdna_cli.errors import UsageError
from mxdna_cli.runtime import LoadedModel
from mxdna_cli.windows import Scan, Window

CHUNK_BATCHES = 8  # windows gathered (in batches' worth of tokens) before sorting them by length


# --------------------------------------------------------------------------- window tasks


@dataclass
class WindowTask:
    """One window of one strand ('pass') of one target, and the ids the model reads there.

    `window` is in the coordinates of the strand's ids (model space) for tiled and whole-record
    geometries; a scan's windows are in forward coordinates, shared by both strands (the '-' ids are
    the reverse complement of the forward window), so that the strands' values can be averaged.
    """

    target: Target
    strand: str
    pass_index: int
    window: Window
    window_index: int
    n_windows: int
    ids: np.ndarray

    @property
    def progress(self) -> int:
        """Nucleotides of output this task accounts for (its kept part)."""
        return self.window.keep_end - self.window.keep_start

    @property
    def last(self) -> bool:
        """The last window of its pass."""
        return self.window_index == self.n_windows - 1


def window_tasks(targets: Iterable[Target], geometry: Any, reporter: Reporter | None = None, *,
                 max_n_fraction: float | None = None, on_gap: Callable[[Target, Window], None] | None = None,
                 on_target: Callable[[Target], None] | None = None) -> Iterator[WindowTask]:
    """The window tasks of `targets` cut by `geometry` (`windows.Tiling`, `Scan` or `Whole`).

    Tiled and whole-record tasks come pass by pass (every window of one strand, then the other);
    scan tasks window by window, the strands of one window together. A scan window with more than
    `max_n_fraction` N (an assembly gap) is left out and reported to `on_gap`. `on_target` sees
    each target as its tasks start (a track records contig names and sizes there).
    """
    for target in targets:
        if reporter is not None:
            check_target(target, reporter)
        if on_target is not None:
            on_target(target)
        if isinstance(geometry, Scan):
            yield from _scan_tasks(target, geometry, max_n_fraction, on_gap)
            continue
        for pass_index, strand in enumerate(target.strands):
            ids = target.strand_ids(strand)
            plan = geometry.windows(target.length)
            for index, win in enumerate(plan):
                yield WindowTask(target, strand, pass_index, win, index, len(plan), ids(win.start, win.end))


def _scan_tasks(target: Target, scan: Scan, max_n_fraction: float | None,
                on_gap: Callable[[Target, Window], None] | None) -> Iterator[WindowTask]:
    plan = scan.windows(target.length)
    if not plan:
        return
    ids = target.strand_ids("+")
    target.held = None  # a scan needs only the ids: do not keep a streamed record's text as well
    limit = None if max_n_fraction is None else max_n_fraction * scan.window
    for index, win in enumerate(plan):
        forward = ids(win.start, win.end)
        # counted per window: no per-base table beside the ids (4-8 bytes/nt on a chromosome)
        if limit is not None and np.count_nonzero(forward == dna.UNK) > limit:
            if on_gap is not None:
                on_gap(target, win)
            continue
        for pass_index, strand in enumerate(target.strands):
            piece = forward if strand == "+" else np.ascontiguousarray(dna.reverse_complement_ids(forward))
            yield WindowTask(target, strand, pass_index, win, index, len(plan), piece)


# --------------------------------------------------------------------------- batches


def batch_groups(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices of windows of `lengths` nucleotides grouped into batches: longest first, each batch
    within `batch_tokens` input positions once padded (nucleotides + [CLS] + [SEP]; a window
    longer than the budget is a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        positions = lengths[i] + 2
        if current and (len(current) + 1) * max(width, positions) > batch_tokens:
            groups.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, positions)
    if current:
        groups.append(current)
    return groups


def check_batch_tokens(batch_tokens: int) -> int:
    if batch_tokens < 1:
        raise UsageError(f"--batch-tokens {batch_tokens}: must be at least 1")
    return batch_tokens


# --------------------------------------------------------------------------- the loop


class Pipeline:
    """Runs window tasks through a model in token-budget batches and hands results back in order."""

    def __init__(self, loaded: LoadedModel | None, *, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                 reporter: Reporter | None = None) -> None:
        self.loaded = loaded
        self.batch_tokens = check_batch_tokens(batch_tokens)
        self.reporter = reporter or Reporter()
        self.world = distributed.start(loaded.device.type if loaded is not None else "cpu")
        self.windows = 0  # windows run (by every rank, counted on rank 0)
        bound_memory()

    @property
    def writes(self) -> bool:
        """Whether this process writes the outputs (rank 0 under torchrun, else always)."""
        return self.world.main

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        return batch_groups(lengths, self.batch_tokens)

    def run(self, tasks: Iterable[Any], forward: Callable[[list[np.ndarray]], list[Any]], *,
            journal: Journal | None = None, state: Any = None) -> Iterator[tuple[Any, Any]]:
        """(task, result) for every task (objects with `.ids` and `.progress`), in task order.

        With an enabled `journal`, the tasks it has done are skipped and `state` is saved with it at
        every chunk boundary (a point where a resumed run can start and batch exactly as this one).
        On a rank other than 0 nothing is yielded: its results go to rank 0.
        """
        done = journal.tasks_done if journal is not None and journal.enabled else 0
        done = self.world.broadcast(done)
        checkpoint = None
        if journal is not None and journal.enabled:
            checkpoint = lambda count: journal.checkpoint(count, state)  # noqa: E731
        chunk: list[Any] = []
        tokens = 0
        limit = self.batch_tokens * CHUNK_BATCHES
        for task in islice(tasks, done, None):
            chunk.append(task)
            tokens += len(task.ids) + 2
            if tokens >= limit:
                yield from self._run_chunk(chunk, forward)
                done += len(chunk)
                chunk, tokens = [], 0
                if checkpoint is not None:
                    checkpoint(done)
        if chunk:
            yield from self._run_chunk(chunk, forward)

    def serve(self, tasks: Iterable[Any], forward: Callable[[list[np.ndarray]], list[Any]]) -> None:
        """A rank other than 0: run this rank's share of every chunk and send the results to rank 0."""
        for _ in self.run(tasks, forward):
            pass

    def _run_chunk(self, chunk: list[Any], forward) -> Iterator[tuple[Any, Any]]:
        groups = self.batches([len(task.ids) for task in chunk])
        world = self.world
        if world.distributed:
            widths = [max(len(chunk[i].ids) for i in group) + 2 for group in groups]
            owners = distributed.share([len(g) * w for g, w in zip(groups, widths)], world.size)
            groups = [group for group, owner in zip(groups, owners) if owner == world.rank]
        mine: dict[int, Any] = {}
        for group in groups:
            for i, output in zip(group, forward([chunk[i].ids for i in group])):
                mine[i] = output
            if not world.distributed:
                self.windows += len(group)
                self.reporter.advance(sum(chunk[i].progress for i in group))
            release_freed_memory()
        if world.distributed:
            gathered = world.gather(mine)
            if not world.main:
                return
            mine = {i: output for part in gathered for i, output in part.items()}
            self.windows += len(chunk)
            self.reporter.advance(sum(task.progress for task in chunk))
        yield from ((task, mine[i]) for i, task in enumerate(chunk))

    def stitched(self, tasks: Iterable[WindowTask], forward: Callable[[list[np.ndarray]], list[WindowOutput]],
                 on_piece: Callable[[WindowTask, Piece], None], on_target: Callable[[Target], None], *,
                 state: dict | None = None, journal: Journal | None = None) -> None:
        """Run the backbone over tiled window tasks, stitch each pass, call back per piece and per
        finished target.

        `state` holds everything the run has accumulated (the stitcher of the pass in progress here,
        the caller's own sums and counts beside it); with a `journal` it is saved at every checkpoint.
        """
        state = {} if state is None else state
        for task, output in self.run(tasks, forward, journal=journal, state=state):
            if task.window_index == 0:
                state["stitcher"] = UnitStitcher(task.target.length)
            stitcher = state["stitcher"]
            for piece in stitcher.add(task.window, output):
                on_piece(task, piece)
            if task.last:
                for piece in stitcher.finish():
                    on_piece(task, piece)
                if task.pass_index == len(task.target.strands) - 1:
                    on_target(task.target)
