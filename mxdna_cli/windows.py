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


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    last_start = length - window
    return list(range(0, last_start, stride)) + [last_start]


def plan_windows(length: int, window: int, stride: int) -> list[Window]:
    """Windows of `window` bases every `stride` bases over [0, length), with stitching crops.

    A sequence no longer than `window` is one window. An empty sequence has no windows.
    """
    if length < 0:
        raise ValueError(f"sequence length {length} is negative")
    stride = resolve_stride(window, stride)
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


def check_step(step: int, window: int) -> int:
    if not 1 <= step <= window:
        raise UsageError(f"--step {step}: must be between 1 and the window ({window})")
    return step


def scan_windows(length: int, window: int, step: int) -> list[Window]:
    """Windows of exactly `window` bases every `step` bases that fit in [0, length); each keeps
    (its value covers) its central `step` bases. A sequence shorter than the window has none."""
    check_window(window)
    check_step(step, window)
    offset = (window - step) // 2
    return [Window(start, start + window, start + offset, start + offset + step)
            for start in range(0, length - window + 1, step)]


def scan_positions(length: int, window: int, step: int) -> int:
    """How many scan windows a sequence of `length` has (without building them)."""
    return max(0, length - window) // step + 1 if length >= window else 0


@dataclass(frozen=True)
class Tiling:
    """Overlapping windows whose centre crops tile the sequence (stitched outputs)."""

    window: int
    stride: int

    def windows(self, length: int) -> list[Window]:
        return plan_windows(length, self.window, self.stride)


@dataclass(frozen=True)
class Scan:
    """Fixed-size windows every `step` bases, each valued over its central `step` bases (a track)."""

    window: int
    step: int

    def windows(self, length: int) -> list[Window]:
        return scan_windows(length, self.window, self.step)


@dataclass(frozen=True)
class Whole:
    """The whole sequence as one window (one value per record)."""

    def windows(self, length: int) -> list[Window]:
        return [Window(0, length, 0, length)] if length else []
