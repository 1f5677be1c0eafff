"""The model step: one batch of windows (lists of ids) through the backbone, giving each window's
basic units, gates, token states and deformable sampling (`backbone`), or through a classifier,
giving class probabilities (`classify`). Padding is the model's business (`pad_batch`); results
come back one per window, in window coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mxdna_cli.errors import UsageError
from mxdna_cli.model.mxdna import pad_batch
from mxdna_cli.model.selection import unit_spans
from mxdna_cli.runtime import LoadedModel, class_probabilities


def resolve_layer(layer: int | None, num_token_layers: int) -> tuple[int | None, int]:
    """(index into token_layer_states or None for the final normed states, the layer number shown)."""
    if layer is None:
        return None, num_token_layers
    shown = layer + num_token_layers + 1 if layer < 0 else layer
    if not 0 <= shown <= num_token_layers:
        raise UsageError(
            f"--layer {layer}: this model has token layers 0..{num_token_layers} "
            f"(0 = tokenizer output, {num_token_layers} = final)"
        )
    return (None if shown == num_token_layers else shown), shown


@dataclass
class WindowOutput:
    """What the backbone says about one window, in window coordinates (0 = first base read).

    Units are in order; unit i is token i+1 of the model (token 0 is [CLS]).
    """

    starts: np.ndarray  # (U,) first base of each unit
    lengths: np.ndarray  # (U,) unit length (the expert's kernel size)
    experts: np.ndarray  # (U,) expert id
    gates: np.ndarray  # (U,) router probability of the chosen expert
    states: np.ndarray | None = None  # (U, d) token states at the chosen layer
    cls: np.ndarray | None = None  # (d,) [CLS] state at the chosen layer
    sample_positions: np.ndarray | None = None  # (U, f) deformable sampling positions (window bases)
    modulation: np.ndarray | None = None  # (U, f) deformable modulation factors

    @property
    def centres(self) -> np.ndarray:
        return self.starts + self.lengths // 2


def backbone(loaded: LoadedModel, id_arrays: list[np.ndarray], *, layer: int | None = None, states: bool = False,
             sampling: bool = False) -> list[WindowOutput]:
    """Units, gates and (optionally) token states at `layer` and deformable sampling of each window."""
    input_ids, attention_mask = pad_batch(id_arrays, loaded.device)
    keep_layers = layer is not None
    with torch.inference_mode(), loaded.autocast_context():
        out = loaded.backbone(input_ids, attention_mask, keep_layers=keep_layers)
    tok = out.tokenization
    batch_idx, start, length, expert = unit_spans(tok.center_expert, loaded.kernel_sizes)
    centre = start + length // 2
    gates = tok.gate[batch_idx, centre].float()
    batch_idx, start, length, expert, centre = (t.cpu().numpy() for t in (batch_idx, start, length, expert, centre))
    gates = gates.cpu().numpy()
    positions = out.token_positions.cpu().numpy()
    layer_states = None
    if states:
        tensor = out.token_hidden if layer is None else out.token_layer_states[layer]
        layer_states = tensor.float().cpu().numpy()
    samples = modulation = None
    if sampling:
        samples = tok.sample_positions.float().cpu().numpy()
        modulation = tok.modulation.float().cpu().numpy()
    bounds = np.searchsorted(batch_idx, np.arange(len(id_arrays) + 1))
    results = []
    for row in range(len(id_arrays)):
        lo, hi = bounds[row], bounds[row + 1]
        units = hi - lo
        # token 0 is [CLS]; tokens 1..U are the unit centres in order
        if positions[row, 0] != 0 or not np.array_equal(positions[row, 1 : units + 1], centre[lo:hi]):
            raise RuntimeError("model tokens and basic units disagree (token positions are not the unit centres)")
        result = WindowOutput(
            starts=start[lo:hi] - 1,  # input index -> base index ([CLS] is input index 0)
            lengths=length[lo:hi],
            experts=expert[lo:hi],
            gates=gates[lo:hi],
        )
        if layer_states is not None:
            result.states = layer_states[row, 1 : units + 1]
            result.cls = layer_states[row, 0]
        if samples is not None:
            result.sample_positions = samples[row, 1 : units + 1] - 1
            result.modulation = modulation[row, 1 : units + 1]
        results.append(result)
    return results


def classify(loaded: LoadedModel, id_arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Class probabilities of each window (softmax in float32)."""
    return list(class_probabilities(loaded.module, id_arrays, loaded.device, loaded.autocast))


@dataclass
class MaskedLmOutput:
    """What the masked LM says about one window: the base log-probabilities at its [MASK] positions
    and the window's pooled embedding (variant scoring, in-silico mutagenesis)."""

    log_probs: np.ndarray  # (M, 4) float64 log P over A, T, C, G (ids 5..8) at each [MASK], in window order
    pooled: np.ndarray  # (d,) float64 mean of the final token states over the basic units


def masked_lm(loaded: LoadedModel, id_arrays: list[np.ndarray]) -> list[MaskedLmOutput]:
    """Run a masked-LM model (backbone + nucleotide decoder) on a batch of windows.

    The log-probabilities are renormalised over the four bases: a [MASK] stands for a nucleotide,
    and the difference of two bases' log-probabilities (a log-likelihood ratio) is the same either way.
    """
    from mxdna_cli import sequence as dna
    from mxdna_cli.model.mxdna import mean_token_state

    if not hasattr(loaded.module, "lm_head"):
        raise UsageError(f"model '{loaded.name}' is a {loaded.info.task} model without the masked-LM head; "
                         "pass a masked-LM model (e.g. the bundled mxdna-small)")
    input_ids, attention_mask = pad_batch(id_arrays, loaded.device)
    with torch.inference_mode(), loaded.autocast_context():
        out = loaded.module(input_ids, attention_mask)
    log_probs = torch.log_softmax(out.logits.float()[..., dna.A : dna.G + 1], dim=-1).double()
    pooled = mean_token_state(out).double().cpu().numpy()
    masked = (input_ids == dna.MASK).cpu().numpy()
    log_probs = log_probs.cpu().numpy()
    return [MaskedLmOutput(log_probs[row][masked[row]], pooled[row]) for row in range(len(id_arrays))]
