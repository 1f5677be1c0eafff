"""Transformer building blocks: rotary attention (self and cross), SwiGLU, pre-LN layers.

Attention goes through `torch.nn.functional.scaled_dot_product_attention` with a boolean key
mask, so it runs on any device and dtype (the reference needed flash-attn). Positions are explicit
tensors because MxDNA's token layers keep each token at the nucleotide index of its unit centre.
Query rows that are not valid (padding) keep their residual unchanged, as in the reference's
unpad/compute/pad scheme, so they can never leak into valid rows. A mask of None means every
position is valid (a batch without padding, as in a genome scan): attention then runs unmasked and
the residual updates unweighted, the same numbers for less work (benchmarks/dense_path.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rotary_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (cos, signed sin) tables (B, 1, L, head_dim) for integer positions (B, L).

    Computed once per forward for each set of positions and shared by every layer. The sine's
    first half is negated so that rotate-half needs no separate negation.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = (positions.to(torch.float32)[..., None] * inv_freq)[:, None]
    return torch.cat([angles.cos(), angles.cos()], -1), torch.cat([-angles.sin(), angles.sin()], -1)


def apply_rotary(x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate-half RoPE (GPT-NeoX / Llama layout): x·cos + rotate_half(x)·sin.

    At inference each half's partner term is added into x·cos in place, with no concatenated copy
    of x: the same products and sums, so the same floats, for two fewer tensors of x's size.
    """
    cos, signed_sin = (t.to(x.dtype) for t in tables)
    half = x.shape[-1] // 2
    if torch.is_grad_enabled():
        return x * cos + torch.cat([x[..., half:], x[..., :half]], dim=-1) * signed_sin
    out = x * cos
    partner = torch.mul(x[..., half:], signed_sin[..., :half])
    out[..., :half] += partner
    torch.mul(x[..., :half], signed_sin[..., half:], out=partner)
    out[..., half:] += partner
    return out


def residual_add(hidden: torch.Tensor, update: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """hidden + keep·update, keep (B, L, 1) the weights of valid rows or None for every row.

    At inference `update` is a fresh activation used nowhere else, so the sum is written into it
    (IEEE sums and products commute: the same floats) rather than into a new tensor. Under autocast
    the update is bf16 and the residual stream float32, and the sum must stay float32: a new tensor.
    """
    if torch.is_grad_enabled() or update.dtype != hidden.dtype:
        return hidden + (update if keep is None else keep * update)
    if keep is not None:
        update.mul_(keep)
    return update.add_(hidden)


class Attention(nn.Module):
    """Multi-head attention with RoPE on queries and keys; no biases (spec §2.1)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o = nn.Linear(hidden_size, hidden_size, bias=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query, key_value, query_rotary, key_rotary, key_mask):
        """query (B, Lq, d), key_value (B, Lk, d), rotary tables from `rotary_tables`, key_mask (B, Lk)
        bool, or None when every key is valid."""
        q, k, v = self._heads(self.q(query)), self._heads(self.k(key_value)), self._heads(self.v(key_value))
        q, k = apply_rotary(q, query_rotary), apply_rotary(k, key_rotary)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        batch, _, length, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(batch, length, -1))


class SwiGLU(nn.Module):
    """W2(silu(W1 x) * W3 x), no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.w1 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.w2 = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.w3 = nn.Linear(hidden_size, intermediate_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # autograd keeps silu's input: no in-place work
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        # Inference: the (rows, 4d) intermediate is the largest tensor of a layer; reuse it in place
        # instead of allocating two more of its size (fresh pages under the engine's heap bounds).
        gate = self.w1(x)
        return self.w2(F.silu(gate, inplace=True).mul_(self.w3(x)))


class PreLNBlock(nn.Module):
    """The parameters shared by self- and cross-attention blocks: LN, attention, LN, SwiGLU."""

    def __init__(self, hidden_size, num_heads, intermediate_size, eps):
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.attn = Attention(hidden_size, num_heads)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.ffn = SwiGLU(hidden_size, intermediate_size)


class EncoderLayer(PreLNBlock):
    """Pre-LN block: h += Attn(LN1 h); h += SwiGLU(LN2 h), updating valid rows only."""

    def forward(self, hidden: torch.Tensor, rotary, mask: torch.Tensor | None) -> torch.Tensor:
        """mask (B, L) bool, or None when every position is valid."""
        normed = self.attn_norm(hidden)
        keep = None if mask is None else mask[..., None].to(hidden.dtype)
        hidden = residual_add(hidden, self.attn(normed, normed, rotary, rotary, mask), keep)
        return residual_add(hidden, self.ffn(self.ffn_norm(hidden)), keep)


class CrossAttentionLayer(PreLNBlock):
    """Pre-LN cross-attention block; one LayerNorm serves queries and memory (spec §3.6)."""

    def forward(self, query, memory, query_rotary, memory_rotary, memory_mask):
        hidden = residual_add(query, self.attn(self.attn_norm(query), self.attn_norm(memory), query_rotary, memory_rotary, memory_mask))
        return residual_add(hidden, self.ffn(self.ffn_norm(hidden)))
