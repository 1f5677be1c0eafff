"""Windows of a target and their stitching: cut each strand of a target into overlapping windows,
run them through the backbone and join the windows' basic units back into one tiling.

Stitching. A target longer than the window is read in overlapping windows
(`windows.plan_windows`). The basic units of two neighbouring windows are joined at a *cut*: the
unit boundary that both windows share, inside their overlap, closest to the windows' keep boundary
(the middle of the overlap). Left of the cut the left window's units are kept, right of it the
right window's, so the kept units tile the target exactly and each token (one per unit) is counted
once, by the window that saw it with the most context. If the two windows share no unit boundary
in their overlap (possible only when their units are out of phase along the whole overlap), the cut
is the keep boundary itself and the two units that straddle it are clipped to it (flagged `_clip`
in the BED name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from mxdna_cli.engine.inputs import Target
from mxdna_cli.engine.journal import Journal
from mxdna_cli.engine.report import Reporter, check_target
from mxdna_cli.engine.runner import Runner, WindowOutput
from mxdna_cli.errors import UsageError
from mxdna_cli.windows import Window, plan_windows


def resolve_stride(window: int, stride: int | None) -> int:
    """The start-to-start distance of windows: `stride` checked against the window, or 3/4 of it."""
    if window < 1:
        raise UsageError(f"--window {window}: must be at least 1")
    stride = max(1, (window * 3) // 4) if stride is None else stride
    if not 1 <= stride <= window:
        raise UsageError(f"--stride {stride}: must be between 1 and the window ({window})")
    return stride


@dataclass
class WindowTask:
    """One window of one strand ('pass') of one target, in model space."""

    target: Target
    strand: str
    pass_index: int
    window: Window
    window_index: int
    n_windows: int
    ids: np.ndarray

    @property
    def progress(self) -> int:
        return self.window.keep_end - self.window.keep_start

    @property
    def last(self) -> bool:
        return self.window_index == self.n_windows - 1


def window_tasks(targets: Iterable[Target], window: int, stride: int,
                 reporter: Reporter | None = None) -> Iterator[WindowTask]:
    for target in targets:
        if reporter is not None:
            check_target(target, reporter)
        for pass_index, strand in enumerate(target.strands):
            ids = target.model_ids(strand)
            plan = plan_windows(len(ids), window, stride)
            for index, win in enumerate(plan):
                yield WindowTask(target, strand, pass_index, win, index, len(plan), ids[win.start : win.end])


@dataclass
class Piece:
    """The units (and tokens) one window contributes to its target, in model space."""

    window: Window
    output: WindowOutput
    selected: np.ndarray  # (S,) indices into the window's units
    starts: np.ndarray  # (S,) model-space unit starts, clipped to the window's kept range
    ends: np.ndarray  # (S,)
    clipped: np.ndarray  # (S,) bool
    first_token: int  # rank, within the pass, of this piece's first token

    @property
    def centres(self) -> np.ndarray:
        return self.window.start + self.output.centres[self.selected]

    @property
    def lengths(self) -> np.ndarray:
        return self.output.lengths[self.selected]

    @property
    def experts(self) -> np.ndarray:
        return self.output.experts[self.selected]

    @property
    def gates(self) -> np.ndarray:
        return self.output.gates[self.selected]

    @property
    def states(self) -> np.ndarray | None:
        return None if self.output.states is None else self.output.states[self.selected]

    def __len__(self) -> int:
        return len(self.selected)


class UnitStitcher:
    """Joins the windows of one pass at shared unit boundaries (see the module docstring)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.cut = 0
        self.tokens = 0
        self._pending: tuple[Window, WindowOutput] | None = None

    def add(self, window: Window, output: WindowOutput) -> list[Piece]:
        pieces = []
        if self._pending is not None:
            previous, previous_output = self._pending
            cut = choose_cut(previous, previous_output, window, output, self.cut)
            pieces.append(self._piece(previous, previous_output, self.cut, cut))
            self.cut = cut
        self._pending = (window, output)
        return pieces

    def finish(self) -> list[Piece]:
        if self._pending is None:
            return []
        window, output = self._pending
        self._pending = None
        return [self._piece(window, output, self.cut, self.length)]

    def _piece(self, window: Window, output: WindowOutput, lo: int, hi: int) -> Piece:
        starts = window.start + output.starts
        ends = starts + output.lengths
        selected = np.flatnonzero((starts < hi) & (ends > lo) & (lo < hi))  # lo == hi: nothing kept
        kept_starts = np.maximum(starts[selected], lo)
        kept_ends = np.minimum(ends[selected], hi)
        clipped = (kept_starts != starts[selected]) | (kept_ends != ends[selected])
        piece = Piece(window, output, selected, kept_starts, kept_ends, clipped, self.tokens)
        self.tokens += len(selected)
        return piece


def choose_cut(left: Window, left_out: WindowOutput, right: Window, right_out: WindowOutput, floor: int) -> int:
    """Where to switch from `left`'s units to `right`'s: a boundary both share, nearest the keep boundary."""
    lo, hi = max(right.start, floor), left.end
    aim = min(max(left.keep_end, lo), hi)
    left_bounds = np.append(left.start + left_out.starts, left.end)
    right_bounds = np.append(right.start + right_out.starts, right.end)
    common = np.intersect1d(left_bounds, right_bounds)
    common = common[(common >= lo) & (common <= hi)]
    if common.size == 0:
        return int(aim)
    return int(common[np.argmin(np.abs(common - aim))])  # sorted: ties go to the left


def drive(
    runner: Runner,
    tasks: Iterable[WindowTask],
    on_piece: Callable[[WindowTask, Piece], None],
    on_target: Callable[[Target], None],
    *,
    state: dict | None = None,
    journal: Journal | None = None,
) -> None:
    """Run the backbone over window tasks, stitch each pass, call back per piece and per finished target.

    `state` holds everything the run has accumulated (the stitcher of the pass in progress here,
    the caller's own sums and counts beside it); with a `journal`, it is saved at every checkpoint
    and the tasks the journal has done are skipped.
    """
    state = {} if state is None else state
    results = runner.run(tasks, runner.backbone) if journal is None else journal.run(runner, tasks, runner.backbone, state)
    for task, output in results:
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
