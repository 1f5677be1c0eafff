"""The learnt tokenization layer: deformable convolution, expert dispatch, load balancing, compaction."""

import pytest
import torch

from mxdna_cli.model.config import ModelConfig, expert_groups
from mxdna_cli.model.tokenizer_layer import (
    ConvolutionExpert,
    DeformableAssembly,
    LearntTokenizer,
    compact_positions,
    deformable_conv1d,
    load_balancing_loss,
    unit_convolution,
)
from mxdna_cli.model.selection import unit_spans


def deformable_loop(values, centres, offsets, modulation, weight):
    """Straightforward per-element loops: the definition the vectorised version must match."""
    batch, length, _ = values.shape
    taps = weight.shape[-1]
    out = torch.zeros(batch, centres.shape[1], weight.shape[0], dtype=torch.float64)
    for b in range(batch):
        for k in range(centres.shape[1]):
            for t in range(taps):
                s = float(centres[b, k]) + t - taps // 2 + float(offsets[b, k, t])
                low = int(torch.floor(torch.tensor(s)))
                frac = s - low
                sample = torch.zeros(values.shape[-1], dtype=torch.float64)
                for index, w in ((low, 1 - frac), (low + 1, frac)):
                    if 0 <= index < length:
                        sample += w * values[b, index].double()
                out[b, k] += weight[:, :, t].double() @ (float(modulation[b, k, t]) * sample)
    return out


def test_deformable_conv_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(2, 13, 5, generator=g)
    centres = torch.randint(0, 13, (2, 6), generator=g)
    offsets = torch.randn(2, 6, 3, generator=g) * 3  # reaches past both ends
    modulation = torch.rand(2, 6, 3, generator=g) * 2
    weight = torch.randn(4, 5, 3, generator=g)
    fast, positions = deformable_conv1d(values, centres, offsets, modulation, weight)
    assert torch.allclose(fast.double(), deformable_loop(values, centres, offsets, modulation, weight), atol=1e-5)
    assert torch.allclose(positions, centres[..., None] + torch.tensor([-1.0, 0.0, 1.0]) + offsets)


def test_deformable_value_mask_reads_masked_positions_as_zero():
    """The mask is folded into the interpolation coefficients: the same as zeroing the source first
    (against the loop), with and without autograd (in-place weighting at inference only)."""
    g = torch.Generator().manual_seed(2)
    values = torch.randn(2, 15, 6, generator=g)
    value_mask = torch.rand(2, 15, generator=g) > 0.4
    centres = torch.randint(0, 15, (2, 7), generator=g)
    offsets = torch.randn(2, 7, 3, generator=g) * 2
    modulation = torch.rand(2, 7, 3, generator=g) * 2
    weight = torch.randn(5, 6, 3, generator=g)
    zeroed = values * value_mask[..., None]
    expected = deformable_loop(zeroed, centres, offsets, modulation, weight)
    with torch.no_grad():
        inference, _ = deformable_conv1d(values, centres, offsets, modulation, weight, value_mask=value_mask)
    training, _ = deformable_conv1d(values.requires_grad_(), centres, offsets, modulation, weight, value_mask=value_mask)
    torch.testing.assert_close(inference.double(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(training.detach(), inference, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(inference.double(), deformable_loop(values.detach(), centres, offsets, modulation, weight),
                              atol=1e-3)  # the mask mattered


def test_deformable_conv_with_zero_offsets_is_a_plain_convolution():
    g = torch.Generator().manual_seed(1)
    values = torch.randn(1, 9, 4, generator=g)
    weight = torch.randn(4, 4, 3, generator=g)
    centres = torch.arange(9)[None]
    out, _ = deformable_conv1d(values, centres, torch.zeros(1, 9, 3), torch.ones(1, 9, 3), weight)
    expected = torch.nn.functional.conv1d(values.transpose(1, 2), weight, padding=1).transpose(1, 2)
    assert torch.allclose(out, expected, atol=1e-5)


def test_offsets_receive_gradient_through_interpolation():
    values = torch.randn(1, 8, 3)
    offsets = torch.full((1, 2, 3), 0.3, requires_grad=True)
    out, _ = deformable_conv1d(values, torch.tensor([[2, 5]]), offsets, torch.ones(1, 2, 3), torch.randn(3, 3, 3))
    out.sum().backward()
    assert offsets.grad is not None and offsets.grad.abs().sum() > 0


def test_expert_groups_follow_the_closest_divisor_rule():
    assert [expert_groups(k, 512) for k in range(1, 11)] == [1, 2, 2, 4, 4, 4, 8, 8, 8, 8]
    assert expert_groups(3, 30) == 3 and expert_groups(4, 30) == 3  # 3 and 5 tie for 4: smaller wins


def _tokenizer(weights: str, request) -> LearntTokenizer:
    model = request.getfixturevalue("bundled_mlm" if weights == "trained" else "tiny_live_offsets")
    return model.model.tokenizer


@pytest.mark.parametrize("weights", ["trained", "random"])
def test_unit_convolution_is_the_strided_grouped_conv1d(weights, request):
    tokenizer = _tokenizer(weights, request)
    d = tokenizer.router.in_features
    torch.manual_seed(5)
    for expert in tokenizer.experts:
        units = torch.randn(7, expert.kernel_size, d)
        conv = expert.conv(units.transpose(1, 2)).squeeze(-1)  # kernel = stride = unit length
        torch.testing.assert_close(unit_convolution(units, expert.conv.weight, expert.conv.groups), conv,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weights", ["trained", "random"])
def test_offsets_and_modulators_are_the_padded_conv1d(weights, request):
    tokenizer = _tokenizer(weights, request)
    assembly: DeformableAssembly = tokenizer.assembly
    torch.manual_seed(6)
    x = torch.randn(3, 11, tokenizer.router.in_features)
    x[2, 8:] = 0  # a padded row, as the assembly zeroes them
    offsets, modulators = assembly._offsets_and_modulators(x)
    # zero padding at both ends: the first and last positions see one tap less
    torch.testing.assert_close(offsets, assembly.offset_conv(x.transpose(1, 2)).transpose(1, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(modulators, assembly.modulator_conv(x.transpose(1, 2)).transpose(1, 2),
                               rtol=1e-5, atol=1e-5)
    assert offsets.abs().max() > 0.1  # the comparison sees non-trivial offsets
    # rows marked invalid read as zero, as if zeroed before the convolution
    valid = torch.rand(3, 11) > 0.3
    masked_offsets, masked_modulators = assembly._offsets_and_modulators(x, valid)
    conv_input = (x * valid[..., None]).transpose(1, 2)
    torch.testing.assert_close(masked_offsets, assembly.offset_conv(conv_input).transpose(1, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(masked_modulators, assembly.modulator_conv(conv_input).transpose(1, 2),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weights", ["trained", "random"])
def test_add_experts_changes_only_unit_centres(weights, request):
    """hidden plus each gated expert output at its centre, in a new tensor; every other row is hidden's."""
    tokenizer = _tokenizer(weights, request)
    torch.manual_seed(7)
    hidden, nucleotide, special = _tokenizer_inputs([60, 23], d=tokenizer.router.in_features)
    with torch.no_grad():
        result = tokenizer(hidden, nucleotide, special)
        before = hidden.clone()
        merged = tokenizer.add_experts(hidden, tokenizer.norm(hidden), result.center_expert, result.gate)
    assert torch.equal(hidden, before)
    centres = result.center_expert >= 0
    assert torch.equal(merged[~centres], hidden[~centres])
    assert (merged[centres] != hidden[centres]).any(dim=-1).all()
    # one centre by hand: its expert on its unit, times its gate
    b, c = (int(i) for i in centres.nonzero()[3])
    j = int(result.center_expert[b, c])
    expert = tokenizer.experts[j]
    start = c - expert.kernel_size // 2
    unit = tokenizer.norm(hidden)[b, start : start + expert.kernel_size][None]
    with torch.no_grad():
        torch.testing.assert_close(merged[b, c], hidden[b, c] + expert(unit)[0] * result.gate[b, c])


def test_expert_maps_each_unit_independently():
    expert = ConvolutionExpert(8, 3, 1e-6).eval()
    units = torch.randn(5, 3, 8)
    together = expert(units)
    alone = torch.stack([expert(units[i : i + 1])[0] for i in range(5)])
    assert together.shape == (5, 8)
    assert torch.allclose(together, alone, atol=1e-6)


def test_load_balancing_loss_is_one_when_balanced_and_larger_when_not():
    n = 4
    center = torch.tensor([[0, 1, 2, 3]])
    uniform = torch.zeros(1, 4, n)
    assert torch.isclose(load_balancing_loss(uniform, center, n), torch.tensor(1.0))
    skewed_logits = torch.zeros(1, 4, n)
    skewed_logits[..., 0] = 5.0
    skewed_center = torch.zeros(1, 4, dtype=torch.long)
    assert load_balancing_loss(skewed_logits, skewed_center, n) > 3.0
    # Non-centre positions (-1) are ignored.
    with_gaps = torch.tensor([[0, -1, 1, -1, 2, 3]])
    assert torch.isclose(load_balancing_loss(torch.zeros(1, 6, n), with_gaps, n), torch.tensor(1.0))


def test_compact_positions_keeps_order_and_marks_padding():
    mask = torch.tensor([[True, False, True, True], [False, True, False, False]])
    positions, valid = compact_positions(mask)
    assert positions.tolist() == [[0, 2, 3], [1, 0, 0]]
    assert valid.tolist() == [[True, True, True], [True, False, False]]


def _tokenizer_inputs(lengths, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    length = max(lengths) + 2
    hidden = torch.randn(len(lengths), length, d, generator=g)
    nucleotide = torch.zeros(len(lengths), length, dtype=torch.bool)
    special = torch.zeros_like(nucleotide)
    for b, n in enumerate(lengths):
        nucleotide[b, 1 : n + 1] = True
        special[b, 0] = special[b, n + 1] = True
    return hidden, nucleotide, special


def test_tokens_are_unit_centres_plus_cls_and_sep():
    torch.manual_seed(0)
    layer = LearntTokenizer(ModelConfig.preset("tiny")).eval()
    hidden, nucleotide, special = _tokenizer_inputs([40, 17])
    with torch.no_grad():
        result = layer(hidden, nucleotide, special)
    for b, n in enumerate([40, 17]):
        centres = torch.nonzero(result.center_expert[b] >= 0).squeeze(-1).tolist()
        expected = [0] + centres + [n + 1]
        assert result.token_positions[b][result.token_valid[b]].tolist() == expected
        # Gates are softmax probabilities of the chosen expert, only at centres.
        probs = torch.softmax(result.router_logits[b], -1)
        for c in centres:
            assert torch.isclose(result.gate[b, c], probs[c, result.center_expert[b, c]])
        assert (result.gate[b][result.center_expert[b] < 0] == 0).all()
    # Units tile the nucleotides of each sequence exactly.
    batch, start, length, _ = unit_spans(result.center_expert, layer.kernel_sizes)
    for b, n in enumerate([40, 17]):
        covered = torch.zeros(n + 2, dtype=torch.long)
        for s, l in zip(start[batch == b].tolist(), length[batch == b].tolist()):
            covered[s : s + l] += 1
        assert covered[1 : n + 1].eq(1).all() and covered[0] == 0 and covered[n + 1] == 0


def test_router_scores_are_zero_outside_nucleotides():
    layer = LearntTokenizer(ModelConfig.preset("tiny")).eval()
    hidden, nucleotide, special = _tokenizer_inputs([10, 4])
    result = layer(hidden, nucleotide, special)
    assert (result.router_logits[~nucleotide] == 0).all()


def test_jitter_only_in_training_or_when_sampling():
    torch.manual_seed(0)
    layer = LearntTokenizer(ModelConfig.preset("tiny"))
    hidden, nucleotide, special = _tokenizer_inputs([60])
    layer.eval()
    a = layer(hidden, nucleotide, special).router_logits
    b = layer(hidden, nucleotide, special).router_logits
    assert torch.equal(a, b)
    c = layer(hidden, nucleotide, special, sample=True).router_logits
    assert not torch.equal(a, c)
