"""Engine: batching, window stitching (the units tile), token footprints, pooling, coordinates."""

from pathlib import Path

import numpy as np
import pysam
import pytest
import torch

from mxdna_cli import engine
from mxdna_cli.engine.forward import WindowOutput, backbone, resolve_layer
from mxdna_cli.engine.pipeline import Pipeline
from mxdna_cli.engine.stitch import Piece, UnitStitcher, choose_cut
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.fasta import Region
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM, pad_batch
from mxdna_cli.sequence import encode
from mxdna_cli.weights import save_model
from mxdna_cli.windows import Window, plan_windows

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parent / "data"
MINI = str(DATA / "mini.fa")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = MxDNAForMaskedLM(ModelConfig.preset("tiny"))
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(model, folder, trained=False)
    return engine.load(str(folder), device="cpu")


# --------------------------------------------------------------------------- stitching


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


# --------------------------------------------------------------------------- batching


class Task:
    def __init__(self, n):
        self.ids = np.zeros(n, dtype=np.uint8)
        self.progress = n


def test_batches_respect_the_token_budget_and_cover_every_window_once(tiny):
    runner = Pipeline(tiny, batch_tokens=100)
    lengths = [10, 98, 3, 40, 40, 5, 200, 7]
    groups = runner.batches(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        width = max(lengths[i] for i in group) + 2
        assert len(group) == 1 or len(group) * width <= 100
    firsts = [lengths[g[0]] for g in groups]
    assert firsts == sorted(firsts, reverse=True)  # longest first: little padding


def test_results_come_back_in_input_order(tiny):
    runner = Pipeline(tiny, batch_tokens=30)
    tasks = [Task(n) for n in (5, 20, 1, 13, 8, 20, 2)]
    seen = []

    def forward(arrays):
        seen.append(len(arrays))
        return [len(a) for a in arrays]

    out = list(runner.run(tasks, forward))
    assert [task for task, _ in out] == tasks
    assert [result for _, result in out] == [5, 20, 1, 13, 8, 20, 2]
    assert sum(seen) == len(tasks) and len(seen) > 1


# --------------------------------------------------------------------------- footprints


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


# --------------------------------------------------------------------------- inputs, options


def test_strand_choice_is_relative_to_the_bed_strand():
    assert engine.strands_for("+", "forward") == ("+",)
    assert engine.strands_for("-", "forward") == ("-",)
    assert engine.strands_for("-", "reverse") == ("+",)
    assert engine.strands_for("-", "both") == ("-", "+")


def test_reverse_strand_coordinates_map_back_to_the_forward_genome():
    target = engine.Target(0, "x", Region("chr", 100, 110, strand="-"), ("-",))
    a, b = target.to_genome("-", np.array([0, 3]), np.array([3, 10]))
    assert a.tolist() == [107, 100] and b.tolist() == [110, 107]
    assert target.centre_to_genome("-", np.array([0, 9])).tolist() == [109, 100]


def test_output_format_from_name_or_flag():
    assert engine.output_format("a.npy", None) == "npy"
    assert engine.output_format("-", None) == "tsv"
    assert engine.output_format("a.tsv", None) == "tsv"
    with pytest.raises(UsageError):
        engine.output_format("a.h5", None)
    with pytest.raises(UsageError):
        engine.output_format("-", "npy")


def test_layer_numbers():
    assert resolve_layer(None, 4) == (None, 4)
    assert resolve_layer(4, 4) == (None, 4)
    assert resolve_layer(-1, 4) == (None, 4)
    assert resolve_layer(0, 4) == (0, 0)
    assert resolve_layer(-2, 4) == (3, 3)
    with pytest.raises(UsageError):
        resolve_layer(5, 4)


def test_regions_are_checked_before_any_work():
    with pytest.raises(DataError, match="ends past the end"):
        engine.Inputs(engine.InputSpec(MINI, regions=["CHROMOSOME_I:2901-3001"]))
    with pytest.raises(DataError, match="unknown contig"):
        engine.Inputs(engine.InputSpec(MINI, regions=["chrZ:1-10"]))
    with pytest.raises(UsageError, match="stdin"):
        engine.Inputs(engine.InputSpec("-", regions=["chrZ:1-10"]))


# --------------------------------------------------------------------------- model runs


def test_cls_pooling_of_a_single_window_is_the_models_cls_state(tiny, tmp_path):
    out = tmp_path / "cls.npy"
    inputs = engine.Inputs(engine.InputSpec(MINI, regions=["CHROMOSOME_I:201-500"]))
    engine.embed(inputs, tiny, engine.EmbedSettings(str(out), pool="cls"))
    with pysam.FastaFile(MINI) as fasta:
        ids = encode(fasta.fetch("CHROMOSOME_I", 200, 500))
    with torch.inference_mode():
        expected = tiny.backbone(*pad_batch([ids])).token_hidden[0, 0].numpy()
    np.testing.assert_allclose(np.load(out)[0], expected, rtol=1e-5, atol=1e-6)


def test_units_and_states_do_not_depend_on_batch_company(tiny):
    """A window alone and padded in a batch with longer ones gives the same units and token states."""
    rng = np.random.default_rng(0)
    short = rng.integers(5, 9, 150).astype(np.uint8)
    company = [rng.integers(5, 9, n).astype(np.uint8) for n in (400, 230)]
    alone = backbone(tiny, [short], states=True)[0]
    batched = backbone(tiny, company + [short], states=True)[2]
    assert np.array_equal(alone.starts, batched.starts) and np.array_equal(alone.lengths, batched.lengths)
    np.testing.assert_allclose(alone.states, batched.states, rtol=1e-4, atol=1e-5)
    assert alone.starts[0] == 0 and alone.starts[-1] + alone.lengths[-1] == 150


# --------------------------------------------------------------------------- choosing a classifier


def test_predict_promoter_prefers_the_classifier_whose_card_names_it_the_default(tmp_path, monkeypatch):
    from mxdna_cli.runtime import DEFAULT_FOR, find_classifier
    from mxdna_cli.model.mxdna import MxDNAForSequenceClassification

    torch.manual_seed(0)
    classifier = MxDNAForSequenceClassification(ModelConfig.preset("tiny"), num_labels=2)
    labels = {"labels": ["nonpromoter", "promoter"]}
    for name in ("a-promoter-first-by-name", "m-default", "z-other"):
        save_model(classifier, tmp_path / name, extra={**labels, DEFAULT_FOR: ["promoter"]} if name == "m-default" else labels)
    monkeypatch.setenv("MXDNA_WEIGHTS", str(tmp_path))
    assert find_classifier(None, "promoter").name == "m-default"
    # another label falls back to the first bundled classifier that has it
    assert find_classifier(None, "nonpromoter").name == "a-promoter-first-by-name"
    assert find_classifier(str(tmp_path / "z-other"), "promoter").name == "z-other"
