"""Padding never reaches valid positions: a sequence gives in any batch what it gives alone.

Checked on the trained bundled weights (whose deformable offset and modulator convolutions are
non-zero; the padding leak lived there) and on a random tiny model whose offset convolutions are
made non-zero on purpose (the zero initialisation of an untrained model hid the leak).
"""

import numpy as np
import pytest
import torch

from mxdna_cli import sequence as vocab
from mxdna_cli.model.mxdna import mean_token_state, pad_batch
from mxdna_cli.model.tokenizer_layer import DeformableAssembly

TOLERANCE = 1e-5


@pytest.fixture(params=["trained", "random"])
def model(request):
    return request.getfixturevalue("bundled_mlm" if request.param == "trained" else "tiny_live_offsets")


def _ids(rng, n):
    ids = rng.choice(vocab.BASE_IDS, size=n).astype(np.uint8)
    ids[rng.random(n) < 0.02] = vocab.UNK
    return ids


def _forward(model, arrays, input_ids=None, attention_mask=None):
    if input_ids is None:
        input_ids, attention_mask = pad_batch(arrays)
    with torch.no_grad():
        return model(input_ids, attention_mask)


def _row(out, row):
    """The valid outputs of one row: units, token states, pooled state, nucleotide logits."""
    valid = out.token_valid[row]
    n = int(out.attention_mask[row].sum())
    return {
        "centres": out.tokenization.center_expert[row, :n].numpy(),
        "token_positions": out.token_positions[row][valid].numpy(),
        "tokens": out.token_hidden[row][valid].numpy(),
        "pooled": mean_token_state(out)[row].numpy(),
        "samples": out.tokenization.sample_positions[row][valid].numpy(),
        "logits": out.logits[row, :n].numpy(),
    }


def _assert_same(alone, batched):
    np.testing.assert_array_equal(alone["centres"], batched["centres"])
    np.testing.assert_array_equal(alone["token_positions"], batched["token_positions"])
    for key in ("tokens", "pooled", "samples", "logits"):
        # rtol: logits reach |20|, where float32's own rounding is ~1e-6
        np.testing.assert_allclose(batched[key], alone[key], atol=TOLERANCE, rtol=1e-6, err_msg=key)


def test_a_sequence_gives_alone_what_it_gives_in_a_padded_batch(model):
    rng = np.random.default_rng(11)
    short, long, middle = _ids(rng, 137), _ids(rng, 509), _ids(rng, 300)
    alone = _row(_forward(model, [short]), 0)
    for company in ([short, long], [long, short, middle], [middle, short]):
        out = _forward(model, company)
        row = next(i for i, ids in enumerate(company) if ids is short)
        _assert_same(alone, _row(out, row))


def test_garbage_ids_in_padding_change_nothing(model):
    rng = np.random.default_rng(12)
    arrays = [_ids(rng, 200), _ids(rng, 420)]
    input_ids, attention_mask = pad_batch(arrays)
    clean = _forward(model, None, input_ids, attention_mask)
    noisy_ids = input_ids.clone()
    padding = ~attention_mask
    noisy_ids[padding] = torch.from_numpy(rng.integers(0, len(vocab.VOCAB), size=int(padding.sum())))
    noisy = _forward(model, None, noisy_ids, attention_mask)
    for row in range(len(arrays)):
        _assert_same(_row(clean, row), _row(noisy, row))


def test_the_comparison_catches_the_leak_when_padding_rows_are_not_masked(model, monkeypatch):
    """Let the offset convolution read padded rows again (the old behaviour): the batched row then
    differs from the row alone by far more than the tolerance, so the tests above can fail."""
    rng = np.random.default_rng(13)
    short, long = _ids(rng, 137), _ids(rng, 509)
    alone = _row(_forward(model, [short]), 0)
    original = DeformableAssembly.forward

    def unmasked(self, hidden, token_positions, token_mask, nucleotide_mask, valid_mask):
        return original(self, hidden, token_positions, token_mask, nucleotide_mask, torch.ones_like(valid_mask))

    monkeypatch.setattr(DeformableAssembly, "forward", unmasked)
    leaky = _row(_forward(model, [short, long]), 0)
    assert np.abs(leaky["tokens"] - alone["tokens"]).max() > 5 * TOLERANCE
