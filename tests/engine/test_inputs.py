"""Targets: strands relative to a BED strand, coordinates back to the forward genome, regions checked
before any work; output formats; layer numbers."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mxdna_cli import engine
from mxdna_cli.engine.forward import resolve_layer
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.fasta import Region

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1] / "data"
MINI = str(DATA / "mini.fa")


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


@pytest.mark.parametrize("geometry", ["tiling", "scan"])
def test_indexed_targets_read_their_windows_from_the_index(geometry, monkeypatch):
    """An indexed record or region is never held whole: each window is read from the index when it
    is cut, in pieces no longer than the window, and gives the ids of the record held in memory."""
    from mxdna_cli.engine import inputs as inputs_module
    from mxdna_cli.engine.pipeline import window_tasks
    from mxdna_cli.io.fasta import iter_fasta_records
    from mxdna_cli.windows import Scan, Tiling

    monkeypatch.setattr(inputs_module, "READ_PIECE", 1000)  # the first reading pass, in pieces too
    shape = Tiling(300, 200) if geometry == "tiling" else Scan(251, 50)
    held = [engine.Target(i, r.name, Region(r.name, 0, len(r.sequence)), ("+", "-")).attach(r.sequence)
            for i, r in enumerate(iter_fasta_records(MINI))]
    spans = []
    with engine.Inputs(engine.InputSpec(MINI, strand="both", regions=["CHROMOSOME_I:101-2900", "NC_004353.4"])) as inputs:
        targets = list(inputs.targets())
        for target in targets:
            assert target.held is None and target.reader is not None
            reader = target.reader
            target.reader = lambda a, b, read=reader: spans.append(b - a) or read(a, b)
        indexed = list(window_tasks(targets, shape))
    by_name = {t.name: t for t in held}
    expected = []
    for target in targets:
        whole = by_name[target.chrom]
        sub = engine.Target(0, target.name, target.region, target.strands).attach(
            whole.sequence[target.start : target.end])
        expected += list(window_tasks([sub], shape))
    assert len(indexed) == len(expected) > 10
    for got, want in zip(indexed, expected):
        assert (got.strand, got.window) == (want.strand, want.window)
        assert np.array_equal(got.ids, want.ids)
    assert max(spans) <= (300 if geometry == "tiling" else 251)
