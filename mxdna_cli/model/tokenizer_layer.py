"""The learnt tokenization layer: router -> unit selection -> convolution experts -> deformable assembly.

Follows the checkpoint-compatible semantics (spec §3, §9): the stream stays full length, basic
units are written at their centre nucleotides, and the deformable convolution samples in
nucleotide coordinates. Only the final token positions (unit centres plus CLS/SEP) are returned,
compacted with their nucleotide indices, because nothing downstream reads other positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mxdna_cli.model.config import ModelConfig, expert_groups
from mxdna_cli.model.selection import member_expert, select_units


class ConvolutionExpert(nn.Module):
    """E_j: Linear d->2d, GLU, grouped conv (kernel = stride = unit length), LayerNorm, SiLU, Linear."""

    def __init__(self, hidden_size: int, kernel_size: int, eps: float):
        super().__init__()
        self.kernel_size = kernel_size
        self.pre = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        self.conv = nn.Conv1d(
            hidden_size, hidden_size, kernel_size, stride=kernel_size,
            groups=expert_groups(kernel_size, hidden_size), bias=False,
        )
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.post = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, units: torch.Tensor) -> torch.Tensor:
        """units (U, kernel_size, d) -> one vector per unit (U, d)."""
        x = unit_convolution(F.glu(self.pre(units), dim=-1), self.conv.weight, self.conv.groups)
        return self.post(F.silu(self.norm(x)))


def unit_convolution(units: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The expert's grouped convolution with kernel = stride = unit length, one output per unit,
    as a batched matmul over the groups: units (U, k, d), weight (d, d / groups, k) -> (U, d).

    Conv1d's arithmetic up to summation order (1e-7): a oneDNN convolution builds a new kernel for
    every unit count, which changes from batch to batch, and took twice this time.
    """
    count, k, d = units.shape
    width = d // groups
    # (U, k, groups, width) -> (groups, U, k * width), summed against (groups, k * width, width)
    x = units.view(count, k, groups, width).permute(2, 0, 1, 3).reshape(groups, count, k * width)
    w = weight.view(groups, width, width, k).permute(0, 3, 2, 1).reshape(groups, k * width, width)
    return torch.bmm(x, w).transpose(0, 1).reshape(count, d)


def deformable_conv1d(values, centres, offsets, modulation, weight, value_mask=None):
    """1-D modulated deformable convolution evaluated at the given centres (pure PyTorch).

    values (B, L, d_in) is the source, read as zero where `value_mask` (B, L) is False; centres (B, K)
    integer positions; offsets and modulation (B, K, f); weight (d_out, d_in, f). Tap t of centre c
    samples position c + t - f//2 + offset by linear interpolation (zero outside [0, L)), as
    torchvision's deform_conv2d does on an L x 1 image. Returns the output (B, K, d_out) and the
    sample positions.

    Each tap reads two rows of the source, weighted by its interpolation weight times its
    modulation (one (B, K, f) coefficient per row, the masks folded in), and the convolution is one
    matmul over (tap, channel): no (B, K, f, d) index and no masked copy of the source.
    """
    batch, length, channels = values.shape
    count, taps = centres.shape[1], weight.shape[-1]
    grid = torch.arange(taps, device=values.device, dtype=offsets.dtype) - taps // 2
    # Split integer and fractional parts relative to the centre: the interpolation weights then
    # carry the offsets' own precision instead of that of an absolute position (whose float32
    # spacing grows with the position, and would make results depend on rounding noise).
    relative = grid + offsets
    step = torch.floor(relative)
    frac = (relative - step).to(values.dtype)
    low = centres[..., None] + step.long()
    positions = centres[..., None].to(offsets.dtype) + relative
    modulation = modulation.to(values.dtype)
    rows = values.reshape(batch * length, channels)
    row_start = (torch.arange(batch, device=values.device) * length)[:, None, None]

    def sample(index: torch.Tensor, coefficient: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The source rows at `index` (B, K, f, d), and their coefficients, zero where they read nothing."""
        clamped = index.clamp(0, length - 1)
        reads = (index >= 0) & (index < length)
        if value_mask is not None:
            reads &= value_mask.gather(1, clamped.view(batch, -1)).view_as(index)
        picked = rows.index_select(0, (clamped + row_start).view(-1)).view(batch, count, taps, channels)
        return picked, (coefficient * reads)[..., None]

    low_rows, low_coefficient = sample(low, (1 - frac) * modulation)
    high_rows, high_coefficient = sample(low + 1, frac * modulation)
    if torch.is_grad_enabled():
        sampled = low_rows * low_coefficient + high_rows * high_coefficient
    else:  # inference: the gathered rows are fresh tensors, weighted and summed in place
        sampled = low_rows.mul_(low_coefficient).addcmul_(high_rows, high_coefficient)
    # (B * K, f * d_in) against (f * d_in, d_out): weight[o, i, t] at row t * d_in + i
    kernel = weight.permute(2, 1, 0).reshape(taps * channels, -1)
    return (sampled.view(batch * count, taps * channels) @ kernel).view(batch, count, -1), positions


class DeformableAssembly(nn.Module):
    """Assembles basic units into final tokens with a modulated deformable convolution (spec §3.4)."""

    def __init__(self, hidden_size: int, kernel_size: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.offset_conv = nn.Conv1d(hidden_size, kernel_size, kernel_size, padding=kernel_size // 2)
        self.modulator_conv = nn.Conv1d(hidden_size, kernel_size, kernel_size, padding=kernel_size // 2)
        self.weight = nn.Parameter(torch.empty(hidden_size, hidden_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """Zero offsets and modulators: at initialisation each token samples only its own neighbourhood."""
        nn.init.trunc_normal_(self.weight, std=std)
        for conv in (self.offset_conv, self.modulator_conv):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, hidden, token_positions, token_mask, nucleotide_mask, valid_mask):
        """hidden (B, L, d) after the experts; token_positions (B, K); masks (B, L) bool.

        Returns tokens (B, K, d) and sampling info.
        """
        normed = self.norm(hidden)
        # Offsets and modulators look at neighbouring nucleotides, whether or not they are tokens.
        # Padding rows read as zero: alone, the convolution's own zero padding is what [SEP]'s
        # right-hand tap sees, and a padded row's LayerNorm output (its bias) must not replace it.
        offsets_all, modulation_all = self._offsets_and_modulators(normed, valid_mask)
        modulation_all = 2 * torch.sigmoid(modulation_all)
        index = token_positions[..., None].expand(-1, -1, offsets_all.shape[-1])
        offsets = offsets_all.gather(1, index)
        modulation = modulation_all.gather(1, index)
        # Only unit centres carry values: CLS/SEP and plain nucleotides read as zero.
        assembled, sample_positions = deformable_conv1d(normed, token_positions, offsets, modulation, self.weight,
                                                        value_mask=token_mask & nucleotide_mask)
        tokens = hidden.gather(1, token_positions[..., None].expand(-1, -1, hidden.shape[-1])) + assembled
        return tokens, sample_positions, modulation

    def _offsets_and_modulators(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """offset_conv and modulator_conv (kernel f, zero padding f // 2) over x (B, L, d), both as
        one matmul of every position with every tap, then shifted sums: (B, L, f) each. Rows where
        `valid` (B, L) is False read as zero (their products are zeroed, not their (B, L, d) input).

        Conv1d's arithmetic up to summation order (1e-7), without the transposed copy of x that a
        convolution reads, or a new oneDNN kernel for every batch length: a ninth of the time
        (1.1-1.3 against 9.5-11.2 ms at 8 x 1 kb).
        """
        batch, length, _ = x.shape
        taps = self.offset_conv.kernel_size[0]
        weight = torch.cat([self.offset_conv.weight, self.modulator_conv.weight])  # (2f, d, taps)
        per_tap = (x @ weight.permute(1, 2, 0).flatten(1)).view(batch, length, taps, -1)  # (B, L, taps, 2f)
        if valid is not None:
            per_tap = per_tap * valid[..., None, None].to(per_tap.dtype)
        out = torch.cat([self.offset_conv.bias, self.modulator_conv.bias]).expand(batch, length, -1).clone()
        for tap in range(taps):  # out[l] += per_tap[l + shift, tap], zero outside [0, L)
            shift = tap - taps // 2
            if shift <= 0:
                out[:, -shift:] += per_tap[:, : length + shift, tap]
            else:
                out[:, :-shift] += per_tap[:, shift:, tap]
        return out[..., : weight.shape[0] // 2], out[..., weight.shape[0] // 2 :]


@dataclass
class Tokenization:
    """What the tokenization layer decided for a batch, in nucleotide-index coordinates."""

    tokens: torch.Tensor  # (B, K, d) token states, compacted
    token_positions: torch.Tensor  # (B, K) nucleotide index of each token (unit centre, CLS or SEP)
    token_valid: torch.Tensor  # (B, K) bool
    router_logits: torch.Tensor  # (B, L, n)
    center_expert: torch.Tensor  # (B, L) expert at unit centres, -1 elsewhere
    gate: torch.Tensor  # (B, L) softmax probability of the chosen expert at centres, 0 elsewhere
    sample_positions: torch.Tensor  # (B, K, f) deformable sampling positions
    modulation: torch.Tensor  # (B, K, f) deformable modulation factors, in (0, 2)
    load_balancing_loss: torch.Tensor  # scalar


def compact_positions(mask: torch.Tensor):
    """Indices of True entries per row, left-aligned in order: (B, K) indices and (B, K) validity."""
    counts = mask.sum(dim=1)
    width = int(counts.max()) if mask.shape[0] else 0
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=mask.device)[None, :] < counts[:, None]
    return torch.where(valid, order, torch.zeros_like(order)), valid


def load_balancing_loss(router_logits, center_expert, num_experts):
    """n * sum_j f_j * mean P_j over unit centres (spec §3.7); 1.0 under perfect balance."""
    is_centre = center_expert >= 0
    if not bool(is_centre.any()):
        return router_logits.new_zeros((), dtype=torch.float32)
    probs = torch.softmax(router_logits[is_centre].float(), dim=-1)
    fractions = torch.bincount(center_expert[is_centre], minlength=num_experts).float() / probs.shape[0]
    return num_experts * (fractions * probs.mean(dim=0)).sum()


class LearntTokenizer(nn.Module):
    """Router, exact greedy selection, sparse mixture of convolution experts, deformable assembly."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.hidden_size
        self.kernel_sizes = config.expert_kernel_sizes
        self.jitter = config.router_jitter
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.router = nn.Linear(d, config.num_experts, bias=False)
        # Unused by every forward pass; kept so the reference checkpoint loads strictly (spec §3.3.3).
        self.masked_unit_embedding = nn.Parameter(torch.empty(d))
        nn.init.trunc_normal_(self.masked_unit_embedding, std=config.initializer_range)
        self.experts = nn.ModuleList(
            ConvolutionExpert(d, k, config.expert_layer_norm_eps) for k in config.expert_kernel_sizes
        )
        self.assembly = DeformableAssembly(d, config.deformable_kernel_size, config.layer_norm_eps)

    def forward(self, hidden, nucleotide_mask, special_mask, *, sample: bool | None = None) -> Tokenization:
        """hidden (B, L, d) from the nucleotide layers; masks (B, L) bool.

        `sample` turns the router jitter on (default: in training mode only).
        """
        normed = self.norm(hidden)
        logits, center, gate = self.route(normed, nucleotide_mask, sample)
        hidden = self.add_experts(hidden, normed, center, gate)
        tokens, positions, valid, sample_positions, modulation = self.assemble(
            hidden, center, nucleotide_mask, special_mask)
        return Tokenization(
            tokens=tokens,
            token_positions=positions,
            token_valid=valid,
            router_logits=logits,
            center_expert=center,
            gate=gate,
            sample_positions=sample_positions,
            modulation=modulation,
            load_balancing_loss=load_balancing_loss(logits, center, len(self.kernel_sizes)),
        )

    def route(self, normed, nucleotide_mask, sample: bool | None = None):
        """Router scores (B, L, n), the exact unit selection (center_expert, B x L) and the gate of each
        unit's expert at its centre (B, L; 0 elsewhere)."""
        router_input = normed
        if (self.training if sample is None else sample) and self.jitter > 0:
            noise = torch.empty_like(normed).uniform_(1 - self.jitter, 1 + self.jitter)
            router_input = normed * noise
        # the router has no bias: masking its (B, L, n) output is masking its (B, L, d) input
        logits = self.router(router_input)
        logits = logits * nucleotide_mask[..., None].to(logits.dtype)
        center = select_units(logits.detach(), nucleotide_mask, self.kernel_sizes)
        probs = torch.softmax(logits.float(), dim=-1)
        gate = probs.gather(-1, center.clamp(min=0)[..., None]).squeeze(-1) * (center >= 0)
        return logits, center, gate

    def assemble(self, hidden, center, nucleotide_mask, special_mask):
        """The tokens (unit centres, CLS and SEP) assembled from hidden after the experts: tokens
        (B, K, d), their positions and validity (B, K), sample positions and modulation (B, K, f)."""
        token_mask = (center >= 0) | special_mask
        positions, valid = compact_positions(token_mask)
        tokens, sample_positions, modulation = self.assembly(
            hidden, positions, token_mask, nucleotide_mask, nucleotide_mask | special_mask
        )
        return tokens, positions, valid, sample_positions, modulation

    def add_experts(self, hidden, normed, center, gate):
        """hidden plus each expert's output times its gate at its units' centres (a new tensor)."""
        batch, length, d = normed.shape
        flat_normed = normed.reshape(batch * length, d)
        flat_member = member_expert(center, self.kernel_sizes).reshape(-1)
        flat_center = center.reshape(-1)
        flat_gate = gate.reshape(-1)
        all_centres, outputs = [], []
        for j, expert in enumerate(self.experts):
            centres = torch.nonzero(flat_center == j).squeeze(-1)
            if centres.numel() == 0:
                continue
            # Row-major gathering keeps each unit's nucleotides consecutive (units never overlap).
            members = torch.nonzero(flat_member == j).squeeze(-1)
            units = flat_normed.index_select(0, members).view(-1, expert.kernel_size, d)
            outputs.append(expert(units) * flat_gate.index_select(0, centres)[:, None].to(normed.dtype))
            all_centres.append(centres)
        if not outputs:
            return hidden.clone()
        # one addition at the centres, for all experts: no (B*L, d) tensor of updates, mostly zeros
        return hidden.reshape(batch * length, d).index_add(
            0, torch.cat(all_centres), torch.cat(outputs).to(hidden.dtype)).view(batch, length, d)
