"""Run MxDNA over FASTA input: plan windows, batch them by a token budget, run the model, stitch
the windows back together, and hand rows to the writers.

Coordinates. A *target* is what an output row (or a group of rows) describes: a whole FASTA record,
a `--region` or a BED line, in forward genome coordinates (0-based half-open). The model reads a
target on one strand or on both; the reverse strand is the reverse complement. What the model
returns is in *model space* (0 = the first base the model read) and is mapped back to forward
genome coordinates only when written: model [a, b) is genome [start + a, start + b) on '+' and
[end - b, end - a) on '-'.

Stitching. A target longer than the window is read in overlapping windows
(`windows.plan_windows`). The basic units of two neighbouring windows are joined at a *cut*: the
unit boundary that both windows share, inside their overlap, closest to the windows' keep boundary
(the middle of the overlap). Left of the cut the left window's units are kept, right of it the
right window's, so the kept units tile the target exactly and each token (one per unit) is counted
once, by the window that saw it with the most context. If the two windows share no unit boundary
in their overlap (possible only when their units are out of phase along the whole overlap), the cut
is the keep boundary itself and the two units that straddle it are clipped to it (flagged `_clip`
in the BED name).

Batching. Windows are gathered in chunks, sorted by length inside a chunk (less padding) and packed
into batches of at most `batch_tokens` input positions (nucleotides + [CLS] + [SEP]); results are
handed back in input order, so outputs stream in the order of the input.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from mxdna_cli import __version__
from mxdna_cli import sequence as dna
from mxdna_cli import weights as model_files
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.bed import parse_region, read_bed
from mxdna_cli.io.fasta import STDIN, IndexedFasta, Region, check_input_file, iter_fasta_records
from mxdna_cli.io.writers import (
    STDOUT,
    Bed6Writer,
    Bed12Writer,
    BigWigWriter,
    NpyWriter,
    TsvWriter,
    atomic_output,
)
from mxdna_cli.model.mxdna import pad_batch
from mxdna_cli.model.selection import unit_spans
from mxdna_cli.windows import Window, plan_windows

DEFAULT_WINDOW = 1024
DEFAULT_BATCH_TOKENS = 16384
CHUNK_BATCHES = 8  # windows gathered (in batches' worth of tokens) before sorting them by length
DEFAULT_TRACK_WINDOW = 300
DEFAULT_TRACK_STEP = 50
DEFAULT_MIN_WEIGHT = 0.05
MAX_WHOLE_LENGTH_FACTOR = 16  # predict: a record longer than this x window must be scanned (--track)
PROMOTER_LABEL = "promoter"
NO_CLASSIFIER = "no promoter classifier is bundled yet; train one with `mxdna finetune` or pass --model"

STRANDS = ("forward", "reverse", "both")
POOLINGS = ("mean", "max", "cls", "none")
FORMATS = ("npy", "tsv")
DTYPES: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
OUT_DTYPES = ("float32", "float16")
INDEX_COLUMNS = ("name", "chrom", "start", "end", "strand", "n_fraction", "soft_masked_fraction")
TOKEN_COLUMNS = ("record", "chrom", "centre", "unit_start", "unit_end", "strand")
RECORD_COLUMNS = INDEX_COLUMNS + ("first_row", "n_tokens")
WINDOW_COLUMNS = ("record", "chrom", "strand", "start", "end", "keep_start", "keep_end")
PREDICT_COLUMNS = ("id", "chrom", "start", "end", "strand", "probability", "label")


# ---------------------------------------------------------------------------------------------
# Progress and warnings


class Reporter:
    """Where the engine reports progress and warnings; the CLI gives a rich one, tests a silent one."""

    def start(self, total: int | None, description: str) -> None:
        """A new phase of `total` nucleotides (None: unknown)."""

    def advance(self, nucleotides: int) -> None:
        """`nucleotides` more are done."""

    def stop(self) -> None:
        """The phase is over (also on error)."""

    def warn(self, message: str) -> None:
        """A one-line warning for the user."""


@dataclass
class Summary:
    """What a run did, for the one-line report at the end."""

    targets: int = 0
    nucleotides: int = 0
    windows: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.nucleotides / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------------------------------
# Inputs: whole records or regions, each read on one strand or both


def _flip(strand: str) -> str:
    return "-" if strand == "+" else "+"


def strands_for(region_strand: str, choice: str) -> tuple[str, ...]:
    """The strands the model reads for a target: `--strand` is relative to the BED strand."""
    if choice == "forward":
        return (region_strand,)
    if choice == "reverse":
        return (_flip(region_strand),)
    if choice == "both":
        return (region_strand, _flip(region_strand))
    raise UsageError(f"--strand {choice}: choose from {', '.join(STRANDS)}")


@dataclass
class Target:
    """One record or region, in forward genome coordinates, and the strands the model reads."""

    index: int
    name: str
    region: Region
    strands: tuple[str, ...]
    sequence: str | None = None  # forward-strand text, case kept
    n_fraction: float = 0.0  # share of N / ambiguity codes, set with the sequence
    soft_masked_fraction: float = 0.0  # share of lower-case bases, set with the sequence

    def attach(self, sequence: str) -> "Target":
        self.sequence = sequence
        self.n_fraction = round(dna.n_fraction(sequence), 6)
        self.soft_masked_fraction = round(dna.soft_masked_fraction(sequence), 6)
        return self

    @property
    def chrom(self) -> str:
        return self.region.chrom

    @property
    def start(self) -> int:
        return self.region.start

    @property
    def end(self) -> int:
        return self.region.end

    @property
    def length(self) -> int:
        return self.region.end - self.region.start

    @property
    def strand_label(self) -> str:
        """'+' or '-', or '.' when both strands were read (and averaged)."""
        return self.strands[0] if len(self.strands) == 1 else "."

    def model_ids(self, strand: str) -> np.ndarray:
        """The ids the model reads on `strand` (the reverse complement for '-')."""
        ids = dna.encode(self.sequence, record=self.name)
        return np.ascontiguousarray(dna.reverse_complement_ids(ids)) if strand == "-" else ids

    def to_genome(self, strand: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-space intervals [a, b) on `strand` as forward genome intervals."""
        if strand == "+":
            return self.start + a, self.start + b
        return self.end - b, self.end - a

    def centre_to_genome(self, strand: str, c: np.ndarray) -> np.ndarray:
        return self.start + c if strand == "+" else self.end - 1 - c


@dataclass
class InputSpec:
    """What the user asked to read: a FASTA path (`-` = stdin), regions, a BED file, a strand."""

    path: str
    regions: Sequence[str] = ()
    bed: str | None = None
    strand: str = "forward"


def _has_index(path: str) -> bool:
    """A plain or bgzip FASTA whose index files are already there (we never write them)."""
    if not os.path.exists(path + ".fai"):
        return False
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return not gzipped or os.path.exists(path + ".gzi")


class Inputs:
    """The targets of a run.

    Regions (`--region`, `--bed`) are fetched from an indexed FASTA (plain or bgzip; a missing
    `.fai` is built when the folder is writable). Whole records come from the index when one is
    already there (so the plan is known before reading), otherwise they are streamed (plain gzip,
    stdin). Every region is checked against the index before any work starts.
    """

    def __init__(self, spec: InputSpec) -> None:
        if spec.strand not in STRANDS:
            raise UsageError(f"--strand {spec.strand}: choose from {', '.join(STRANDS)}")
        self.spec = spec
        self.path = spec.path
        regions = [parse_region(text) for text in spec.regions]
        if spec.bed is not None:
            if spec.bed == STDIN and spec.path == STDIN:
                raise UsageError("the FASTA and the --bed file cannot both be stdin ('-')")
            check_input_file(spec.bed)
        if (regions or spec.bed is not None) and spec.path == STDIN:
            raise UsageError("--region and --bed need an indexed FASTA file, not stdin ('-')")
        check_input_file(spec.path)
        if spec.bed is not None:
            regions += read_bed(spec.bed)
        self._fasta: IndexedFasta | None = None
        self._records: list[Target] | None = None
        self._regions: list[Region] | None = None
        if regions:
            self._fasta = IndexedFasta(spec.path)
            for region in regions:
                self._check_region(region)
            self._regions = regions
        elif spec.path != STDIN and _has_index(spec.path):
            self._fasta = IndexedFasta(spec.path)
            self._regions = []
            for chrom in self._fasta.contigs:
                length = self._fasta.lengths[chrom]
                if length == 0:
                    raise DataError(f"{spec.path}: record '{chrom}' has an empty sequence")
                self._regions.append(Region(chrom, 0, length, name=chrom))

    @property
    def regions_mode(self) -> bool:
        return bool(self.spec.regions) or self.spec.bed is not None

    def _check_region(self, region: Region) -> None:
        assert self._fasta is not None
        where = f"'{region.name}' ({region.chrom}:{region.start + 1}-{region.end})" if region.name else region.label
        length = self._fasta.lengths.get(region.chrom)
        if length is None:
            shown = ", ".join(self._fasta.contigs[:5]) + (", ..." if len(self._fasta.contigs) > 5 else "")
            raise DataError(f"{self.path}: unknown contig '{region.chrom}' in region {where} (contigs: {shown})")
        if region.end > length:
            raise DataError(
                f"{self.path}: region {where} ends past the end of contig '{region.chrom}' (length {length})"
            )

    def _target(self, index: int, region: Region, sequence: str | None) -> Target:
        name = region.name if region.name else region.label
        target = Target(index, name, region, strands_for(region.strand, self.spec.strand))
        return target.attach(sequence) if sequence is not None else target

    def materialize(self) -> None:
        """Read a streamed input completely (needed when the row count or chrom sizes come first)."""
        if self._regions is None and self._records is None:
            self._records = list(self._stream())

    def _stream(self) -> Iterator[Target]:
        for index, record in enumerate(iter_fasta_records(self.path)):
            region = Region(record.name, 0, len(record.sequence), name=record.name)
            yield self._target(index, region, record.sequence)

    @property
    def known(self) -> bool:
        return self._regions is not None or self._records is not None

    def plan(self) -> list[Target]:
        """Every target without its sequence (needs a known plan: call materialize() first)."""
        if self._regions is not None:
            return [self._target(i, region, None) for i, region in enumerate(self._regions)]
        if self._records is not None:
            return self._records
        raise RuntimeError("streamed input: call materialize() first")

    @property
    def count(self) -> int | None:
        return len(self.plan()) if self.known else None

    @property
    def total_nucleotides(self) -> int | None:
        return sum(t.length for t in self.plan()) if self.known else None

    def chrom_sizes(self) -> list[tuple[str, int]]:
        """(name, length) of every contig, in file order (all contigs of the index for regions)."""
        if self._fasta is not None:
            return [(c, self._fasta.lengths[c]) for c in self._fasta.contigs if self._fasta.lengths[c] > 0]
        return [(t.chrom, t.length) for t in self.plan()]

    def contig_order(self) -> dict[str, int]:
        return {name: rank for rank, (name, _) in enumerate(self.chrom_sizes())}

    def targets(self, order: Sequence[Target] | None = None) -> Iterator[Target]:
        """Targets with their sequences, in input order (or in `order`, a reordering of plan())."""
        if self._records is not None:
            yield from (order if order is not None else self._records)
            return
        if self._regions is None:
            yield from self._stream()
            return
        assert self._fasta is not None
        for target in order if order is not None else self.plan():
            yield target.attach(self._fasta.fetch(target.region))

    def close(self) -> None:
        if self._fasta is not None:
            self._fasta.close()


# ---------------------------------------------------------------------------------------------
# Models


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when there is one), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available (use --device cpu)")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) found")
        return device
    raise UsageError(f"--device {name}: use auto, cpu, cuda or cuda:N")


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    if name not in DTYPES:
        raise UsageError(f"--dtype {name}: choose from {', '.join(DTYPES)}")
    if name == "float16" and device.type == "cpu":
        raise UsageError("--dtype float16 needs a CUDA device; on the CPU use bfloat16 or float32")
    return DTYPES[name]


@dataclass
class LoadedModel:
    """A model ready to run: the module, its card, where it runs and in what precision."""

    module: torch.nn.Module
    info: model_files.ModelInfo
    device: torch.device
    autocast: torch.dtype | None
    dtype_name: str

    @property
    def backbone(self) -> torch.nn.Module:
        return self.module.model

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        return self.info.config.expert_kernel_sizes

    @property
    def hidden_size(self) -> int:
        return self.info.config.hidden_size

    @property
    def num_token_layers(self) -> int:
        return self.info.config.num_token_layers

    def autocast_context(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def meta(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "model_sha256": self.info.sha256,
            "model_task": self.info.task,
            "model_trained": self.info.trained,
            "device": str(self.device),
            "dtype": self.dtype_name,
        }


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads {threads}: must be at least 1")
    torch.set_num_threads(threads)


def load(
    name_or_path: str | None,
    *,
    device: str = "auto",
    dtype: str = "float32",
    threads: int | None = None,
    reporter: Reporter | None = None,
) -> LoadedModel:
    """Resolve (`weights.resolve_model`: path, bundled name, $MXDNA_WEIGHTS, default) and load a model."""
    set_threads(threads)
    torch_device = pick_device(device)
    cast = autocast_dtype(dtype, torch_device)
    try:
        folder = model_files.resolve_model(name_or_path)
    except DataError as error:
        if name_or_path is not None:
            raise
        raise DataError(f"{error}; pass --weights MODEL or set ${model_files.WEIGHTS_ENV}") from None
    module, info = model_files.load_model(folder)
    if not info.trained and reporter is not None:
        reporter.warn(f"model '{info.name}' is untrained (random weights): its outputs are for testing only")
    return LoadedModel(module.to(torch_device).eval(), info, torch_device, cast, dtype)


def find_classifier(name_or_path: str | None, label: str) -> Path:
    """The classifier to use: --model, $MXDNA_WEIGHTS when it is a classifier, or a bundled one with `label`."""
    if name_or_path is not None:
        return model_files.resolve_model(name_or_path)
    env = os.environ.get(model_files.WEIGHTS_ENV)
    if env and (Path(env) / model_files.CARD_FILE).is_file():
        if model_files.read_info(env).task == "classification":
            return Path(env)
    for info in model_files.list_bundled():
        if info.task == "classification" and label in info.labels:
            return info.path
    raise DataError(NO_CLASSIFIER)


def load_classifier(
    name_or_path: str | None, *, label: str = PROMOTER_LABEL, device: str = "auto", dtype: str = "float32",
    threads: int | None = None, reporter: Reporter | None = None,
) -> tuple[LoadedModel, int]:
    """A classification model and the index of `label` among its classes."""
    folder = find_classifier(name_or_path, label)
    info = model_files.read_info(folder)
    if info.task != "classification":
        raise UsageError(
            f"model '{info.name}' is a {info.task} model, not a classifier; "
            "pass a classification model with --model (train one with `mxdna finetune`)"
        )
    if label not in info.labels:
        raise UsageError(f"model '{info.name}' has no class '{label}' (its classes: {', '.join(info.labels)}); see --label")
    loaded = load(str(folder), device=device, dtype=dtype, threads=threads, reporter=reporter)
    return loaded, info.labels.index(label)


# ---------------------------------------------------------------------------------------------
# Running the model on batches of windows


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
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        groups: list[list[int]] = []
        current: list[int] = []
        width = 0
        for i in order:
            positions = lengths[i] + 2
            if current and (len(current) + 1) * max(width, positions) > self.batch_tokens:
                groups.append(current)
                current, width = [], 0
            current.append(i)
            width = max(width, positions)
        if current:
            groups.append(current)
        return groups

    def run(self, tasks: Iterable[Any], forward: Callable[[list[np.ndarray]], list[Any]]) -> Iterator[tuple[Any, Any]]:
        """(task, result) for every task (objects with `.ids` and `.progress`), in task order."""
        chunk: list[Any] = []
        tokens = 0
        limit = self.batch_tokens * CHUNK_BATCHES
        for task in tasks:
            chunk.append(task)
            tokens += len(task.ids) + 2
            if tokens >= limit:
                yield from self._run_chunk(chunk, forward)
                chunk, tokens = [], 0
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


# ---------------------------------------------------------------------------------------------
# Windows of a target and their stitching


@dataclass
class WindowTask:
    """One window of one strand ('pass') of one target, in model space."""

    target: Target
    strand: str
    pass_index: int
    window: Window
    window_index: int
    n_windows: int
    ids: np.ndarray

    @property
    def progress(self) -> int:
        return self.window.keep_end - self.window.keep_start

    @property
    def last(self) -> bool:
        return self.window_index == self.n_windows - 1


def window_tasks(targets: Iterable[Target], window: int, stride: int) -> Iterator[WindowTask]:
    for target in targets:
        for pass_index, strand in enumerate(target.strands):
            ids = target.model_ids(strand)
            plan = plan_windows(len(ids), window, stride)
            for index, win in enumerate(plan):
                yield WindowTask(target, strand, pass_index, win, index, len(plan), ids[win.start : win.end])


@dataclass
class Piece:
    """The units (and tokens) one window contributes to its target, in model space."""

    window: Window
    output: WindowOutput
    selected: np.ndarray  # (S,) indices into the window's units
    starts: np.ndarray  # (S,) model-space unit starts, clipped to the window's kept range
    ends: np.ndarray  # (S,)
    clipped: np.ndarray  # (S,) bool
    first_token: int  # rank, within the pass, of this piece's first token

    @property
    def centres(self) -> np.ndarray:
        return self.window.start + self.output.centres[self.selected]

    @property
    def lengths(self) -> np.ndarray:
        return self.output.lengths[self.selected]

    @property
    def experts(self) -> np.ndarray:
        return self.output.experts[self.selected]

    @property
    def gates(self) -> np.ndarray:
        return self.output.gates[self.selected]

    @property
    def states(self) -> np.ndarray | None:
        return None if self.output.states is None else self.output.states[self.selected]

    def __len__(self) -> int:
        return len(self.selected)


class UnitStitcher:
    """Joins the windows of one pass at shared unit boundaries (see the module docstring)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.cut = 0
        self.tokens = 0
        self._pending: tuple[Window, WindowOutput] | None = None

    def add(self, window: Window, output: WindowOutput) -> list[Piece]:
        pieces = []
        if self._pending is not None:
            previous, previous_output = self._pending
            cut = choose_cut(previous, previous_output, window, output, self.cut)
            pieces.append(self._piece(previous, previous_output, self.cut, cut))
            self.cut = cut
        self._pending = (window, output)
        return pieces

    def finish(self) -> list[Piece]:
        if self._pending is None:
            return []
        window, output = self._pending
        self._pending = None
        return [self._piece(window, output, self.cut, self.length)]

    def _piece(self, window: Window, output: WindowOutput, lo: int, hi: int) -> Piece:
        starts = window.start + output.starts
        ends = starts + output.lengths
        selected = np.flatnonzero((starts < hi) & (ends > lo) & (lo < hi))  # lo == hi: nothing kept
        kept_starts = np.maximum(starts[selected], lo)
        kept_ends = np.minimum(ends[selected], hi)
        clipped = (kept_starts != starts[selected]) | (kept_ends != ends[selected])
        piece = Piece(window, output, selected, kept_starts, kept_ends, clipped, self.tokens)
        self.tokens += len(selected)
        return piece


def choose_cut(left: Window, left_out: WindowOutput, right: Window, right_out: WindowOutput, floor: int) -> int:
    """Where to switch from `left`'s units to `right`'s: a boundary both share, nearest the keep boundary."""
    lo, hi = max(right.start, floor), left.end
    aim = min(max(left.keep_end, lo), hi)
    left_bounds = np.append(left.start + left_out.starts, left.end)
    right_bounds = np.append(right.start + right_out.starts, right.end)
    common = np.intersect1d(left_bounds, right_bounds)
    common = common[(common >= lo) & (common <= hi)]
    if common.size == 0:
        return int(aim)
    return int(common[np.argmin(np.abs(common - aim))])  # sorted: ties go to the left


def drive(
    runner: Runner,
    tasks: Iterable[WindowTask],
    on_piece: Callable[[WindowTask, Piece], None],
    on_target: Callable[[Target], None],
) -> None:
    """Run the backbone over window tasks, stitch each pass, call back per piece and per finished target."""
    stitcher: UnitStitcher | None = None
    for task, output in runner.run(tasks, runner.backbone):
        if task.window_index == 0:
            stitcher = UnitStitcher(task.target.length)
        assert stitcher is not None
        for piece in stitcher.add(task.window, output):
            on_piece(task, piece)
        if task.last:
            for piece in stitcher.finish():
                on_piece(task, piece)
            if task.pass_index == len(task.target.strands) - 1:
                on_target(task.target)


# ---------------------------------------------------------------------------------------------
# Shared helpers for the verbs


def run_meta(command: str, loaded: LoadedModel | None, inputs: Inputs | None, **settings: Any) -> dict[str, Any]:
    """Provenance written into every output (header lines or JSON sidecar)."""
    meta: dict[str, Any] = {"tool": f"mxdna_cli {__version__}", "command": command}
    if loaded is not None:
        meta.update(loaded.meta())
    if inputs is not None:
        meta["input"] = inputs.path
        if inputs.spec.regions:
            meta["regions"] = len(inputs.spec.regions)
        if inputs.spec.bed is not None:
            meta["bed"] = inputs.spec.bed
    meta.update({k: v for k, v in settings.items() if v is not None})
    return meta


def check_output(path: str, *, allow_stdout: bool = True, what: str = "output") -> None:
    """Fail before any work when an output cannot be written where asked."""
    if path == STDOUT:
        if not allow_stdout:
            raise UsageError(f"{what} cannot go to stdout ('-'); give a file name")
        return
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a folder; give an output file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{path}: output folder {folder} is not writable")


def resolve_stride(window: int, stride: int | None) -> int:
    if window < 1:
        raise UsageError(f"--window {window}: must be at least 1")
    stride = max(1, (window * 3) // 4) if stride is None else stride
    if not 1 <= stride <= window:
        raise UsageError(f"--stride {stride}: must be between 1 and the window ({window})")
    return stride


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


def _fmt(values: np.ndarray) -> list[str]:
    return [f"{v:.6g}" for v in values.tolist()]


def _index_row(target: Target) -> list[Any]:
    return [target.name, target.chrom, target.start, target.end, target.strand_label,
            target.n_fraction, target.soft_masked_fraction]


def output_format(path: str, fmt: str | None) -> str:
    """npy or tsv, from --format or the file name (`-` = TSV on stdout)."""
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
        if fmt == "npy" and path == STDOUT:
            raise UsageError("NPY output cannot go to stdout ('-'); give a file name ending in .npy")
        if fmt == "npy" and not path.endswith(".npy"):
            raise UsageError(f"{path}: an NPY output name must end with .npy")
        return fmt
    if path == STDOUT:
        return "tsv"
    lower = path.lower()
    if lower.endswith(".npy"):
        return "npy"
    if lower.endswith((".tsv", ".txt", ".tab")):
        return "tsv"
    raise UsageError(f"{path}: cannot tell the format from the name; use .npy or .tsv, or pass --format")


# ---------------------------------------------------------------------------------------------
# embed


@dataclass
class EmbedSettings:
    output: str
    fmt: str | None = None
    pool: str = "mean"
    layer: int | None = None
    dtype_out: str = "float32"
    window: int = DEFAULT_WINDOW
    stride: int | None = None
    batch_tokens: int = DEFAULT_BATCH_TOKENS


class _Pooler:
    """Per-target running mean / max / [CLS] mean over the kept tokens of each pass."""

    def __init__(self, d: int, pool: str, strands: int) -> None:
        self.pool = pool
        self.sum = np.zeros((strands, d), dtype=np.float64)
        self.count = np.zeros(strands, dtype=np.int64)
        self.max = np.full((strands, d), -np.inf, dtype=np.float32)

    def add(self, pass_index: int, piece: Piece) -> None:
        if self.pool == "cls":
            # one [CLS] per window: every window of the pass is one piece
            self.sum[pass_index] += piece.output.cls
            self.count[pass_index] += 1
            return
        states = piece.states
        if len(states) == 0:
            return
        if self.pool == "mean":
            self.sum[pass_index] += states.sum(axis=0, dtype=np.float64)
            self.count[pass_index] += len(states)
        else:
            np.maximum(self.max[pass_index], states.max(axis=0), out=self.max[pass_index])
            self.count[pass_index] += len(states)

    def vector(self) -> np.ndarray:
        if self.pool == "max":
            per_pass = self.max.astype(np.float64)
        else:
            per_pass = self.sum / np.maximum(self.count, 1)[:, None]
        return per_pass.mean(axis=0).astype(np.float32)


def embed(inputs: Inputs, loaded: LoadedModel, settings: EmbedSettings, reporter: Reporter | None = None) -> Summary:
    """Embeddings per target (pooled) or per token (`pool='none'`) to NPY or TSV."""
    reporter = reporter or Reporter()
    s = settings
    if s.pool not in POOLINGS:
        raise UsageError(f"--pool {s.pool}: choose from {', '.join(POOLINGS)}")
    if s.dtype_out not in OUT_DTYPES:
        raise UsageError(f"--dtype-out {s.dtype_out}: choose from {', '.join(OUT_DTYPES)}")
    if s.pool == "none" and inputs.spec.strand == "both":
        raise UsageError("--pool none with --strand both: per-token outputs of the two strands cannot be averaged "
                         "(their tokens differ); run --strand forward and --strand reverse separately")
    fmt = output_format(s.output, s.fmt)
    check_output(s.output)
    stride = resolve_stride(s.window, s.stride)
    layer_index, layer_shown = resolve_layer(s.layer, loaded.num_token_layers)
    meta = run_meta(
        "embed", loaded, inputs, window=s.window, stride=stride, pooling=s.pool, strand=inputs.spec.strand,
        layer=layer_shown, dtype_out=s.dtype_out if fmt == "npy" else None, batch_tokens=s.batch_tokens,
    )
    runner = Runner(loaded, batch_tokens=s.batch_tokens, layer=layer_index, states=True, reporter=reporter)
    summary = Summary(outputs=[s.output])
    if s.pool == "none":
        _embed_tokens(inputs, loaded, runner, s, fmt, stride, meta, summary, reporter)
    else:
        _embed_pooled(inputs, loaded, runner, s, fmt, stride, meta, summary, reporter)
    summary.windows = runner.windows
    return summary


def _embed_pooled(inputs, loaded, runner, s, fmt, stride, meta, summary, reporter) -> None:
    d = loaded.hidden_size
    if fmt == "npy":
        inputs.materialize()
        writer: Any = NpyWriter(s.output, inputs.count, d, s.dtype_out, index_columns=INDEX_COLUMNS, meta=meta)
    else:
        writer = TsvWriter(s.output, INDEX_COLUMNS + tuple(f"e{i}" for i in range(d)), meta)
    poolers: dict[int, _Pooler] = {}

    def on_piece(task: WindowTask, piece: Piece) -> None:
        pooler = poolers.setdefault(task.target.index, _Pooler(d, s.pool, len(task.target.strands)))
        pooler.add(task.pass_index, piece)

    def on_target(target: Target) -> None:
        vector = poolers.pop(target.index).vector()
        if fmt == "npy":
            writer.write_rows(summary.targets, vector)
            writer.write_index_row(_index_row(target))
        else:
            writer.write_row(_index_row(target) + _fmt(vector))
        summary.targets += 1
        summary.nucleotides += target.length

    with writer:
        _timed(summary, reporter, inputs, "embedding",
               lambda: drive(runner, window_tasks(inputs.targets(), s.window, stride), on_piece, on_target))


def _timed(summary: Summary, reporter: Reporter, inputs: Inputs, description: str, work: Callable[[], None]) -> None:
    total = inputs.total_nucleotides
    if total is not None:
        total *= len(strands_for("+", inputs.spec.strand))
    reporter.start(total, description)
    started = time.perf_counter()
    try:
        work()
    finally:
        reporter.stop()
    summary.seconds = time.perf_counter() - started


class _Spill:
    """Rows of unknown count, appended to a temporary file next to the output, then copied into place."""

    def __init__(self, output: str, d: int, dtype: str) -> None:
        folder = os.path.dirname(os.path.abspath(output))
        base = os.path.basename(output)
        fd, self.matrix_path = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".rows.tmp")
        self._matrix = os.fdopen(fd, "wb")
        fd, self.index_path = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".index.tmp")
        self._index = os.fdopen(fd, "w", encoding="utf-8")
        self.d = d
        self.dtype = np.dtype(dtype)
        self.rows = 0

    def write(self, states: np.ndarray, index_rows: Iterable[Sequence[Any]]) -> None:
        self._matrix.write(np.ascontiguousarray(states, dtype=self.dtype).tobytes())
        self._index.writelines("\t".join(str(v) for v in row) + "\n" for row in index_rows)
        self.rows += len(states)

    def finish(self) -> tuple[np.ndarray, Iterator[list[str]]]:
        self._matrix.close()
        self._index.close()
        if self.rows == 0:
            matrix = np.zeros((0, self.d), dtype=self.dtype)
        else:
            matrix = np.memmap(self.matrix_path, dtype=self.dtype, mode="r", shape=(self.rows, self.d))

        def index_rows() -> Iterator[list[str]]:
            with open(self.index_path, encoding="utf-8") as handle:
                for line in handle:
                    yield line.rstrip("\n").split("\t")

        return matrix, index_rows()

    def remove(self) -> None:
        for handle in (self._matrix, self._index):
            with contextlib.suppress(Exception):
                handle.close()
        for path in (self.matrix_path, self.index_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _token_rows(task: WindowTask, piece: Piece) -> list[list[Any]]:
    target, strand = task.target, task.strand
    centres = target.centre_to_genome(strand, piece.centres)
    starts, ends = target.to_genome(strand, piece.starts, piece.ends)
    return [
        [target.name, target.chrom, int(c), int(a), int(b), strand]
        for c, a, b in zip(centres.tolist(), starts.tolist(), ends.tolist())
    ]


def _embed_tokens(inputs, loaded, runner, s, fmt, stride, meta, summary, reporter) -> None:
    d = loaded.hidden_size
    tasks = lambda: window_tasks(inputs.targets(), s.window, stride)  # noqa: E731
    if fmt == "tsv":
        writer = TsvWriter(s.output, TOKEN_COLUMNS + tuple(f"e{i}" for i in range(d)), meta)

        def on_piece(task: WindowTask, piece: Piece) -> None:
            for row, state in zip(_token_rows(task, piece), piece.states):
                writer.write_row(row + _fmt(state))

        def on_target(target: Target) -> None:
            summary.targets += 1
            summary.nucleotides += target.length

        with writer:
            _timed(summary, reporter, inputs, "embedding", lambda: drive(runner, tasks(), on_piece, on_target))
        return

    # NPY: the number of tokens is known only after the model ran; rows wait in a spill file
    if not s.output.endswith(".npy"):
        raise UsageError(f"{s.output}: an NPY output name must end with .npy")
    records_path = s.output[: -len(".npy")] + ".records.tsv"
    spill = _Spill(s.output, d, s.dtype_out)
    records: list[list[Any]] = []
    counts: dict[int, int] = {}

    def on_piece_npy(task: WindowTask, piece: Piece) -> None:
        spill.write(piece.states, _token_rows(task, piece))
        counts[task.target.index] = counts.get(task.target.index, 0) + len(piece)

    def on_target_npy(target: Target) -> None:
        n = counts.pop(target.index, 0)
        records.append(_index_row(target) + [spill.rows - n, n])
        summary.targets += 1
        summary.nucleotides += target.length

    try:
        _timed(summary, reporter, inputs, "embedding", lambda: drive(runner, tasks(), on_piece_npy, on_target_npy))
        matrix, index_rows = spill.finish()
        meta = {**meta, "records": os.path.basename(records_path)}
        with contextlib.ExitStack() as stack:
            # entered first, committed last: the records table never describes a missing matrix
            record_writer = stack.enter_context(TsvWriter(records_path, RECORD_COLUMNS, meta))
            npy = stack.enter_context(
                NpyWriter(s.output, spill.rows, d, s.dtype_out, index_columns=TOKEN_COLUMNS, meta=meta)
            )
            step = 65536
            for offset in range(0, spill.rows, step):
                npy.write_rows(offset, np.asarray(matrix[offset : offset + step]))
            for row in index_rows:
                npy.write_index_row(row)
            record_writer.write_rows(records)
        del matrix
    finally:
        spill.remove()
    summary.outputs.append(records_path)


# ---------------------------------------------------------------------------------------------
# tokenize


@dataclass
class TokenizeSettings:
    units: str | None = "-"
    tokens: str | None = None
    summary: str | None = None
    plot: str | None = None
    min_weight: float = DEFAULT_MIN_WEIGHT
    window: int = DEFAULT_WINDOW
    stride: int | None = None
    batch_tokens: int = DEFAULT_BATCH_TOKENS


def unit_name(length: int, expert: int, clipped: bool) -> str:
    return f"{length}nt_e{expert}" + ("_clip" if clipped else "")


def gate_score(gate: float) -> int:
    """BED scores are integers 0..1000: the gate probability x 1000, rounded."""
    return int(min(1000, max(0, round(gate * 1000))))


def token_footprints(piece: Piece, min_weight: float) -> list[tuple[list[tuple[int, int]], float]]:
    """For each token of a piece: its units' model-space spans (merged) and its largest sampling weight.

    A token's footprint is its own unit (its residual path) plus every unit of its window whose
    centre gets an effective weight (modulation x linear-interpolation weight) above `min_weight`
    from one of the token's deformable sampling positions.
    """
    out = piece.output
    window = piece.window
    n_bases = window.end - window.start
    centre_to_unit = np.full(n_bases, -1, dtype=np.int64)
    centre_to_unit[out.centres] = np.arange(len(out.starts))
    samples = out.sample_positions[piece.selected]  # (S, f)
    modulation = out.modulation[piece.selected]
    low = np.floor(samples)
    frac = samples - low
    low = low.astype(np.int64)
    positions = np.stack([low, low + 1], axis=-1)  # (S, f, 2)
    weights = np.stack([1 - frac, frac], axis=-1) * modulation[..., None]
    inside = (positions >= 0) & (positions < n_bases)
    units = np.where(inside, centre_to_unit[np.clip(positions, 0, n_bases - 1)], -1)
    hits = units >= 0
    starts = window.start + out.starts
    ends = starts + out.lengths
    result = []
    for row, own in enumerate(piece.selected.tolist()):
        row_units = units[row][hits[row]]
        row_weights = weights[row][hits[row]]
        chosen = {own} | set(row_units[row_weights > min_weight].tolist())
        score = float(row_weights.max()) if row_weights.size else 0.0
        blocks: list[tuple[int, int]] = []
        for unit in sorted(chosen):
            a, b = int(starts[unit]), int(ends[unit])
            if blocks and blocks[-1][1] == a:
                blocks[-1] = (blocks[-1][0], b)  # touching units make one block
            else:
                blocks.append((a, b))
        result.append((blocks, score))
    return result


def _genome_blocks(target: Target, strand: str, blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Model-space blocks (sorted) as sorted forward genome blocks (plain ints: this runs per token)."""
    if strand == "+":
        return [(target.start + a, target.start + b) for a, b in blocks]
    return [(target.end - b, target.end - a) for a, b in reversed(blocks)]


def tokenize(inputs: Inputs, loaded: LoadedModel, settings: TokenizeSettings, reporter: Reporter | None = None) -> Summary:
    """Basic units as BED6, assembled tokens as BED12, a unit-length summary and histogram."""
    reporter = reporter or Reporter()
    s = settings
    if inputs.spec.strand == "both":
        raise UsageError("tokenize --strand both: the two strands give different units; "
                         "run --strand forward and --strand reverse separately")
    if s.units is None and s.tokens is None and s.summary is None and s.plot is None:
        raise UsageError("nothing to write: give --export-bed, --tokens, --summary or --plot")
    outputs = [p for p in (s.units, s.tokens, s.summary, s.plot) if p is not None]
    if outputs.count(STDOUT) > 1:
        raise UsageError("only one output can go to stdout ('-')")
    if s.plot == STDOUT:
        raise UsageError("--plot: a PNG cannot go to stdout ('-'); give a file name")
    if not 0 <= s.min_weight < 2:
        raise UsageError(f"--min-weight {s.min_weight}: must be in [0, 2) (modulation x interpolation weight)")
    for path in outputs:
        check_output(path)
    stride = resolve_stride(s.window, s.stride)
    meta = run_meta("tokenize", loaded, inputs, window=s.window, stride=stride, strand=inputs.spec.strand,
                    batch_tokens=s.batch_tokens)
    unit_meta = {**meta, "name": "<unit length>nt_e<expert> (_clip: clipped at a window seam)",
                 "score": "round(1000 x gate probability)"}
    token_meta = {**meta, "min_weight": s.min_weight, "name": "token index within its record",
                  "score": "min(1000, round(1000 x largest sampling weight))"}
    runner = Runner(loaded, batch_tokens=s.batch_tokens, sampling=s.tokens is not None, reporter=reporter)
    counts = np.zeros(max(loaded.kernel_sizes) + 1, dtype=np.int64)
    summary = Summary(outputs=outputs)

    with contextlib.ExitStack() as stack:
        unit_writer = stack.enter_context(Bed6Writer(s.units, unit_meta)) if s.units is not None else None
        token_writer = stack.enter_context(Bed12Writer(s.tokens, token_meta)) if s.tokens is not None else None
        held: list[Callable[[], None]] = []  # '-' strand lines, written in genome order at the end

        def on_piece(task: WindowTask, piece: Piece) -> None:
            target, strand = task.target, task.strand
            np.add.at(counts, piece.lengths, 1)
            lines: list[Callable[[], None]] = []
            if unit_writer is not None:
                starts, ends = target.to_genome(strand, piece.starts, piece.ends)
                rows = list(zip(starts.tolist(), ends.tolist(), piece.lengths.tolist(), piece.experts.tolist(),
                                piece.clipped.tolist(), piece.gates.tolist()))
                if strand == "-":
                    rows.reverse()
                lines.append(lambda rows=rows: [
                    unit_writer.write(target.chrom, a, b, unit_name(k, e, c), gate_score(g), strand)
                    for a, b, k, e, c, g in rows
                ])
            if token_writer is not None:
                footprints = token_footprints(piece, s.min_weight)
                items = []
                for rank, (blocks, score) in enumerate(footprints):
                    gblocks = _genome_blocks(target, strand, blocks)
                    items.append((gblocks, piece.first_token + rank, score))
                if strand == "-":
                    items.reverse()
                lines.append(lambda items=items: [
                    token_writer.write(target.chrom, blocks[0][0], blocks[-1][1], blocks, name=str(index),
                                       score=int(min(1000, round(1000 * score))), strand=strand)
                    for blocks, index, score in items
                ])
            if strand == "-":
                # the pieces of a '-' pass come right to left in the genome: write them reversed
                held.append(lambda lines=lines: [write() for write in lines])
            else:
                for write in lines:
                    write()

        def on_target(target: Target) -> None:
            for write in reversed(held):
                write()
            held.clear()
            summary.targets += 1
            summary.nucleotides += target.length

        _timed(summary, reporter, inputs, "tokenizing",
               lambda: drive(runner, window_tasks(inputs.targets(), s.window, stride), on_piece, on_target))
        lengths = np.arange(len(counts))
        total = int(counts.sum())
        summary.extra["length_counts"] = {int(k): int(counts[k]) for k in lengths if counts[k]}
        summary.extra["units"] = total
        summary.extra["mean_length"] = float((counts * lengths).sum() / total) if total else float("nan")
        if s.summary is not None:
            with TsvWriter(s.summary, ("length", "count", "fraction"), {**meta, "mean_length": round(summary.extra["mean_length"], 4), "units": total}) as table:
                for k in range(1, len(counts)):
                    table.write_row([k, int(counts[k]), round(counts[k] / total, 6) if total else 0.0])
        if s.plot is not None:
            plot_lengths(counts, s.plot, title=f"{loaded.name}: {total:,} basic units, mean {summary.extra['mean_length']:.2f} nt")
    summary.windows = runner.windows
    return summary


def plot_lengths(counts: np.ndarray, path: str, title: str) -> None:
    """A bar chart of basic units per length, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = np.arange(1, len(counts))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(lengths, counts[1:], color="#3b6ea5")
    ax.set_xticks(lengths)
    ax.set_xlabel("basic unit length (nt)")
    ax.set_ylabel("units")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        with atomic_output(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# predict


@dataclass
class PredictSettings:
    output: str = "-"
    track: str | None = None
    window: int | None = None
    step: int = DEFAULT_TRACK_STEP
    label: str = PROMOTER_LABEL
    batch_tokens: int = DEFAULT_BATCH_TOKENS


@dataclass
class _WholeTask:
    target: Target
    strand: str
    ids: np.ndarray

    @property
    def progress(self) -> int:
        return len(self.ids)


@dataclass
class _TrackTask:
    target: Target
    strand: str
    offset: int  # window start within the target (forward coordinates)
    ids: np.ndarray
    step: int

    @property
    def progress(self) -> int:
        return self.step


def classifier_window(loaded: LoadedModel, window: int | None) -> int:
    if window is not None:
        if window < 1:
            raise UsageError(f"--window {window}: must be at least 1")
        return window
    value = loaded.info.extra.get("window", DEFAULT_TRACK_WINDOW)
    try:
        return int(value)
    except (TypeError, ValueError):
        return DEFAULT_TRACK_WINDOW


def predict(inputs: Inputs, loaded: LoadedModel, label_index: int, settings: PredictSettings,
            reporter: Reporter | None = None) -> Summary:
    """Promoter (or any class) probability per record/region (TSV), or along the genome (bigWig)."""
    reporter = reporter or Reporter()
    s = settings
    window = classifier_window(loaded, s.window)
    labels = loaded.info.labels
    if s.track is not None:
        return _predict_track(inputs, loaded, label_index, s, window, reporter)
    check_output(s.output)
    meta = run_meta("predict", loaded, inputs, label=s.label, strand=inputs.spec.strand,
                    classifier_window=window, batch_tokens=s.batch_tokens)
    runner = Runner(loaded, batch_tokens=s.batch_tokens, reporter=reporter)
    limit = MAX_WHOLE_LENGTH_FACTOR * window
    warned = []

    def check_length(target: Target) -> None:
        if target.length > limit:
            raise UsageError(
                f"{target.name}: {target.length:,} nt is too long to classify whole (the classifier was "
                f"trained on {window} nt); scan it with --track out.bw, or pick --region/--bed"
            )

    if inputs.known:  # refuse before writing anything
        for target in inputs.plan():
            check_length(target)

    def tasks() -> Iterator[_WholeTask]:
        for target in inputs.targets():
            check_length(target)
            if target.length > 2 * window and not warned:
                warned.append(True)
                reporter.warn(f"{target.name}: {target.length:,} nt is classified whole, but the classifier "
                              f"was trained on {window} nt windows (--track scans in windows)")
            for strand in target.strands:
                yield _WholeTask(target, strand, target.model_ids(strand))

    summary = Summary(outputs=[s.output])
    with TsvWriter(s.output, PREDICT_COLUMNS, meta) as writer:
        pending: list[np.ndarray] = []

        def work() -> None:
            for task, probs in runner.run(tasks(), runner.classify):
                pending.append(probs)
                target = task.target
                if len(pending) == len(target.strands):
                    mean = np.mean(pending, axis=0)
                    pending.clear()
                    writer.write_row([target.name, target.chrom, target.start, target.end, target.strand_label,
                                      f"{float(mean[label_index]):.6g}", labels[int(np.argmax(mean))]])
                    summary.targets += 1
                    summary.nucleotides += target.length

        _timed(summary, reporter, inputs, "classifying", work)
    summary.windows = runner.windows
    return summary


def _predict_track(inputs: Inputs, loaded: LoadedModel, label_index: int, s: PredictSettings, window: int,
                   reporter: Reporter) -> Summary:
    if s.track == STDOUT:
        raise UsageError("bigWig output cannot go to stdout ('-'); give a file name ending in .bw")
    check_output(s.track, allow_stdout=False, what="bigWig")
    if not 1 <= s.step <= window:
        raise UsageError(f"--step {s.step}: must be between 1 and the window ({window})")
    inputs.materialize()
    order_rank = inputs.contig_order()
    plan = sorted(inputs.plan(), key=lambda t: (order_rank[t.chrom], t.start, t.end))
    for before, after in zip(plan, plan[1:]):
        if before.chrom == after.chrom and after.start < before.end:
            raise UsageError(f"--track needs regions that do not overlap: {before.name} and {after.name} overlap")
    offset = (window - s.step) // 2  # a window's value covers its central `step` bases
    meta = run_meta("predict", loaded, inputs, label=s.label, strand=inputs.spec.strand, window=window,
                    step=s.step, value_span=f"central {s.step} nt of each {window} nt window (offset {offset})",
                    batch_tokens=s.batch_tokens)
    runner = Runner(loaded, batch_tokens=s.batch_tokens, reporter=reporter)
    short = []

    def tasks() -> Iterator[_TrackTask]:
        for target in inputs.targets(plan):
            if target.length < window:
                short.append(target.name)
                continue
            ids = dna.encode(target.sequence, record=target.name)
            target.sequence = None  # the track needs only the ids: do not keep every record's text
            for start in range(0, target.length - window + 1, s.step):
                for strand in target.strands:
                    piece = ids[start : start + window]
                    if strand == "-":
                        piece = np.ascontiguousarray(dna.reverse_complement_ids(piece))
                    yield _TrackTask(target, strand, start, piece, s.step)

    summary = Summary(outputs=[s.track, s.track + ".json"])
    with BigWigWriter(s.track, inputs.chrom_sizes(), meta) as writer:
        values: list[float] = []
        pending: list[float] = []
        state: dict[str, Any] = {"target": None}

        def flush() -> None:
            target = state["target"]
            if target is not None and values:
                writer.add(target.chrom, target.start + offset, np.asarray(values), span=s.step)
                summary.targets += 1
                summary.nucleotides += target.length
            values.clear()

        def work() -> None:
            for task, probs in runner.run(tasks(), runner.classify):
                if task.target is not state["target"]:
                    flush()
                    state["target"] = task.target
                pending.append(float(probs[label_index]))
                if len(pending) == len(task.target.strands):
                    values.append(float(np.mean(pending)))
                    pending.clear()
            flush()

        total = sum(max(0, t.length - window) // s.step + 1 for t in plan if t.length >= window) * s.step
        reporter.start(total * len(strands_for("+", inputs.spec.strand)), "scanning")
        started = time.perf_counter()
        try:
            work()
        finally:
            reporter.stop()
        summary.seconds = time.perf_counter() - started
    if short:
        reporter.warn(f"{len(short)} record(s)/region(s) shorter than the {window} nt window have no values "
                      f"(first: {short[0]})")
    summary.windows = runner.windows
    return summary


# ---------------------------------------------------------------------------------------------
# windows (the plan, without the model)


def window_plan(inputs: Inputs, output: str, *, window: int = DEFAULT_WINDOW, stride: int | None = None,
                batch_tokens: int = DEFAULT_BATCH_TOKENS) -> Summary:
    """Write every window (genome coordinates) and return the plan's size; the model is not run."""
    stride = resolve_stride(window, stride)
    if batch_tokens < 1:
        raise UsageError(f"--batch-tokens {batch_tokens}: must be at least 1")
    check_output(output)
    meta = run_meta("windows", None, inputs, window=window, stride=stride, strand=inputs.spec.strand,
                    batch_tokens=batch_tokens)
    summary = Summary(outputs=[output])
    lengths: list[int] = []
    with TsvWriter(output, WINDOW_COLUMNS, meta) as writer:
        source = inputs.plan() if inputs.known else inputs.targets()
        for target in source:
            for strand in target.strands:
                for win in plan_windows(target.length, window, stride):
                    a, b = target.to_genome(strand, np.array(win.start), np.array(win.end))
                    ka, kb = target.to_genome(strand, np.array(win.keep_start), np.array(win.keep_end))
                    writer.write_row([target.name, target.chrom, strand, int(a), int(b), int(ka), int(kb)])
                    lengths.append(win.end - win.start)
            summary.targets += 1
            summary.nucleotides += target.length
    summary.windows = len(lengths)
    summary.extra["positions"] = int(sum(n + 2 for n in lengths))
    summary.extra["batches"] = _count_batches(lengths, batch_tokens)
    return summary


def _count_batches(lengths: list[int], batch_tokens: int) -> int:
    batches, current, width = 0, 0, 0
    for n in sorted(lengths, reverse=True):
        positions = n + 2
        if current and (current + 1) * max(width, positions) > batch_tokens:
            batches += 1
            current, width = 0, 0
        current += 1
        width = max(width, positions)
    return batches + (1 if current else 0)


# ---------------------------------------------------------------------------------------------
# info


def parameter_count(info: model_files.ModelInfo) -> int:
    """Parameters in a saved model, from the safetensors header only (no tensor is read)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(info.path / model_files.TENSOR_FILE), framework="pt") as handle:
        for key in handle.keys():
            total += math.prod(handle.get_slice(key).get_shape())
    return total


def describe_models(verify: bool = False) -> list[dict[str, Any]]:
    rows = []
    for info in model_files.list_bundled():
        c = info.config
        row = {
            "name": info.name,
            "task": info.task,
            "preset": c.name,
            "config": f"d={c.hidden_size} heads={c.num_heads} layers={c.num_nucleotide_layers}+{c.num_token_layers} "
                      f"experts={c.num_experts}",
            "parameters": parameter_count(info),
            "sha256": info.sha256,
            "trained": info.trained,
            "labels": info.labels,
            "path": str(info.path),
        }
        if verify:
            row["sha256_ok"] = model_files.sha256_of(info.path / model_files.TENSOR_FILE) == info.sha256
        rows.append(row)
    return rows


def environment() -> dict[str, Any]:
    import numpy
    import pysam
    import typer

    versions = {"mxdna_cli": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": numpy.__version__, "pysam": pysam.__version__, "typer": typer.__version__}
    try:
        import pyBigWig

        versions["pyBigWig"] = getattr(pyBigWig, "__version__", "installed")
    except ImportError:  # pragma: no cover - a dependency
        versions["pyBigWig"] = "missing"
    cuda = []
    if torch.cuda.is_available():
        cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "cpu_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "cuda": cuda,
        "default_device": "cuda" if cuda else "cpu",
        "weights_dirs": [str(p) for p in model_files.weights_dirs()],
        "versions": versions,
        "platform": f"{platform.system()} {platform.machine()}",
    }


# ---------------------------------------------------------------------------------------------
# evaluate (masked-nucleotide accuracy of any model on any FASTA)


@dataclass
class EvaluateSettings:
    window: int = 510
    max_windows: int = 256
    seed: int = 1234
    mask_prob: float = 0.15
    batch_size: int = 16


def evaluate(paths: Sequence[str], loaded: LoadedModel, settings: EvaluateSettings) -> dict[str, Any]:
    """Seeded masked-nucleotide loss and accuracy on fixed windows of the FASTA files."""
    from mxdna_cli.train.data import find_fasta_files, fixed_validation_windows, load_genomes
    from mxdna_cli.train.pretrain import evaluate_masked_lm

    s = settings
    if loaded.info.task != "masked_lm":
        raise UsageError(f"model '{loaded.name}' is a {loaded.info.task} model; evaluate needs a masked-LM model")
    if s.window < 1 or s.max_windows < 1 or s.batch_size < 1:
        raise UsageError("--window, --max-windows and --batch-size must be at least 1")
    if not 0 < s.mask_prob < 1:
        raise UsageError(f"--mask-prob {s.mask_prob}: must be between 0 and 1")
    files = find_fasta_files(list(paths))
    windows = fixed_validation_windows(load_genomes(files), s.window)
    if len(windows) == 0:
        raise DataError(f"no {s.window} nt window with few enough N in {', '.join(map(str, paths))} "
                        "(records shorter than --window are skipped)")
    if len(windows) > s.max_windows:
        pick = np.linspace(0, len(windows) - 1, s.max_windows).round().astype(int)
        windows = windows[pick]
    started = time.perf_counter()
    result = evaluate_masked_lm(loaded.module, windows, seed=s.seed, mask_prob=s.mask_prob,
                                batch_size=s.batch_size, device=loaded.device, autocast_dtype=loaded.autocast)
    seconds = time.perf_counter() - started
    return {"model": loaded.name, "model_sha256": loaded.info.sha256, "input": ",".join(map(str, paths)),
            "window": s.window, "windows": int(len(windows)), "masked": result["masked"],
            "loss": round(result["loss"], 6), "accuracy": round(result["accuracy"], 6), "seed": s.seed,
            "seconds": round(seconds, 2)}

