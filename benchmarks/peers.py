"""The models mxdna is compared with, built with random weights, and how a forward is counted.

Peers come from HF transformers (the `bench` extra), at two sizes:
- NT-v2-like: ESM with rotary positions over non-overlapping 6-mers (L/6 tokens);
- DNABERT-2-like: BERT over BPE tokens of 4.5 nt on average (L/4.5 tokens);
- single-nucleotide: BERT over one token per nucleotide (L tokens).
"small" is the width and depth of mxdna-small (256 wide, 6 layers, feed-forward 1,024); "base" is
BERT-base for the BERT-style peers and NT-v2-100M for the NT-like one. Token ids are random: the
cost of a forward does not depend on them. FLOPs are counted with `torch.utils.flop_counter` on one
forward (matmuls, convolutions and attention), the same counter for every model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count

from mxdna_cli.extras import require

PEER_SIZES = {
    "small": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
NT_SIZES = {  # NT-v2-50M/100M-like widths; "small" as above
    "small": PEER_SIZES["small"],
    "base": dict(hidden_size=512, num_hidden_layers=22, num_attention_heads=16, intermediate_size=2048),
}


@dataclass
class Bench:
    """One model ready to time: `forward()` runs a batch of `batch` windows of `window` nt."""

    name: str
    size: str
    params: int
    batch: int
    window: int
    forward: Callable[[], object]
    # the bench whose FLOPs this one does: a compiled copy runs the same arithmetic, and the
    # counter cannot see inside compiled kernels
    flops_of: str | None = None

    @property
    def nucleotides(self) -> int:
        return self.batch * self.window


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, counting attention on the CPU too. torch 2.13 has no formula for the
    CPU kernel of `scaled_dot_product_attention` (`_scaled_dot_product_flash_attention_for_cpu`)
    and counts it as 0 FLOPs (pytorch/pytorch#195460, fixed upstream by #195801), which drops the
    attention of every model here, most of all of those that attend over every nucleotide; its
    own SDPA formula (4 * B * heads * Lq * Lk * head_dim) is registered for that kernel here."""
    cpu_kernel = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    mapping = {} if cpu_kernel is None or cpu_kernel in flop_registry else {cpu_kernel: _sdpa_flops}
    return FlopCounterMode(display=False, custom_mapping=mapping)


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(forward: Callable[[], object]) -> int:
    with torch.inference_mode(), flop_counter() as counter:
        forward()
    return counter.get_total_flops()


def _hf(kind: str, size: str, batch: int, window: int, device: torch.device) -> Bench:
    require("transformers", "the peer models")
    import transformers

    g = torch.Generator().manual_seed(0)
    if kind == "nt":
        tokens, vocab = math.ceil(window / 6), 4107
        config = transformers.EsmConfig(vocab_size=vocab, position_embedding_type="rotary", pad_token_id=1,
                                        mask_token_id=2, max_position_embeddings=tokens + 8, **NT_SIZES[size])
        model = transformers.EsmForMaskedLM(config)
        name = "NT-v2-like (ESM, rotary, 6-mer)"
    else:
        tokens, vocab = (math.ceil(window / 4.5), 4096) if kind == "bpe" else (window, 16)
        config = transformers.BertConfig(vocab_size=vocab, max_position_embeddings=tokens + 8, **PEER_SIZES[size])
        model = transformers.BertForMaskedLM(config)
        name = "DNABERT-2-like (BERT, BPE 4.5 nt)" if kind == "bpe" else "single-nucleotide BERT"
    model = model.to(device).eval()
    ids = torch.randint(5, vocab, (batch, tokens + 2), generator=g).to(device)
    mask = torch.ones_like(ids)
    return Bench(name, size, sum(p.numel() for p in model.parameters()), batch, window,
                 lambda: model(input_ids=ids, attention_mask=mask).logits)


def peers(size: str, batch: int, window: int, device: torch.device) -> list[Bench]:
    return [_hf(kind, size, batch, window, device) for kind in ("nt", "bpe", "single")]


def benches(size: str, batch: int, window: int, device: torch.device, genome_windows: list[np.ndarray],
            *, compiled: bool = True) -> list[Bench]:
    """mxdna first (and, with `compiled`, as `--compile` runs it), then its peers, at one size: the
    rows of the models table."""
    eager = mxdna(size, batch, window, device, genome_windows)
    extra = [mxdna(size, batch, window, device, genome_windows, compiled=True)] if compiled else []
    return [eager, *extra, *peers(size, batch, window, device)]


def mxdna(size: str, batch: int, window: int, device: torch.device, genome_windows: list[np.ndarray],
          *, compiled: bool = False) -> Bench:
    """mxdna-small is the bundled (trained) model, on real DNA: a trained tokenizer's units, and so
    the token layers' length, are what users get. mxdna-base has random weights (none is trained).
    `compiled`: its dense layers through torch.compile, as `--compile` does (compiled at the first
    call, the table's warm-up)."""
    from mxdna_cli.model.compiled import compile_dense_layers
    from mxdna_cli.model.config import ModelConfig
    from mxdna_cli.model.mxdna import MxDNAForMaskedLM, pad_batch
    from mxdna_cli.runtime import load

    if size == "small":
        model = load("mxdna-small", device=str(device)).module.eval()
        name = "mxdna-small (bundled)"
    else:
        torch.manual_seed(0)
        model = MxDNAForMaskedLM(ModelConfig.preset("base")).to(device).eval()
        name = "mxdna-base (random weights)"
    eager_name = name
    if compiled:
        compile_dense_layers(model)
        name = name.replace(")", ", --compile)")
    ids, mask = pad_batch([w[: window - 2] for w in genome_windows[:batch]], device)
    return Bench(name, size, sum(p.numel() for p in model.parameters()), batch, window,
                 lambda: model(ids, mask).logits, flops_of=eager_name if compiled else None)
