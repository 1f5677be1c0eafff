"""Tests for mxdna_cli.windows: tiling windows and their keep crops, scan windows, option checks."""

import random

import pytest

from mxdna_cli.errors import UsageError
from mxdna_cli.windows import Window, plan_windows, scan_positions, scan_windows


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


@pytest.mark.parametrize("length, window, stride", CASES)
def test_plan_properties_on_random_cases(length, window, stride):
    windows = plan_windows(length, window, stride)
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


def test_scan_windows_value_their_central_step_and_fit_in_the_sequence():
    assert scan_windows(10, 4, 2) == [Window(0, 4, 1, 3), Window(2, 6, 3, 5), Window(4, 8, 5, 7), Window(6, 10, 7, 9)]
    assert scan_windows(3, 4, 2) == []  # shorter than the window: no value
    for length, window, step in [(1000, 251, 50), (999, 300, 300), (257, 251, 1), (5000, 101, 7)]:
        plan = scan_windows(length, window, step)
        assert len(plan) == scan_positions(length, window, step)
        assert all(w.end - w.start == window and 0 <= w.start and w.end <= length for w in plan)
        assert all(w.keep_end - w.keep_start == step for w in plan)
        # the values tile a contiguous run: each window's central step follows the previous one's
        assert all(a.keep_end == b.keep_start for a, b in zip(plan, plan[1:]))
        assert plan[0].keep_start == (window - step) // 2


@pytest.mark.parametrize("window, step, message", [(0, 1, "--window 0"), (10, 0, "--step 0"), (10, 11, "--step 11")])
def test_invalid_scan_options_are_usage_errors(window, step, message):
    with pytest.raises(UsageError, match=message):
        scan_windows(100, window, step)


@pytest.mark.parametrize(
    "window, stride, message",
    [(0, 1, "--window 0"), (10, 0, "--stride 0"), (10, 11, "--stride 11"), (-3, 1, "--window -3")],
)
def test_invalid_options_are_usage_errors(window, stride, message):
    with pytest.raises(UsageError, match=message):
        plan_windows(100, window, stride)


def test_negative_length_is_a_bug():
    with pytest.raises(ValueError):
        plan_windows(-1, 4, 2)


def test_a_chromosome_plan_holds_no_window_objects():
    """A plan is computed per index: memory must not grow with the sequence (a list of a human
    chromosome's million scan windows took about 250 MB)."""
    import tracemalloc

    length = 248_956_422  # human chr1
    tracemalloc.start()
    scan = scan_windows(length, 251, 250)
    tiles = plan_windows(length, 1024, 768)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < 10_000
    assert len(scan) == (length - 251) // 250 + 1
    assert scan[-1] == Window((len(scan) - 1) * 250, (len(scan) - 1) * 250 + 251, (len(scan) - 1) * 250 + 0, (len(scan) - 1) * 250 + 250)
    assert tiles[-1].end == length and tiles[-1].keep_end == length
    for i in (0, 1, 12_345, len(tiles) - 2):  # neighbours' crops meet wherever the plan is read
        assert tiles[i].keep_end == tiles[i + 1].keep_start
        assert tiles[i + 1].start < tiles[i].keep_end < tiles[i].end
    assert tiles[5:7] == [tiles[5], tiles[6]]
