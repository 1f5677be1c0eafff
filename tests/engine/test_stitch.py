"""Stitching: the windows' basic units joined at shared boundaries tile the sequence exactly."""


import numpy as np
import pytest
import torch

from mxdna_cli.engine.forward import WindowOutput
from mxdna_cli.engine.stitch import UnitStitcher, choose_cut
from mxdna_cli.windows import Window, plan_windows

torch.set_num_threads(1)


def random_partition(rng, length, max_unit=10):
    """Unit starts and lengths that tile [0, length)."""
    lengths = []
    while sum(lengths) < length:
        lengths.append(int(min(rng.integers(1, max_unit + 1), length - sum(lengths))))
    lengths = np.array(lengths)
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths


def fake_output(starts, lengths):
    return WindowOutput(starts=np.asarray(starts), lengths=np.asarray(lengths),
                               experts=np.asarray(lengths) - 1, gates=np.full(len(starts), 0.5))


def stitch(windows, outputs, length):
    stitcher = UnitStitcher(length)
    pieces = []
    for win, out in zip(windows, outputs):
        pieces += stitcher.add(win, out)
    return pieces + stitcher.finish()


@pytest.mark.parametrize("seed", range(40))
def test_stitched_units_tile_the_sequence_for_random_windows_and_units(seed):
    rng = np.random.default_rng(seed)
    length = int(rng.integers(1, 400))
    window = int(rng.integers(1, 120))
    stride = int(rng.integers(1, window + 1))
    windows = plan_windows(length, window, stride)
    outputs = [fake_output(*random_partition(rng, w.end - w.start)) for w in windows]
    pieces = stitch(windows, outputs, length)
    assert len(pieces) == len(windows)
    starts = np.concatenate([p.starts for p in pieces])
    ends = np.concatenate([p.ends for p in pieces])
    assert starts[0] == 0 and ends[-1] == length
    assert np.array_equal(starts[1:], ends[:-1])  # no gap, no overlap
    assert (ends > starts).all()
    for piece in pieces:  # every kept unit lies inside the window that made it
        assert (piece.starts >= piece.window.start).all() and (piece.ends <= piece.window.end).all()
    # unclipped units are exactly the model's units; tokens are numbered in order
    for piece in pieces:
        raw_start = piece.window.start + piece.output.starts[piece.selected]
        raw_end = raw_start + piece.output.lengths[piece.selected]
        unclipped = ~piece.clipped
        assert np.array_equal(piece.starts[unclipped], raw_start[unclipped])
        assert np.array_equal(piece.ends[unclipped], raw_end[unclipped])
    assert [p.first_token for p in pieces] == list(np.cumsum([0] + [len(p) for p in pieces[:-1]]))


def test_the_cut_is_the_shared_boundary_nearest_the_keep_boundary():
    left, right = Window(0, 20, 0, 12), Window(5, 25, 12, 25)
    # left units: 0-4, 4-9, 9-14, 14-20 ; right units (from 5): 5-9, 9-11, 11-16, 16-25
    left_out = fake_output([0, 4, 9, 14], [4, 5, 5, 6])
    right_out = fake_output([0, 4, 6, 11], [4, 2, 5, 9])
    assert choose_cut(left, left_out, right, right_out, 0) == 9  # shared: 5? no; 9 yes; 20? no
    pieces = stitch([left, right], [left_out, right_out], 25)
    assert not pieces[0].clipped.any() and not pieces[1].clipped.any()
    assert pieces[0].ends[-1] == 9 and pieces[1].starts[0] == 9


def test_windows_with_no_shared_boundary_are_clipped_at_the_keep_boundary():
    left, right = Window(0, 10, 0, 7), Window(4, 14, 7, 14)
    left_out = fake_output([0, 5], [5, 5])  # boundaries 0, 5, 10
    right_out = fake_output([0, 2, 5, 8], [2, 3, 3, 2])  # absolute 4, 6, 9, 12, 14
    assert choose_cut(left, left_out, right, right_out, 0) == 7
    pieces = stitch([left, right], [left_out, right_out], 14)
    assert pieces[0].clipped.tolist() == [False, True] and pieces[0].ends[-1] == 7
    assert pieces[1].clipped[0] and pieces[1].starts[0] == 7
