"""All window geometry: how a sequence is cut into the windows the model reads.

Pure coordinate arithmetic, no I/O, no model. Three geometries, one per kind of output:

- `Tiling(window, stride)` (embed, tokenize): windows every `stride` bases plus one aligned to the
  sequence end, so nothing is truncated. Each window keeps a centre crop (its `keep` interval); the
  crops of consecutive windows meet at the midpoint of their overlap, so stitched outputs never use
  a window's edge, where the model sees the least context, and cover the sequence exactly once.
- `Scan(window, step)` (predict --track): windows every `step` bases that fit wholly inside the
  sequence; each window's value covers its central `step` bases (offset (window - step) // 2).
- `Whole()` (predict per record): the sequence is one window.

Defaults and option checks for windows live here too, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mxdna_cli.errors import UsageError

DEFAULT_WINDOW = 1024  # embed, tokenize: nucleotides a window (+[CLS]/[SEP])
TRAINING_WINDOW = 510  # pretrain, evaluate: nucleotides a sample; +[CLS]/[SEP] = 512 positions
CLASSIFIER_WINDOW = 300  # predict: a classifier whose card names no training window

@dataclass(frozen=True)
class Window:
    """A window [start, end) of a sequence and the part [keep_start, keep_end) used when stitching.

    All coordinates are absolute (within the sequence), 0-based half-open.
    """

    start: int
    end: int
    keep_start: int
    keep_end: int


def resolve_stride(window: int, stride: int | None) -> int:
    """The start-to-start distance of tiling windows: `stride` checked against the window, or 3/4 of it."""
    check_window(window)
    stride = max(1, (window * 3) // 4) if stride is None else stride
    if not 1 <= stride <= window:
        raise UsageError(
            f"--stride {stride}: must be between 1 and the window ({window}), "
            "or bases between windows would be skipped"
        )
    return stride


def check_window(window: int) -> int:
    if window < 1:
        raise UsageError(f"--window {window}: must be at least 1")
    return window


class WindowPlan(Sequence[Window]):
    """The windows of one sequence, each computed from its index when asked for.

    A plan holds no per-window objects: a human chromosome scanned every 250 nt has a million
    windows, which as a list of `Window`s would take about 250 MB (memory that grows with the
    genome); here a plan is a few integers whatever the length.
    """

    _count: int  # windows in the plan, set by each geometry

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._window(i) for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"window {index} of a plan of {self._count}")
        return self._window(index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"

    def _window(self, index: int) -> Window:
        raise NotImplementedError


class TilingPlan(WindowPlan):
    """`plan_windows`: starts every `stride` bases plus one aligned to the end; crops meet at the
    midpoints of the overlaps."""

    def __init__(self, length: int, window: int, stride: int) -> None:
        self.length, self.window, self.stride = length, window, stride
        if length == 0:
            self._count = 0
        elif length <= window:
            self._count = 1
        else:
            self._count = len(range(0, length - window, stride)) + 1

    def _start(self, index: int) -> int:
        return self.length - self.window if index == self._count - 1 else index * self.stride

    def _window(self, index: int) -> Window:
        if self.length <= self.window:
            return Window(0, self.length, 0, self.length)
        start = self._start(index)
        # boundary between windows i and i+1: midpoint of their overlap [start_{i+1}, end_i)
        keep_start = 0 if index == 0 else (self._start(index - 1) + start + self.window) // 2
        last = index == self._count - 1
        keep_end = self.length if last else (start + self._start(index + 1) + self.window) // 2
        return Window(start, start + self.window, keep_start, keep_end)


class ScanPlan(WindowPlan):
    """`scan_windows`: windows every `step` bases that fit; each keeps its central `step` bases."""

    def __init__(self, length: int, window: int, step: int) -> None:
        self.window, self.step = window, step
        self.offset = (window - step) // 2
        self._count = scan_positions(length, window, step)

    def _window(self, index: int) -> Window:
        start = index * self.step
        return Window(start, start + self.window, start + self.offset, start + self.offset + self.step)


def plan_windows(length: int, window: int, stride: int) -> WindowPlan:
    """Windows of `window` bases every `stride` bases over [0, length), with stitching crops.

    A sequence no longer than `window` is one window. An empty sequence has no windows.
    """
    if length < 0:
        raise ValueError(f"sequence length {length} is negative")
    return TilingPlan(length, window, resolve_stride(window, stride))


def check_step(step: int, window: int) -> int:
    if not 1 <= step <= window:
        raise UsageError(f"--step {step}: must be between 1 and the window ({window})")
    return step


def scan_windows(length: int, window: int, step: int) -> WindowPlan:
    """Windows of exactly `window` bases every `step` bases that fit in [0, length); each keeps
    (its value covers) its central `step` bases. A sequence shorter than the window has none."""
    check_window(window)
    check_step(step, window)
    return ScanPlan(length, window, step)


def scan_positions(length: int, window: int, step: int) -> int:
    """How many scan windows a sequence of `length` has (without building them)."""
    return max(0, length - window) // step + 1 if length >= window else 0


@dataclass(frozen=True)
class Tiling:
    """Overlapping windows whose centre crops tile the sequence (stitched outputs)."""

    window: int
    stride: int

    def windows(self, length: int) -> WindowPlan:
        return plan_windows(length, self.window, self.stride)


@dataclass(frozen=True)
class Scan:
    """Fixed-size windows every `step` bases, each valued over its central `step` bases (a track)."""

    window: int
    step: int

    def windows(self, length: int) -> WindowPlan:
        return scan_windows(length, self.window, self.step)


@dataclass(frozen=True)
class Whole:
    """The whole sequence as one window (one value per record)."""

    def windows(self, length: int) -> list[Window]:
        return [Window(0, length, 0, length)] if length else []
