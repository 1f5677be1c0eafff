"""The library face: `mxdna_cli.load()` gives a `Model` whose methods take sequences (strings) and
return numpy arrays, through the same pipeline as the command line (windows, token-budget
batches, stitching).

    import mxdna_cli as mx
    model = mx.load()                            # the bundled backbone (or a name, or a folder)
    vectors = model.embed(["ACGT...", "GGC..."])  # (2, hidden) float32
    units = model.tokenize("ACGT...").units      # start, end, length, expert, gate per basic unit
    clf = mx.load("promoter-human")
    p = clf.predict_proba(["TATAAA..."])          # (1, classes), columns in clf.labels

Under torchrun every rank must call the same methods with the same sequences; rank 0 gets the
results, the other ranks None.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mxdna_cli.defaults import DEFAULT_BATCH_TOKENS, DEFAULT_MIN_WEIGHT, POOLINGS
from mxdna_cli.engine.embedding import Pooler
from mxdna_cli.engine.forward import backbone, classify, resolve_layer
from mxdna_cli.engine.inputs import Inputs, Target
from mxdna_cli.engine.pipeline import Pipeline, WindowTask, window_tasks
from mxdna_cli.engine.prediction import card_strand
from mxdna_cli.engine.stitch import Piece
from mxdna_cli.engine.tokenization import token_footprints
from mxdna_cli.errors import UsageError
from mxdna_cli.runtime import LoadedModel
from mxdna_cli.runtime import load as load_model
from mxdna_cli.windows import DEFAULT_WINDOW, Tiling, Whole, resolve_stride

UNIT_DTYPE = np.dtype([("start", "<i8"), ("end", "<i8"), ("length", "<i8"), ("expert", "<i8"),
                       ("gate", "<f4"), ("clipped", "?")])


@dataclass
class Tokenization:
    """The learnt tokenization of one sequence (forward strand, offsets into the input string).

    `units`: one row per basic unit, in order, tiling the sequence (a structured array with start,
    end, length, expert, gate, clipped; `clipped` marks a unit cut at a window seam). `tokens`: per
    token (one per unit), the sorted, merged [start, end) blocks its deformable sampling reads.
    """

    units: np.ndarray
    tokens: list[list[tuple[int, int]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.units)

    def pieces(self, sequence: str) -> list[str]:
        """The text of each basic unit."""
        return [sequence[a:b] for a, b in zip(self.units["start"].tolist(), self.units["end"].tolist())]


def _as_list(sequences: str | Sequence[str]) -> tuple[list[str], bool]:
    if isinstance(sequences, str):
        return [sequences], True
    return list(sequences), False


class Model:
    """A loaded MxDNA model (backbone or classifier) that takes sequences and returns arrays."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded

    def __repr__(self) -> str:
        return f"Model({self.name!r}, task={self.task!r}, device={str(self.loaded.device)!r})"

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def task(self) -> str:
        return self.loaded.info.task

    @property
    def labels(self) -> list[str]:
        """A classifier's classes, in the column order of `predict_proba`."""
        return list(self.loaded.info.labels)

    @property
    def hidden_size(self) -> int:
        return self.loaded.hidden_size

    def _pipeline(self, batch_tokens: int) -> Pipeline:
        return Pipeline(self.loaded, batch_tokens=batch_tokens)

    def embed(self, sequences: str | Sequence[str], pool: str = "mean", *, layer: int | None = None,
              strand: str = "forward", window: int = DEFAULT_WINDOW, stride: int | None = None,
              batch_tokens: int = DEFAULT_BATCH_TOKENS) -> np.ndarray | list[np.ndarray] | None:
        """Pooled token states, (n, hidden) float32 (`pool` mean, max or cls); with `pool='none'`
        a list of (tokens, hidden) arrays, one per sequence. As `mxdna embed`."""
        if pool not in POOLINGS:
            raise UsageError(f"pool={pool!r}: choose from {', '.join(POOLINGS)}")
        if pool == "none" and strand == "both":
            raise UsageError("pool='none' with strand='both': the two strands' tokens differ")
        texts, single = _as_list(sequences)
        inputs = Inputs.from_sequences(texts, strand=strand)
        layer_index, _ = resolve_layer(layer, self.loaded.num_token_layers)
        pipeline = self._pipeline(batch_tokens)
        forward = functools.partial(backbone, self.loaded, layer=layer_index, states=True)
        tasks = window_tasks(inputs.targets(), Tiling(window, resolve_stride(window, stride)))
        rows: list[np.ndarray | None] = [None] * len(texts)
        poolers: dict[int, Pooler] = {}
        tokens: dict[int, list[np.ndarray]] = {}

        def on_piece(task: WindowTask, piece: Piece) -> None:
            if pool == "none":
                tokens.setdefault(task.target.index, []).append(piece.states)
                return
            pooler = poolers.setdefault(task.target.index, Pooler(self.hidden_size, pool, len(task.target.strands)))
            pooler.add(task.pass_index, piece)

        def on_target(target: Target) -> None:
            if pool == "none":
                parts = tokens.pop(target.index, [])
                rows[target.index] = (np.concatenate(parts) if parts else np.zeros((0, self.hidden_size), np.float32))
            else:
                rows[target.index] = poolers.pop(target.index).vector()

        pipeline.stitched(tasks, forward, on_piece, on_target)
        if not pipeline.writes:
            return None
        if pool == "none":
            return rows[0] if single else rows
        matrix = np.stack(rows)
        return matrix

    def tokenize(self, sequences: str | Sequence[str], *, min_weight: float = DEFAULT_MIN_WEIGHT,
                 window: int = DEFAULT_WINDOW, stride: int | None = None,
                 batch_tokens: int = DEFAULT_BATCH_TOKENS) -> Tokenization | list[Tokenization] | None:
        """The basic units and assembled tokens of each sequence (a list for a list). As `mxdna tokenize`."""
        texts, single = _as_list(sequences)
        inputs = Inputs.from_sequences(texts)
        pipeline = self._pipeline(batch_tokens)
        forward = functools.partial(backbone, self.loaded, sampling=True)
        tasks = window_tasks(inputs.targets(), Tiling(window, resolve_stride(window, stride)))
        units: dict[int, list[np.ndarray]] = {}
        footprints: dict[int, list] = {}
        results: list[Tokenization | None] = [None] * len(texts)

        def on_piece(task: WindowTask, piece: Piece) -> None:
            part = np.zeros(len(piece), dtype=UNIT_DTYPE)
            part["start"], part["end"] = piece.starts, piece.ends
            part["length"], part["expert"] = piece.lengths, piece.experts
            part["gate"], part["clipped"] = piece.gates, piece.clipped
            units.setdefault(task.target.index, []).append(part)
            footprints.setdefault(task.target.index, []).extend(
                blocks for blocks, _ in token_footprints(piece, min_weight))

        def on_target(target: Target) -> None:
            parts = units.pop(target.index, [])
            results[target.index] = Tokenization(np.concatenate(parts) if parts else np.zeros(0, UNIT_DTYPE),
                                                 footprints.pop(target.index, []))

        pipeline.stitched(tasks, forward, on_piece, on_target)
        if not pipeline.writes:
            return None
        return results[0] if single else results

    def predict_proba(self, sequences: str | Sequence[str], *, strand: str | None = None,
                      batch_tokens: int = DEFAULT_BATCH_TOKENS) -> np.ndarray | None:
        """A classifier's class probabilities, (n, classes) float32, each sequence read whole (the
        strands averaged with strand='both'; by default the strand its model card's metrics were
        scored on). As `mxdna predict promoter` per record."""
        if self.task != "classification":
            raise UsageError(f"model '{self.name}' is a {self.task} model, not a classifier; load one "
                             "(e.g. mx.load('promoter-human'))")
        texts, _ = _as_list(sequences)
        inputs = Inputs.from_sequences(texts, strand=strand or card_strand(self.loaded))
        pipeline = self._pipeline(batch_tokens)
        sums = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for task, probs in pipeline.run(window_tasks(inputs.targets(), Whole()), functools.partial(classify, self.loaded)):
            sums[task.target.index] += probs
        if not pipeline.writes:
            return None
        return (sums / inputs.passes).astype(np.float32)


    # -- variant effects (mxdna_cli.engine.variants and .ism; the CLI's score-variants and ism)

    def _label_index(self, label: str) -> int:
        from mxdna_cli.runtime import scored_class

        scored = scored_class(self.labels, label)
        if scored is None:
            raise UsageError(f"model '{self.name}' has no class '{label}' (its classes: {', '.join(self.labels)})")
        return self.labels.index(scored)

    def score_variants(self, variants, genome, *, classifier: "Model | None" = None,
                       scores: Sequence[str] | None = None, strand: str = "forward", window: int | None = None,
                       classifier_window: int | None = None, label: str = "promoter", regions: Sequence[str] = (),
                       strict: bool = False, skip_unknown_contigs: bool = False,
                       batch_tokens: int = DEFAULT_BATCH_TOKENS) -> np.ndarray | None:
        """Variant effect scores, one row per ALT allele, as `mxdna score-variants` computes them.

        `variants`: a VCF/BCF path, or (chrom, pos, ref, alt) tuples with 1-based `pos` (alt may be a
        comma-separated list). `genome`: an indexed FASTA path, or a {name: sequence} mapping. A
        masked-LM model gives llr and emb; a classifier (this model, or `classifier=`) gives dprob.
        Returns a structured array (chrom, pos, id, ref, alt, filter, llr, emb, dprob; NaN where not
        scored or not asked).
        """
        from mxdna_cli.engine.alleles import Genome, VariantRecord, VariantSettings, vcf_records
        from mxdna_cli.engine.variants import score_records

        lm = self.loaded if self.task == "masked_lm" else None
        clf_model = classifier if classifier is not None else (self if self.task == "classification" else None)
        clf = clf_model.loaded if clf_model is not None else None
        if scores is None:
            scores = (("llr", "emb") if lm is not None else ()) + (("dprob",) if clf is not None else ())
        settings = VariantSettings(
            scores=tuple(scores), strand=strand, window=window, classifier_window=classifier_window, label=label,
            label_index=clf_model._label_index(label) if clf_model is not None else 1, regions=list(regions),
            strict=strict, skip_unknown_contigs=skip_unknown_contigs)
        if isinstance(variants, (str, os.PathLike)):
            records, source = vcf_records(str(variants)), str(variants)
        else:
            records = (VariantRecord(n, str(c), int(p), None, str(r), tuple(str(a).split(",")))
                       for n, (c, p, r, a) in enumerate(variants, start=1))
            source = "variants"
        opened = (Genome.open(str(genome)) if isinstance(genome, (str, os.PathLike))
                  else Genome.from_sequences(genome))
        with opened:
            return score_records(records, opened, lm, clf, settings, source, batch_tokens)

    def ism(self, sequence: str, *, strand: str = "forward", window: int | None = None, label: str = "promoter",
            batch_tokens: int = DEFAULT_BATCH_TOKENS):
        """In-silico saturation mutagenesis of one sequence (`IsmResult`: `delta` (L, 4) over A C G T,
        `max_abs`, `mean`). A classifier scores each mutant sequence whole (probability change); a
        masked LM masks each base in a window centred on it (log P(alt) - log P(ref)). As `mxdna ism`."""
        from mxdna_cli.engine.alleles import Genome
        from mxdna_cli.engine.ism import ism
        from mxdna_cli.io.fasta import Region

        if not isinstance(sequence, str) or not sequence:
            raise UsageError("ism needs one non-empty sequence string")
        genome = Genome.from_sequences({"sequence": sequence})
        is_clf = self.task == "classification"
        return ism(genome, Region("sequence", 0, len(sequence)), None if is_clf else self.loaded,
                   self.loaded if is_clf else None, strand=strand, window=window,
                   label_index=self._label_index(label) if is_clf else 1, batch_tokens=batch_tokens)


def load(name_or_path: str | None = None, *, device: str = "auto", dtype: str = "float32",
         threads: int | None = None, compile: bool = False) -> Model:
    """A model by bundled name (`mxdna info` lists them), folder path, $MXDNA_WEIGHTS, or the default
    backbone; on `device` ('auto', 'cpu', 'cuda', 'cuda:N') in `dtype` ('float32', 'bfloat16', ...);
    `compile=True` runs its dense layers through torch.compile (the CLI's --compile)."""
    return Model(load_model(name_or_path, device=device, dtype=dtype, threads=threads, compile=compile))
