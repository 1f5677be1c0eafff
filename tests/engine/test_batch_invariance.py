"""Every verb gives the same numbers whatever shares a batch: a record alone, the records together,
and any --batch-tokens budget agree within 1e-5 (float32), with the trained bundled weights."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mxdna_cli.cli import app

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "data" / "mini.fa"
BACKBONE = str(ROOT / "weights" / "mxdna-small")
CLASSIFIER = str(ROOT / "weights" / "promoter-human")
# regions of different lengths, so that batches hold padding (the leak was at [SEP]'s neighbour);
# windows of 700 nt: the first region is read in three windows, the others in one short window each
REGIONS = ["CHROMOSOME_I:1-1500", "CHROMOSOME_I:1201-1537", "NC_004353.4:1-601", "22:20608432-20611431:1001-1450"]
REGION_ARGS = [arg for region in REGIONS for arg in ("--region", region)]
BUDGETS = ["100", "1500", "100000"]  # one window a batch; a few; everything in one batch
TOLERANCE = 1e-5


def run(*args: str) -> None:
    result = CliRunner().invoke(app, [*args, "-q", "--threads", "2"])
    assert result.exit_code == 0, result.output


def embed(tmp_path, name, *args) -> np.ndarray:
    out = tmp_path / f"{name}.npy"
    run("embed", str(MINI), "-o", str(out), "--weights", BACKBONE, "--window", "700", *args)
    return np.load(out)


@pytest.mark.parametrize("pool", ["mean", "max", "cls"])
def test_pooled_embeddings_do_not_depend_on_the_batch(tmp_path, pool):
    together = {b: embed(tmp_path, f"all-{b}", "--pool", pool, "--batch-tokens", b, *REGION_ARGS) for b in BUDGETS}
    alone = np.concatenate([embed(tmp_path, f"one-{i}", "--pool", pool, "--region", name)
                            for i, name in enumerate(REGIONS)])
    for budget, matrix in together.items():
        np.testing.assert_allclose(matrix, alone, atol=TOLERANCE, rtol=0, err_msg=f"--batch-tokens {budget}")


def test_token_embeddings_do_not_depend_on_the_batch(tmp_path):
    small = embed(tmp_path, "small", "--pool", "none", "--batch-tokens", "100", *REGION_ARGS)
    large = embed(tmp_path, "large", "--pool", "none", "--batch-tokens", "100000", *REGION_ARGS)
    assert _body(tmp_path / "small.index.tsv") == _body(tmp_path / "large.index.tsv")
    np.testing.assert_allclose(small, large, atol=TOLERANCE, rtol=0)


def test_units_and_token_footprints_do_not_depend_on_the_batch(tmp_path):
    def tokenize(name, *args):
        units, tokens = tmp_path / f"{name}.units.bed", tmp_path / f"{name}.tokens.bed"
        run("tokenize", str(MINI), "--export-bed", str(units), "--tokens", str(tokens), "--weights", BACKBONE,
            "--window", "700", *args)
        return [_body(units), _body(tokens)]

    reference = tokenize("large", "--batch-tokens", "100000", *REGION_ARGS)
    for kind, lines in enumerate(tokenize("small", "--batch-tokens", "100", *REGION_ARGS)):
        _assert_same_bed(lines, reference[kind])
    alone = [[], []]
    for i, name in enumerate(REGIONS):
        for kind, lines in enumerate(tokenize(f"one-{i}", "--region", name)):
            alone[kind] += lines
    # each region alone, concatenated: the same lines (the run of all regions sorts them together)
    for kind in range(2):
        _assert_same_bed(sorted(alone[kind], key=_without_score), sorted(reference[kind], key=_without_score))


def _without_score(line: str) -> list[str]:
    fields = line.split("\t")
    return fields[:4] + fields[5:]


def _assert_same_bed(lines: list[str], expected: list[str]) -> None:
    """The same BED lines: every field equal, except the score (column 5), which is a probability x 1000
    rounded to an integer: a probability that agrees within 1e-5 may round one unit apart."""
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected):
        assert _without_score(line) == _without_score(want), (line, want)
        assert abs(int(line.split("\t")[4]) - int(want.split("\t")[4])) <= 1, (line, want)


def test_promoter_probabilities_do_not_depend_on_the_batch(tmp_path):
    def predict(name, *args):
        out = tmp_path / f"{name}.tsv"
        run("predict", "promoter", str(MINI), "-o", str(out), "--model", CLASSIFIER, *args)
        rows = [line.split("\t") for line in _body(out)[1:]]
        return [row[0] for row in rows], np.array([float(row[5]) for row in rows])

    alone = [predict(f"alone-{i}", "--region", region)[1][0] for i, region in enumerate(REGIONS)]
    for budget in BUDGETS:
        names, together = predict(f"all-{budget}", *REGION_ARGS, "--batch-tokens", budget)
        assert len(names) == len(REGIONS)
        np.testing.assert_allclose(together, alone, atol=TOLERANCE, rtol=0, err_msg=f"--batch-tokens {budget}")


def _body(path: Path) -> list[str]:
    """The lines of a text output without its #provenance header (which records --batch-tokens)."""
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]
