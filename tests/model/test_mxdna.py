"""The full model: shapes, parameter count, batch invariance, determinism, gradients, heads."""

import numpy as np
import pytest
import torch

from mxdna_cli import sequence as vocab
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM, MxDNAForSequenceClassification, pad_batch

TINY = ModelConfig.preset("tiny")
RNG = np.random.default_rng(0)


def random_ids(n):
    return RNG.choice(vocab.BASE_IDS, size=n).astype(np.uint8)


@pytest.fixture(scope="module")
def mlm():
    torch.manual_seed(0)
    return MxDNAForMaskedLM(TINY).eval()


def test_base_preset_has_the_papers_parameter_count():
    model = MxDNAForMaskedLM(ModelConfig.preset("base"))
    assert sum(p.numel() for p in model.parameters()) == 100_090_895


def test_output_shapes(mlm):
    ids, mask = pad_batch([random_ids(50), random_ids(23)])
    with torch.no_grad():
        out = mlm(ids, mask)
    batch, length = ids.shape
    assert out.logits.shape == (batch, length, TINY.vocab_size)
    assert out.nucleotide_hidden.shape == (batch, length, TINY.hidden_size)
    k = out.token_positions.shape[1]
    assert out.token_hidden.shape == (batch, k, TINY.hidden_size)
    assert out.tokenization.sample_positions.shape == (batch, k, TINY.deformable_kernel_size)
    assert out.tokenization.router_logits.shape == (batch, length, TINY.num_experts)
    # Token count per sequence: between ceil(n/10) + 2 and n + 2.
    for b, n in enumerate([50, 23]):
        count = int(out.token_valid[b].sum())
        assert -(-n // 10) + 2 <= count <= n + 2


def test_a_sequence_alone_equals_it_inside_a_padded_batch(mlm):
    target = random_ids(77)
    alone_ids, alone_mask = pad_batch([target])
    batch_ids, batch_mask = pad_batch([random_ids(130), target, random_ids(9)])
    with torch.no_grad():
        alone = mlm(alone_ids, alone_mask)
        batch = mlm(batch_ids, batch_mask)
    n = alone_ids.shape[1]
    assert torch.equal(alone.tokenization.center_expert[0], batch.tokenization.center_expert[1, :n])
    assert torch.allclose(alone.logits[0], batch.logits[1, :n], atol=1e-5)
    k = int(alone.token_valid[0].sum())
    assert torch.allclose(alone.token_hidden[0, :k], batch.token_hidden[1, :k], atol=1e-5)
    assert torch.allclose(alone.nucleotide_hidden[0], batch.nucleotide_hidden[1, :n], atol=1e-5)


def test_padding_cannot_influence_valid_positions(mlm):
    ids, mask = pad_batch([random_ids(30), random_ids(60)])
    corrupted = ids.clone()
    corrupted[0, 32:] = vocab.A  # garbage in the padding of sample 0, still masked out
    with torch.no_grad():
        a = mlm(ids, mask)
        b = mlm(corrupted, mask)
    assert torch.allclose(a.logits[0, :32], b.logits[0, :32], atol=1e-6)


def test_eval_mode_is_deterministic(mlm):
    ids, mask = pad_batch([random_ids(200)])
    with torch.no_grad():
        a, b = mlm(ids, mask), mlm(ids, mask)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.tokenization.center_expert, b.tokenization.center_expert)


def test_gradient_reaches_the_router_through_the_gate():
    torch.manual_seed(0)
    model = MxDNAForMaskedLM(TINY).train()
    ids, mask = pad_batch([random_ids(64), random_ids(40)])
    labels = torch.where(mask, ids, torch.full_like(ids, -100))
    out = model(ids, mask, labels=labels)
    out.mlm_loss.backward()
    router_grad = model.model.tokenizer.router.weight.grad
    assert router_grad is not None and router_grad.abs().sum() > 0
    # The deformable offsets are zero-initialised but still learn.
    assert model.model.tokenizer.assembly.offset_conv.weight.grad.abs().sum() > 0


def test_loss_combines_mlm_and_load_balancing():
    torch.manual_seed(0)
    model = MxDNAForMaskedLM(TINY).eval()
    ids, mask = pad_batch([random_ids(64)])
    labels = torch.full_like(ids, -100)
    labels[0, 5] = ids[0, 5]
    with torch.no_grad():
        out = model(ids, mask, labels=labels)
    expected_mlm = torch.nn.functional.cross_entropy(out.logits[0, 5:6], ids[0, 5:6])
    assert torch.isclose(out.mlm_loss, expected_mlm, atol=1e-6)
    assert torch.isclose(out.loss, out.mlm_loss + TINY.load_balancing_coef * out.load_balancing_loss)


@pytest.mark.parametrize("pooling", ["decoder", "mean"])
def test_classifier_heads_are_batch_invariant(pooling):
    torch.manual_seed(0)
    model = MxDNAForSequenceClassification(TINY, num_labels=3, pooling=pooling).eval()
    target = random_ids(45)
    with torch.no_grad():
        alone = model(*pad_batch([target])).logits
        batch = model(*pad_batch([random_ids(90), target])).logits
    assert alone.shape == (1, 3)
    assert torch.allclose(alone[0], batch[1], atol=1e-5)


def test_keep_layers_returns_every_token_layer(mlm):
    ids, mask = pad_batch([random_ids(20)])
    with torch.no_grad():
        out = mlm.model(ids, mask, keep_layers=True)
    assert len(out.token_layer_states) == TINY.num_token_layers + 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_cpu(mlm, dtype):
    ids, mask = pad_batch([random_ids(300), random_ids(120)])
    with torch.no_grad():
        cpu = mlm(ids, mask)
        gpu_model = MxDNAForMaskedLM(TINY).cuda().eval()
        gpu_model.load_state_dict(mlm.state_dict())
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            gpu = gpu_model(ids.cuda(), mask.cuda())
    same_units = (cpu.tokenization.center_expert == gpu.tokenization.center_expert.cpu()).float().mean()
    assert torch.isfinite(gpu.logits).all()
    assert same_units == 1.0  # the units are decided in float32 under autocast too (exact_units)
    if dtype == torch.float32:
        assert torch.allclose(cpu.logits, gpu.logits.cpu(), atol=1e-4)


@pytest.mark.parametrize("trained", [False, True], ids=["random", "mxdna-small"])
def test_autocast_keeps_the_float32_units(trained):
    """Under bf16 autocast (eval mode) the units and the router are float32's; the token layers are not."""
    if trained:
        from mxdna_cli.runtime import load

        model = load("mxdna-small", device="cpu").module
    else:
        torch.manual_seed(1)
        model = MxDNAForMaskedLM(TINY).eval()
    ids, mask = pad_batch([random_ids(400), random_ids(170), random_ids(31)])
    with torch.inference_mode():
        plain = model(ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            exact = model(ids, mask)
            model.model.exact_units = False
            try:
                fast = model(ids, mask)
            finally:
                del model.model.exact_units
    assert torch.equal(exact.tokenization.center_expert, plain.tokenization.center_expert)
    assert torch.equal(exact.tokenization.router_logits, plain.tokenization.router_logits)
    assert not torch.equal(exact.logits, plain.logits)  # the rest did run in reduced precision
    assert fast.tokenization.router_logits.dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["promoter-human", "promoter-arabidopsis", "promoter-eukaryote"])
def test_bf16_promoter_probabilities_stay_within_1e_3_of_float32(name):
    """The exact bf16 path: units and classification head in float32, token layers in bf16."""
    from pathlib import Path

    from mxdna_cli.io.fasta import iter_fasta_records
    from mxdna_cli.runtime import class_probabilities, load

    folder = Path(__file__).resolve().parents[1] / "data/promoter"
    texts = [r.sequence for f in ("promoter.fa", "nonpromoter.fa", "genome.fa") for r in iter_fasta_records(str(folder / f))]
    ids = [piece for t in texts for piece in np.array_split(vocab.encode(t), max(1, len(t) // 251))]
    model = load(name, device="cpu").module
    full = class_probabilities(model, ids, "cpu")
    half = class_probabilities(model, ids, "cpu", torch.bfloat16)
    assert np.abs(full - half).max() < 1e-3
    assert not np.array_equal(full, half)  # the token layers did run in bf16
    # the head itself ran in float32: its logits are those of the same token states in float32
    batch, mask = pad_batch(ids[:8])
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch, mask)
        assert torch.equal(out.logits, model.classifier(model.pooled(out)))
