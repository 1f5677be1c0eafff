"""Token footprints: the units a token's deformable sampling reads."""


import numpy as np
import pytest
import torch

from mxdna_cli.engine.forward import WindowOutput

from mxdna_cli import engine
from mxdna_cli.engine.stitch import Piece
from mxdna_cli.windows import Window

torch.set_num_threads(1)


def fake_output(starts, lengths):
    return WindowOutput(starts=np.asarray(starts), lengths=np.asarray(lengths),
                        experts=np.asarray(lengths) - 1, gates=np.full(len(starts), 0.5))


def test_token_footprint_reads_units_whose_centre_gets_enough_weight():
    # units (window bases): 0-3 (centre 1), 3-4 (3), 4-9 (6), 9-10 (9)
    starts, lengths = np.array([0, 3, 4, 9]), np.array([3, 1, 5, 1])
    out = fake_output(starts, lengths)
    # token of unit 1 (centre 3): taps at 0.9 (0.1 on 0, 0.9 on 1 -> unit 0 centre), 3.0 (own), 5.75
    out.sample_positions = np.array([[0, 1, 2], [0.9, 3.0, 5.75], [5, 6, 7], [8, 9, 10]], dtype=float)
    out.modulation = np.array([[1, 1, 1], [1.0, 0.5, 1.6], [1, 1, 1], [1, 1, 1]], dtype=float)
    piece = Piece(Window(100, 110, 100, 110), out, np.array([1]), np.array([103]), np.array([104]),
                         np.array([False]), 0)
    [(blocks, score)] = engine.token_footprints(piece, min_weight=0.05)
    # 5.75 -> 0.25*1.6 = 0.4 on base 5 (not a centre), 0.75*1.6 = 1.2 on base 6 (unit 2's centre)
    assert blocks == [(100, 109)]  # units 0, 1, 2 touch: one block
    assert score == pytest.approx(1.2)
    [(blocks, _)] = engine.token_footprints(piece, min_weight=1.0)
    assert blocks == [(103, 109)]  # unit 0 (0.9) drops out, the own unit always stays
