"""torchrun: 2 processes (gloo, localhost) write exactly the files one process writes, for embed,
tokenize, predict (per record and --track) and score-variants; a stream is refused; the share of batches is
balanced and deterministic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mxdna_cli.distributed import share

DATA = Path(__file__).resolve().parents[1] / "data"
MINI = str(DATA / "mini.fa")
# small batches and windows: every chunk has several batches, so both ranks run some
SMALL = ["--threads", "1", "-q", "--batch-tokens", "800"]


def run(args: list[str], cwd: Path, ranks: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    if ranks == 1:
        command = [sys.executable, "-m", "mxdna_cli", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                   "-m", "mxdna_cli", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def body(path: Path) -> list[str]:
    """The data lines of a text output (its '#' provenance header names the command and date)."""
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def test_embed_on_two_ranks_writes_the_single_process_files(tmp_path):
    args = ["embed", MINI, "--window", "500", *SMALL]
    run([*args, "-o", "one.npy"], tmp_path)
    run([*args, "-o", "two.npy"], tmp_path, ranks=2)
    one, two = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert one.shape == (3, 256) and np.array_equal(one, two)
    assert body(tmp_path / "one.index.tsv") == body(tmp_path / "two.index.tsv")
    # rank 1 wrote nothing of its own
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{stem}{suffix}" for stem in ("one", "two") for suffix in (".npy", ".npy.json", ".index.tsv"))


def test_tokenize_and_tracks_on_two_ranks_are_byte_identical(tmp_path):
    tokenize = ["tokenize", MINI, "--window", "500", *SMALL]
    run([*tokenize, "--export-bed", "one.bed", "--tokens", "one.tokens.bed"], tmp_path)
    run([*tokenize, "--export-bed", "two.bed", "--tokens", "two.tokens.bed"], tmp_path, ranks=2)
    assert body(tmp_path / "one.bed") == body(tmp_path / "two.bed") and len(body(tmp_path / "one.bed")) > 1000
    assert body(tmp_path / "one.tokens.bed") == body(tmp_path / "two.tokens.bed")
    track = ["predict", "promoter", MINI, "--strand", "both", *SMALL[:-2], "--batch-tokens", "2000"]
    run([*track, "--track", "one.bedgraph"], tmp_path)
    run([*track, "--track", "two.bedgraph"], tmp_path, ranks=2)
    assert body(tmp_path / "one.bedgraph") == body(tmp_path / "two.bedgraph")
    assert len(body(tmp_path / "one.bedgraph")) > 100
    run(["predict", "promoter", MINI, "-o", "one.tsv", *SMALL], tmp_path)
    run(["predict", "promoter", MINI, "-o", "two.tsv", *SMALL], tmp_path, ranks=2)
    assert body(tmp_path / "one.tsv") == body(tmp_path / "two.tsv")


def test_a_stream_is_refused_under_torchrun(tmp_path, monkeypatch):
    from mxdna_cli.engine.inputs import InputSpec, Inputs
    from mxdna_cli.errors import UsageError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UsageError, match="torchrun"):
        Inputs(InputSpec("-"))


def test_shares_are_balanced_and_the_same_on_every_rank():
    costs = [900, 100, 500, 500, 400, 300, 200, 100]
    owners = share(costs, 2)
    assert owners == share(costs, 2)  # deterministic: each rank computes the same split
    loads = [sum(c for c, o in zip(costs, owners) if o == r) for r in range(2)]
    assert abs(loads[0] - loads[1]) <= max(costs) and sum(loads) == sum(costs)
    assert share(costs, 1) == [0] * len(costs)
    assert sorted(set(share(costs, 3))) == [0, 1, 2]


def test_score_variants_on_two_ranks_writes_the_single_process_tsv(tmp_path):
    variants = DATA / "variants"
    args = ["score-variants", str(variants / "variants.vcf"), "-g", str(variants / "genome.fa"),
            "-m", "promoter-human", "--threads", "1", "-q", "--batch-tokens", "1200"]
    run([*args, "-o", "one.tsv"], tmp_path)
    run([*args, "-o", "two.tsv"], tmp_path, ranks=2)
    assert body(tmp_path / "one.tsv") == body(tmp_path / "two.tsv") and len(body(tmp_path / "one.tsv")) > 5
