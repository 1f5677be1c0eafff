"""Stitching: the basic units of a pass's overlapping windows joined back into one tiling.

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

import numpy as np

from mxdna_cli.engine.forward import WindowOutput
from mxdna_cli.windows import Window


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
