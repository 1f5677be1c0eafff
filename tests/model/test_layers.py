"""The transformer layers' fast paths give the numbers of the general ones.

A batch without padding skips the masking (mask None); inference reuses the feed-forward
intermediate in place, adds residuals into the fresh update and rotates without a concatenated
copy. All must match the masked, out-of-place computation (what autograd runs), on the trained
bundled layers and on random ones, and never write into their inputs.
"""

import pytest
import torch

from mxdna_cli.model.layers import CrossAttentionLayer, EncoderLayer, SwiGLU, apply_rotary, residual_add, rotary_tables
from mxdna_cli.model.mxdna import dense_or


@pytest.fixture(scope="module", params=["trained", "random"])
def layer(request) -> EncoderLayer:
    if request.param == "trained":
        return request.getfixturevalue("bundled_mlm").model.nucleotide_layers[0]
    torch.manual_seed(0)
    return EncoderLayer(64, 4, 160, 1e-12).eval()


def _inputs(layer: EncoderLayer, batch=3, length=40):
    torch.manual_seed(1)
    hidden = torch.randn(batch, length, layer.attn_norm.normalized_shape[0])
    positions = torch.arange(length).expand(batch, length)
    return hidden, rotary_tables(positions, layer.attn.head_dim, 10000.0)


def test_unmasked_layer_equals_all_valid_mask(layer):
    hidden, rotary = _inputs(layer)
    with torch.no_grad():
        masked = layer(hidden, rotary, torch.ones(hidden.shape[:2], dtype=torch.bool))
        dense = layer(hidden, rotary, None)
        padded = torch.ones(hidden.shape[:2], dtype=torch.bool)
        padded[:, -5:] = False
        partly = layer(hidden, rotary, padded)
    torch.testing.assert_close(dense, masked, rtol=0, atol=1e-6)
    # the comparison can fail: a real mask changes the valid rows and freezes the padded ones
    assert not torch.allclose(partly[:, :-5], dense[:, :-5], atol=1e-4)
    assert torch.equal(partly[:, -5:], hidden[:, -5:])


def test_inplace_feed_forward_equals_autograd_path(layer):
    ffn: SwiGLU = layer.ffn
    x, _ = _inputs(layer)
    kept = x.clone()
    with torch.enable_grad():
        reference = ffn(x)
    with torch.no_grad():
        fast = ffn(x)
    torch.testing.assert_close(fast, reference.detach(), rtol=0, atol=1e-6)
    assert torch.equal(x, kept)  # the input is never written


def test_training_still_gets_gradients(layer):
    hidden, rotary = _inputs(layer)
    hidden.requires_grad_(True)
    layer(hidden, rotary, None).sum().backward()
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all()
    assert layer.ffn.w1.weight.grad is not None
    layer.zero_grad(set_to_none=True)


def test_dense_or_is_none_only_without_padding():
    assert dense_or(torch.ones(2, 5, dtype=torch.bool)) is None
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 4] = False
    assert dense_or(mask) is mask


def test_inference_rotary_equals_rotate_half():
    torch.manual_seed(2)
    x = torch.randn(3, 40, 4, 16).transpose(1, 2)  # (B, heads, L, head dim) as the attention holds it
    tables = rotary_tables(torch.arange(40).expand(3, 40) * 7, 16, 10000.0)
    kept = x.clone()
    cos, signed_sin = tables
    # rotate-half written out: the first half's partner is minus the second half, and the reverse
    reference = x * cos + torch.cat([x[..., 8:], x[..., :8]], -1) * signed_sin
    with torch.no_grad():
        fast = apply_rotary(x, tables)
    assert torch.equal(fast, reference)
    assert torch.equal(x, kept)
    # and it is a rotation: each (i, i + half) pair keeps its length
    norms = lambda t: t[..., :8] ** 2 + t[..., 8:] ** 2  # noqa: E731
    torch.testing.assert_close(norms(fast), norms(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_inference_residual_equals_new_sum(weighted):
    torch.manual_seed(3)
    hidden, update = torch.randn(2, 9, 8), torch.randn(2, 9, 8)
    keep = (torch.rand(2, 9, 1) > 0.3).float() if weighted else None
    expected = hidden + (update if keep is None else keep * update)
    kept = hidden.clone()
    with torch.no_grad():
        total = residual_add(hidden, update.clone(), keep)
    assert torch.equal(total, expected)
    assert torch.equal(hidden, kept)  # the residual stream is never written


def test_residual_stays_float32_under_bf16_updates():
    # under autocast the token layers' updates are bf16 and the stream float32: no rounding of it
    hidden, update = torch.randn(2, 9, 8), torch.randn(2, 9, 8).bfloat16()
    with torch.no_grad():
        total = residual_add(hidden, update)
    assert total.dtype == torch.float32
    assert torch.equal(total, hidden + update)


def test_layers_at_inference_equal_autograd_path(layer):
    hidden, rotary = _inputs(layer)
    padded = torch.ones(hidden.shape[:2], dtype=torch.bool)
    padded[1, -6:] = False
    cross = CrossAttentionLayer(*_sizes(layer)).eval()
    cross.load_state_dict(layer.state_dict())
    kept = hidden.clone()
    for mask in (None, padded):
        with torch.enable_grad():
            reference = layer(hidden, rotary, mask)
        with torch.no_grad():
            fast = layer(hidden, rotary, mask)
        assert torch.equal(fast, reference.detach())
    with torch.enable_grad():
        reference = cross(hidden, hidden[:, :7], rotary, tuple(t[:, :, :7] for t in rotary), padded[:, :7])
    with torch.no_grad():
        fast = cross(hidden, hidden[:, :7], rotary, tuple(t[:, :, :7] for t in rotary), padded[:, :7])
    assert torch.equal(fast, reference.detach())
    assert torch.equal(hidden, kept)


def _sizes(layer: EncoderLayer):
    return (layer.attn_norm.normalized_shape[0], layer.attn.num_heads, layer.ffn.w1.out_features, layer.attn_norm.eps)
