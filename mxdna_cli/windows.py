"""Plan overlapping windows over a long sequence and stitch per-window outputs back together.

Pure coordinate arithmetic, no I/O. Windows start every `stride` bases, plus one window aligned
to the sequence end so that nothing is truncated. Each window keeps a centre crop of its
per-nucleotide outputs (its `keep` interval); the keep intervals of consecutive windows meet at
the midpoint of their overlap, so the stitched output never uses a window's edge, where the
model sees the least context, and together they cover the sequence exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mxdna_cli.errors import UsageError


@dataclass(frozen=True)
class Window:
    """A window [start, end) of a sequence and the part [keep_start, keep_end) used when stitching.

    All coordinates are absolute (within the sequence), 0-based half-open.
    """

    start: int
    end: int
    keep_start: int
    keep_end: int

    @property
    def keep_slice(self) -> slice:
        """The kept part, indexed from the window start (for an array of this window's outputs)."""
        return slice(self.keep_start - self.start, self.keep_end - self.start)


def _validate(length: int, window: int, stride: int) -> None:
    if length < 0:
        raise ValueError(f"sequence length {length} is negative")
    if window < 1:
        raise UsageError(f"--window {window}: must be at least 1")
    if not 1 <= stride <= window:
        raise UsageError(
            f"--stride {stride}: must be between 1 and the window ({window}), "
            "or bases between windows would be skipped"
        )


def count_windows(length: int, window: int, stride: int) -> int:
    """How many windows plan_windows would make, without building them."""
    _validate(length, window, stride)
    if length == 0:
        return 0
    if length <= window:
        return 1
    # starts 0, stride, ... below length - window, then one window ending at the sequence end
    return -(-(length - window) // stride) + 1


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    last_start = length - window
    return list(range(0, last_start, stride)) + [last_start]


def plan_windows(length: int, window: int, stride: int) -> list[Window]:
    """Windows of `window` bases every `stride` bases over [0, length), with stitching crops.

    A sequence no longer than `window` is one window. An empty sequence has no windows.
    """
    _validate(length, window, stride)
    if length == 0:
        return []
    if length <= window:
        return [Window(0, length, 0, length)]
    starts = _window_starts(length, window, stride)
    # boundary between windows i and i+1: midpoint of their overlap [start_{i+1}, end_i)
    boundaries = [(nxt + prev + window) // 2 for prev, nxt in zip(starts, starts[1:])]
    keep_starts = [0] + boundaries
    keep_ends = boundaries + [length]
    return [
        Window(start, start + window, keep_start, keep_end)
        for start, keep_start, keep_end in zip(starts, keep_starts, keep_ends)
    ]


def stitch(per_window_arrays: Sequence[np.ndarray], windows: Sequence[Window]) -> np.ndarray:
    """Concatenate the kept part of each window's array (axis 0 indexed from the window start)."""
    if len(per_window_arrays) != len(windows):
        raise ValueError(f"{len(per_window_arrays)} arrays for {len(windows)} windows")
    if not windows:
        raise ValueError("nothing to stitch: no windows")
    pieces = []
    for array, win in zip(per_window_arrays, windows):
        if array.shape[0] < win.keep_end - win.start:
            raise ValueError(
                f"window {win.start}-{win.end}: array has {array.shape[0]} rows, "
                f"needs at least {win.keep_end - win.start}"
            )
        pieces.append(array[win.keep_slice])
    return np.concatenate(pieces, axis=0)
