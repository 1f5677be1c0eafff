"""The Python API (`mxdna_cli.load`): lists of strings in, arrays out, the same numbers as the CLI's
files for the same sequences and settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pysam
import pytest
import torch
from typer.testing import CliRunner

import mxdna_cli as mx
from mxdna_cli.cli import app
from mxdna_cli.errors import DataError, UsageError

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parent / "data"
MINI = str(DATA / "mini.fa")


@pytest.fixture(scope="module")
def records() -> dict[str, str]:
    with pysam.FastxFile(MINI) as handle:
        return {entry.name: entry.sequence for entry in handle}


@pytest.fixture(scope="module")
def backbone():
    return mx.load(device="cpu")


def cli(*args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args] + ["-q", "--threads", "1"])
    assert result.exit_code == 0, result.output


def test_embed_matches_the_cli_npy_for_every_pooling(tmp_path, records, backbone):
    names, sequences = list(records), list(records.values())
    for pool in ("mean", "max", "cls"):
        cli("embed", MINI, "-o", tmp_path / f"{pool}.npy", "--pool", pool, "--window", "700")
        from_cli = np.load(tmp_path / f"{pool}.npy")
        from_api = backbone.embed(sequences, pool=pool, window=700)
        assert from_api.shape == (len(names), backbone.hidden_size) and from_api.dtype == np.float32
        np.testing.assert_allclose(from_api, from_cli, rtol=0, atol=1e-6)
    # one string gives one row; per-token states stack to the pooled mean
    single = backbone.embed(sequences[0], window=700)
    np.testing.assert_allclose(single[0], from_api[0] if False else backbone.embed(sequences, window=700)[0], atol=1e-6)
    tokens = backbone.embed(sequences[0], pool="none", window=700)
    np.testing.assert_allclose(tokens.mean(axis=0), single[0], atol=1e-5)


def test_tokenize_units_are_the_cli_bed_and_tile_the_sequence(tmp_path, records, backbone):
    name, sequence = next(iter(records.items()))
    cli("tokenize", MINI, "-r", name, "--export-bed", tmp_path / "units.bed", "--window", "700")
    rows = [line.split("\t") for line in (tmp_path / "units.bed").read_text().splitlines() if not line.startswith("#")]
    result = backbone.tokenize(sequence, window=700)
    units = result.units
    assert [(int(r[1]), int(r[2])) for r in rows] == list(zip(units["start"].tolist(), units["end"].tolist()))
    assert [r[3] for r in rows] == [f"{k}nt_e{e}" + ("_clip" if c else "")
                                    for k, e, c in zip(units["length"], units["expert"], units["clipped"])]
    assert units["start"][0] == 0 and units["end"][-1] == len(sequence)
    assert np.array_equal(units["start"][1:], units["end"][:-1])  # a tiling, in order
    assert "".join(result.pieces(sequence)) == sequence
    assert len(result.tokens) == len(units)
    for blocks, start, end in zip(result.tokens, units["start"], units["end"]):
        assert any(a <= start and end <= b for a, b in blocks)  # a token reads its own unit


def test_predict_proba_matches_the_cli_tsv(tmp_path, records):
    classifier = mx.load("promoter-human", device="cpu")
    assert classifier.labels == ["nonpromoter", "promoter"]
    cli("predict", "promoter", MINI, "-m", "promoter-human", "--strand", "both", "-o", tmp_path / "p.tsv")
    rows = [line.split("\t") for line in (tmp_path / "p.tsv").read_text().splitlines()
            if not line.startswith("#")][1:]
    probabilities = classifier.predict_proba(list(records.values()), strand="both")
    assert probabilities.shape == (len(records), 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(probabilities[:, 1], [float(r[5]) for r in rows], rtol=1e-5, atol=1e-6)


def test_bad_input_is_a_clear_error(backbone):
    with pytest.raises(DataError, match="sequence 1"):
        backbone.embed(["ACGT", "ACXGT"])
    with pytest.raises(DataError, match="empty"):
        backbone.embed([""])
    with pytest.raises(UsageError, match="not a classifier"):
        backbone.predict_proba(["ACGT"])
    with pytest.raises(UsageError, match="pool"):
        backbone.embed(["ACGT"], pool="median")
