"""Run a model on windows: batch them by a token budget, run the backbone (units, gates, token
states) or the classifier, and hand the results back in input order.

Batching. Windows are gathered in chunks, sorted by length inside a chunk (less padding) and packed
into batches of at most `batch_tokens` input positions (nucleotides + [CLS] + [SEP]); results are
handed back in input order, so outputs stream in the order of the input.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from mxdna_cli.defaults import DEFAULT_BATCH_TOKENS
from mxdna_cli.runtime import LoadedModel
from mxdna_cli.engine.report import Reporter
from mxdna_cli.errors import UsageError
from mxdna_cli.model.mxdna import pad_batch
from mxdna_cli.model.selection import unit_spans

CHUNK_BATCHES = 8  # windows gathered (in batches' worth of tokens) before sorting them by length


def _malloc_trim() -> Callable[[], Any] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give freed heap memory back to the system after a batch.

    The unit selection's rounds allocate tensors of ever-different sizes; glibc keeps the freed
    pieces, and the peak resident size of a genome-scale run then creeps up with the number of
    batches (measured: +437 MiB from 1 to 5 Mb of promoter track without trimming). Trimming after
    every batch keeps it nearly flat (docs/benchmarks.md).
    """
    if _TRIM is not None:
        _TRIM(0)


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


def batch_groups(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices of windows of `lengths` nucleotides grouped into batches: longest first, each batch
    within `batch_tokens` input positions once padded (nucleotides + [CLS] + [SEP]; a window
    longer than the budget is a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        positions = lengths[i] + 2
        if current and (len(current) + 1) * max(width, positions) > batch_tokens:
            groups.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, positions)
    if current:
        groups.append(current)
    return groups


class Runner:
    """Feeds windows to a model in token-budget batches, longest first, and returns results in order."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        layer: int | None = None,
        states: bool = False,
        sampling: bool = False,
        reporter: Reporter | None = None,
    ) -> None:
        if batch_tokens < 1:
            raise UsageError(f"--batch-tokens {batch_tokens}: must be at least 1")
        self.loaded = loaded
        self.batch_tokens = batch_tokens
        self.layer = layer
        self.states = states
        self.sampling = sampling
        self.reporter = reporter or Reporter()
        self.windows = 0

    # -- batching

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped into batches: longest first, each within the budget (or a single window)."""
        return batch_groups(lengths, self.batch_tokens)

    def run(self, tasks: Iterable[Any], forward: Callable[[list[np.ndarray]], list[Any]], *,
            done: int = 0, checkpoint: Callable[[int], None] | None = None) -> Iterator[tuple[Any, Any]]:
        """(task, result) for every task (objects with `.ids` and `.progress`), in task order.

        `checkpoint(n)` is called each time the caller has taken every result of a chunk, with n the
        tasks done in all (`done` of them before these `tasks`): a point where a resumed run can
        start and batch exactly as this one does (chunks are laid out from the first task).
        """
        chunk: list[Any] = []
        tokens = 0
        limit = self.batch_tokens * CHUNK_BATCHES
        for task in tasks:
            chunk.append(task)
            tokens += len(task.ids) + 2
            if tokens >= limit:
                yield from self._run_chunk(chunk, forward)
                done += len(chunk)
                chunk, tokens = [], 0
                if checkpoint is not None:
                    checkpoint(done)
        if chunk:
            yield from self._run_chunk(chunk, forward)

    def _run_chunk(self, chunk: list[Any], forward) -> Iterator[tuple[Any, Any]]:
        results: list[Any] = [None] * len(chunk)
        for group in self.batches([len(task.ids) for task in chunk]):
            outputs = forward([chunk[i].ids for i in group])
            for i, output in zip(group, outputs):
                results[i] = output
            self.windows += len(group)
            self.reporter.advance(sum(chunk[i].progress for i in group))
            release_freed_memory()  # after every batch: a few microseconds (measured), keeps the peak flat
        yield from zip(chunk, results)

    # -- forward passes

    def backbone(self, id_arrays: list[np.ndarray]) -> list[WindowOutput]:
        loaded = self.loaded
        input_ids, attention_mask = pad_batch(id_arrays, loaded.device)
        keep_layers = self.layer is not None
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
        if self.states:
            tensor = out.token_hidden if self.layer is None else out.token_layer_states[self.layer]
            layer_states = tensor.float().cpu().numpy()
        samples = modulation = None
        if self.sampling:
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

    def classify(self, id_arrays: list[np.ndarray]) -> list[np.ndarray]:
        loaded = self.loaded
        input_ids, attention_mask = pad_batch(id_arrays, loaded.device)
        with torch.inference_mode(), loaded.autocast_context():
            logits = loaded.module(input_ids, attention_mask).logits
        return list(torch.softmax(logits.float(), dim=-1).cpu().numpy())

