"""--compile: the compiled dense layers give eager's units and outputs (trained weights), stay
independent of what shares a batch, and a missing compiler is a usage error before any work."""

from pathlib import Path

import pysam
import pytest
import torch
from typer.testing import CliRunner

from mxdna_cli import sequence as dna
from mxdna_cli.cli import app
from mxdna_cli.errors import UsageError
from mxdna_cli.model.compiled import check_compiler, compile_dense_layers
from mxdna_cli.model.layers import CrossAttentionLayer, EncoderLayer
from mxdna_cli.model.mxdna import pad_batch
from mxdna_cli.runtime import load

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "data" / "mini.fa"


@pytest.fixture(scope="module")
def windows():
    """Real DNA of three lengths, so that a batch holds padding."""
    with pysam.FastaFile(str(MINI)) as fasta:
        return [dna.encode(fasta.fetch(name, start, end)) for name, start, end in
                (("CHROMOSOME_I", 0, 400), ("NC_004353.4", 0, 257), ("22:20608432-20611431", 1000, 1330))]


def run(module, windows):
    torch.manual_seed(0)
    with torch.inference_mode():
        return module(*pad_batch(windows))


def test_compiled_layers_match_eager_on_trained_weights(windows):
    torch.set_num_threads(2)
    eager = load(str(ROOT / "weights" / "mxdna-small"), device="cpu").module
    compiled = load(str(ROOT / "weights" / "mxdna-small"), device="cpu", compile=True).module
    compiled_layers = [m for m in compiled.modules() if isinstance(m, (EncoderLayer, CrossAttentionLayer))]
    assert compiled_layers and all(m._compiled_call_impl is not None for m in compiled_layers)
    want, got = run(eager, windows), run(compiled, windows)
    assert torch.equal(want.tokenization.center_expert, got.tokenization.center_expert)
    valid = want.token_valid
    assert (want.token_hidden - got.token_hidden)[valid].abs().max() < 1e-4
    assert (want.logits - got.logits).abs().max() < 1e-3  # logits of the masked LM, up to ~20 in size
    # a window alone gives what it gives beside others (the padding fix holds compiled too)
    for row, window in enumerate(windows):
        alone = run(compiled, [window])
        units = int(alone.token_valid[0].sum())
        assert torch.equal(alone.tokenization.center_expert[0], got.tokenization.center_expert[row, : len(window) + 2])
        assert (alone.token_hidden[0, :units] - got.token_hidden[row, :units]).abs().max() < 1e-5


def test_a_compiled_run_says_so_in_its_output(tmp_path):
    out = tmp_path / "p.tsv"
    result = CliRunner().invoke(app, ["predict", "promoter", str(MINI), "--region", "CHROMOSOME_I:1-300",
                                      "--compile", "-q", "--threads", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    header = [line for line in out.read_text().splitlines() if line.startswith("#")]
    assert "#compiled=true" in header
    plain = tmp_path / "plain.tsv"
    CliRunner().invoke(app, ["predict", "promoter", str(MINI), "--region", "CHROMOSOME_I:1-300", "-q", "-o", str(plain)])
    assert not any(line.startswith("#compiled") for line in plain.read_text().splitlines())
    rows = [line.split("\t") for line in (out, plain) for line in [line.read_text().splitlines()[-1]]]
    assert rows[0][:5] == rows[1][:5] and abs(float(rows[0][5]) - float(rows[1][5])) < 1e-5


def test_a_missing_compiler_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    with pytest.raises(UsageError, match="no-such-compiler-here"):
        check_compiler(torch.device("cpu"))
    for verb in (["predict", "promoter"], ["embed"], ["ism", "-r", "CHROMOSOME_I:1-20"]):  # every verb passes it on
        result = CliRunner().invoke(app, [*verb, str(MINI), "--compile", "-q"])
        assert result.exit_code == 2, (verb, result.output)
        assert result.output.strip().count("\n") == 0 and "C++ compiler" in result.output


def test_compile_dense_layers_leaves_the_tokenizer_eager():
    model = load(str(ROOT / "weights" / "mxdna-small"), device="cpu").module
    compile_dense_layers(model)
    tokenizer = model.model.tokenizer
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in tokenizer.modules())
