"""Tests for mxdna_cli.windows: window planning, keep crops and stitching."""

import random

import numpy as np
import pytest

from mxdna_cli.errors import UsageError
from mxdna_cli.windows import Window, count_windows, plan_windows, stitch


def random_cases(n: int = 400, seed: int = 1234):
    """Seeded (length, window, stride) triples, including the edge cases stride 1 and = window."""
    rng = random.Random(seed)
    for _ in range(n):
        window = rng.randint(1, 64)
        stride = rng.choice([1, window, rng.randint(1, window)])
        length = rng.choice([rng.randint(1, window), rng.randint(1, 400)])
        yield length, window, stride


CASES = list(random_cases())


def test_cases_cover_short_and_long_sequences():
    assert any(length <= window for length, window, _ in CASES)
    assert sum(length > 3 * window for length, window, _ in CASES) > 50


def test_examples():
    assert plan_windows(10, 4, 2) == [
        Window(0, 4, 0, 3),
        Window(2, 6, 3, 5),
        Window(4, 8, 5, 7),
        Window(6, 10, 7, 10),
    ]
    # the final window is aligned to the end: no base is truncated
    assert plan_windows(10, 4, 4) == [Window(0, 4, 0, 4), Window(4, 8, 4, 7), Window(6, 10, 7, 10)]
    assert plan_windows(3, 8, 2) == [Window(0, 3, 0, 3)]
    assert plan_windows(8, 8, 2) == [Window(0, 8, 0, 8)]
    assert plan_windows(0, 8, 2) == []


def check_plan(length: int, window: int, stride: int) -> None:
    windows = plan_windows(length, window, stride)
    assert len(windows) == count_windows(length, window, stride)
    # keep intervals partition [0, length) in order, none empty
    assert windows[0].keep_start == 0 and windows[-1].keep_end == length
    for previous, current in zip(windows, windows[1:]):
        assert previous.keep_end == current.keep_start
        assert current.start > previous.start  # strictly increasing starts
        # the boundary sits at the midpoint of the overlap [current.start, previous.end)
        assert previous.keep_end == (current.start + previous.end) // 2
    for win in windows:
        assert 0 <= win.start < win.end <= length
        assert win.end - win.start == min(window, length)
        assert win.start <= win.keep_start < win.keep_end <= win.end
    # consecutive starts are `stride` apart, except the last, which is aligned to the end
    starts = [w.start for w in windows]
    assert all(b - a == stride for a, b in zip(starts[:-2], starts[1:-1]))
    assert windows[-1].end == length


def check_stitch(length: int, window: int, stride: int) -> None:
    rng = np.random.default_rng(length * 1000 + window * 10 + stride)
    truth = rng.normal(size=(length, 3)).astype(np.float32)
    windows = plan_windows(length, window, stride)
    pieces = [truth[w.start : w.end] for w in windows]
    np.testing.assert_array_equal(stitch(pieces, windows), truth)
    # 1-D per-nucleotide outputs stitch the same way
    np.testing.assert_array_equal(stitch([p[:, 0] for p in pieces], windows), truth[:, 0])


@pytest.mark.parametrize("check", [check_plan, check_stitch])
def test_properties_on_random_cases(check):
    for case in CASES:
        try:
            check(*case)
        except AssertionError as error:
            raise AssertionError(f"(length, window, stride) = {case}: {error}") from error


def test_stitch_uses_only_the_centre_of_each_window():
    windows = plan_windows(10, 4, 2)
    # mark each window's outputs with its number: the stitched array shows which window won
    pieces = [np.full(w.end - w.start, i) for i, w in enumerate(windows)]
    assert stitch(pieces, windows).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]


def test_stitch_rejects_mismatches():
    windows = plan_windows(10, 4, 2)
    with pytest.raises(ValueError, match="arrays for"):
        stitch([np.zeros(4)] * 3, windows)
    with pytest.raises(ValueError, match="rows"):
        stitch([np.zeros(2)] * 4, windows)
    with pytest.raises(ValueError, match="nothing to stitch"):
        stitch([], [])


def test_count_windows_scales_without_building_lists():
    # a whole human chromosome with 1 bp stride: counted, never built
    assert count_windows(248_956_422, 1000, 1) == 248_956_422 - 1000 + 1
    assert count_windows(1_000_001, 1000, 500) == len(plan_windows(1_000_001, 1000, 500))


@pytest.mark.parametrize(
    "window, stride, message",
    [(0, 1, "--window 0"), (10, 0, "--stride 0"), (10, 11, "--stride 11"), (-3, 1, "--window -3")],
)
def test_invalid_options_are_usage_errors(window, stride, message):
    with pytest.raises(UsageError, match=message):
        plan_windows(100, window, stride)
    with pytest.raises(UsageError, match=message):
        count_windows(100, window, stride)


def test_negative_length_is_a_bug():
    with pytest.raises(ValueError):
        plan_windows(-1, 4, 2)
