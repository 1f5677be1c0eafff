"""The transformer layers' fast paths give the numbers of the general ones.

A batch without padding skips the masking (mask None) and inference reuses the feed-forward
intermediate in place; both must match the masked, out-of-place computation, on the trained
bundled layers and on random ones.
"""

from pathlib import Path

import pytest
import torch

from mxdna_cli import weights as model_files
from mxdna_cli.model.layers import EncoderLayer, SwiGLU, rotary_tables
from mxdna_cli.model.mxdna import dense_or

BUNDLED = Path(__file__).resolve().parents[2] / "weights" / "mxdna-small"


@pytest.fixture(scope="module", params=["trained", "random"])
def layer(request) -> EncoderLayer:
    if request.param == "trained":
        model, _ = model_files.load_model(BUNDLED)
        return model.model.nucleotide_layers[0].eval()
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
