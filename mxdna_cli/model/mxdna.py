"""The MxDNA model: nucleotide layers, learnt tokenizer, token layers, and its heads.

`MxDNAModel` is the backbone. `MxDNAForMaskedLM` adds the cross-attention decoder that maps tokens
back to single nucleotides (pretraining). `MxDNAForSequenceClassification` adds a classifier,
either through the decoder at [CLS] as in the reference, or by mean pooling over tokens.
Every forward returns an `MxDNAOutput` that exposes the learnt tokenization: basic units, token
centres, deformable sampling positions and weights, and nucleotide- and token-level states.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mxdna_cli import sequence as vocab
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.layers import CrossAttentionLayer, EncoderLayer, rotary_tables
from mxdna_cli.model.tokenizer_layer import DeformableAssembly, LearntTokenizer, Tokenization


def pad_batch(id_arrays: list[np.ndarray], device: torch.device | str = "cpu"):
    """Wrap each id array as [CLS] ids [SEP], right-pad to one length: (input_ids, attention_mask)."""
    length = max(len(ids) for ids in id_arrays) + 2
    input_ids = np.full((len(id_arrays), length), vocab.PAD, dtype=np.int64)
    for row, ids in enumerate(id_arrays):
        input_ids[row, 0] = vocab.CLS
        input_ids[row, 1 : len(ids) + 1] = ids
        input_ids[row, len(ids) + 1] = vocab.SEP
    input_ids = torch.from_numpy(input_ids).to(device)
    return input_ids, input_ids != vocab.PAD


def nucleotide_positions(input_ids: torch.Tensor) -> torch.Tensor:
    """Position ids 0..L-1 for every row (0 is [CLS])."""
    return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)


def position_masks(input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """(nucleotide_mask, special_mask): which valid positions hold nucleotides, which CLS/SEP."""
    attention_mask = attention_mask.bool()
    special = attention_mask & ((input_ids == vocab.CLS) | (input_ids == vocab.SEP))
    return attention_mask & ~special, special


def dense_or(mask: torch.Tensor) -> torch.Tensor | None:
    """None when every position of the batch is valid (the layers then skip the masking), else the mask."""
    return None if bool(mask.all()) else mask


@dataclass
class MxDNAOutput:
    """Everything one forward pass produces. Token tensors are compacted: (B, K, ...)."""

    nucleotide_hidden: torch.Tensor  # (B, L, d) output of the nucleotide layers
    token_hidden: torch.Tensor  # (B, K, d) final token states (after the last LayerNorm)
    tokenization: Tokenization
    attention_mask: torch.Tensor  # (B, L) bool
    token_layer_states: list[torch.Tensor] = field(default_factory=list)  # (B, K, d) per token layer, if asked
    nucleotide_rotary: tuple | None = None  # RoPE tables, reused by the heads
    token_rotary: tuple | None = None
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None

    @property
    def token_positions(self) -> torch.Tensor:
        return self.tokenization.token_positions

    @property
    def token_valid(self) -> torch.Tensor:
        return self.tokenization.token_valid

    @property
    def load_balancing_loss(self) -> torch.Tensor:
        return self.tokenization.load_balancing_loss


def init_weights(module: nn.Module, std: float) -> None:
    """Truncated-normal weights (std 0.02), zero biases, unit LayerNorms, zero deformable offsets."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv1d, nn.Embedding)):
            nn.init.trunc_normal_(sub.weight, std=std)
            if getattr(sub, "bias", None) is not None:
                nn.init.zeros_(sub.bias)
            if isinstance(sub, nn.Embedding) and sub.padding_idx is not None:
                with torch.no_grad():
                    sub.weight[sub.padding_idx].zero_()
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, LearntTokenizer):
            nn.init.trunc_normal_(sub.masked_unit_embedding, std=std)
    for sub in module.modules():
        if isinstance(sub, DeformableAssembly):
            sub.reset_parameters(std)


def _encoder_layer(config: ModelConfig) -> EncoderLayer:
    return EncoderLayer(config.hidden_size, config.num_heads, config.intermediate_size, config.layer_norm_eps)


class MxDNAModel(nn.Module):
    """Backbone: embedding, nucleotide layers, learnt tokenizer, token layers, final LayerNorm.

    Under autocast (bf16, fp16) the nucleotide layers and the learnt tokenizer still run in
    float32 while `exact_units` is True (the default): they decide the basic units, a discrete
    choice that reduced precision flips at near-ties (a fifth of the units under bf16, measured),
    so the units stay those of float32 and the token layers (and the masked-LM decoder) run in
    reduced precision; the classification head stays float32 too. In training mode everything
    autocasts (speed; the router is jittered there anyway).
    """

    exact_units = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=vocab.PAD)
        self.nucleotide_layers = nn.ModuleList(_encoder_layer(config) for _ in range(config.num_nucleotide_layers))
        self.tokenizer = LearntTokenizer(config)
        self.token_layers = nn.ModuleList(_encoder_layer(config) for _ in range(config.num_token_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, attention_mask, *, keep_layers: bool = False, sample: bool | None = None) -> MxDNAOutput:
        attention_mask = attention_mask.bool()
        nucleotide_mask, special_mask = position_masks(input_ids, attention_mask)
        nucleotide_rotary = self.rotary(nucleotide_positions(input_ids))
        with self.in_float32(input_ids.device.type):
            hidden = self.embed_tokens(input_ids)
            layer_mask = dense_or(attention_mask)
            for layer in self.nucleotide_layers:
                hidden = layer(hidden, nucleotide_rotary, layer_mask)
            tokenization = self.tokenizer(hidden, nucleotide_mask, special_mask, sample=sample)
        tokens = tokenization.tokens
        layer_states = [tokens] if keep_layers else []
        # RoPE positions of tokens are nucleotide indices: relative distances stay in nucleotides.
        token_rotary = self.rotary(tokenization.token_positions)
        token_mask = dense_or(tokenization.token_valid)
        for layer in self.token_layers:
            tokens = layer(tokens, token_rotary, token_mask)
            if keep_layers:
                layer_states.append(tokens)
        return MxDNAOutput(
            nucleotide_hidden=hidden,
            token_hidden=self.final_norm(tokens),
            tokenization=tokenization,
            attention_mask=attention_mask,
            token_layer_states=layer_states,
            nucleotide_rotary=nucleotide_rotary,
            token_rotary=token_rotary,
        )

    def in_float32(self, device_type: str):
        """Autocast off for what must stay float32 (see the class docstring); else nothing."""
        if self.exact_units and not self.training and torch.is_autocast_enabled(device_type):
            return torch.autocast(device_type, enabled=False)
        return contextlib.nullcontext()

    def rotary(self, positions: torch.Tensor):
        return rotary_tables(positions, self.config.head_dim, self.config.rope_theta)


class LMHead(nn.Module):
    """Linear d->d + bias, GELU, LayerNorm, Linear d->vocab (+ bias)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(F.gelu(self.dense(x)))) + self.bias


def _decoder_layer(config: ModelConfig) -> CrossAttentionLayer:
    return CrossAttentionLayer(config.hidden_size, config.num_heads, config.intermediate_size, config.layer_norm_eps)


class MxDNAForMaskedLM(nn.Module):
    """Backbone + cross-attention decoder (nucleotides attend to tokens) + LM head (spec §3.6)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = MxDNAModel(config)
        self.decoder = _decoder_layer(config)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.lm_head = LMHead(config)
        init_weights(self, config.initializer_range)

    def forward(self, input_ids, attention_mask, labels=None, **kwargs) -> MxDNAOutput:
        out = self.model(input_ids, attention_mask, **kwargs)
        decoded = self.decoder(
            out.nucleotide_hidden, out.token_hidden, out.nucleotide_rotary, out.token_rotary, out.token_valid
        )
        out.logits = self.lm_head(self.norm(decoded))
        if labels is not None:
            out.mlm_loss = F.cross_entropy(
                out.logits.float().view(-1, out.logits.shape[-1]), labels.view(-1), ignore_index=-100
            )
            out.loss = out.mlm_loss + self.config.load_balancing_coef * out.load_balancing_loss
        return out


class ClassificationHead(nn.Module):
    """dropout -> Linear d->d -> tanh -> dropout -> Linear d->classes (as the reference)."""

    def __init__(self, config: ModelConfig, num_labels: int):
        super().__init__()
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(x)))))


POOLINGS = ("decoder", "mean")


def mean_token_state(out: MxDNAOutput) -> torch.Tensor:
    """Mean of the final token states over basic-unit tokens (CLS and SEP excluded): (B, d)."""
    centres = out.tokenization.center_expert.gather(1, out.token_positions) >= 0
    weights = (centres & out.token_valid).to(out.token_hidden.dtype)[..., None]
    return (out.token_hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


class MxDNAForSequenceClassification(nn.Module):
    """Sequence classifier over the backbone.

    pooling="decoder" is the reference head: [CLS] of the token stream queries the concatenation of
    token and nucleotide states through a cross-attention layer (loads the MLM decoder's weights).
    pooling="mean" averages the final token states.
    """

    def __init__(self, config: ModelConfig, num_labels: int = 2, pooling: str = "decoder"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")
        self.config = config
        self.num_labels = num_labels
        self.pooling = pooling
        self.model = MxDNAModel(config)
        if pooling == "decoder":
            self.decoder = _decoder_layer(config)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.classifier = ClassificationHead(config, num_labels)
        init_weights(self, config.initializer_range)

    def pooled(self, out: MxDNAOutput) -> torch.Tensor:
        if self.pooling == "mean":
            return self.norm(mean_token_state(out))
        memory = torch.cat([out.token_hidden, out.nucleotide_hidden], dim=1)
        memory_rotary = tuple(torch.cat(pair, dim=2) for pair in zip(out.token_rotary, out.nucleotide_rotary))
        memory_mask = torch.cat([out.token_valid, out.attention_mask], dim=1)
        cls = out.token_hidden[:, :1]  # token 0 is [CLS] (nucleotide index 0)
        cls_rotary = tuple(table[:, :, :1] for table in out.token_rotary)
        decoded = self.decoder(cls, memory, cls_rotary, memory_rotary, memory_mask)
        return self.norm(decoded[:, 0])

    def forward(self, input_ids, attention_mask, labels=None, class_weights=None, **kwargs) -> MxDNAOutput:
        out = self.model(input_ids, attention_mask, **kwargs)
        # The head is cheap (one query) and sets the probabilities users threshold: float32 (bf16
        # there moved promoter probabilities by up to 6e-3, against 1e-4 with it in float32).
        with self.model.in_float32(input_ids.device.type):
            out.logits = self.classifier(self.pooled(out))
        if labels is not None:
            out.loss = F.cross_entropy(out.logits.float(), labels, weight=class_weights) + (
                self.config.load_balancing_coef * out.load_balancing_loss
            )
        return out
