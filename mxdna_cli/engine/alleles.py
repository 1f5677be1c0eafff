"""Variant alleles and the windows that score them: the genome a VCF refers to, VCF records checked
against it (REF, contig, allele kinds), the ALT alleles to score, their masked-LM and classifier
window tasks, and how the model's outputs add up to each allele's scores.


Scores of one ALT allele (docs/variants.md has the definitions with their reasons):

    MXDNA_LLR    masked-LM log-likelihood ratio. SNV/MNV: the positions where REF and ALT differ are
                 masked together in one window centred on the REF allele; LLR = sum over them of
                 log P(alt base) - log P(ref base) (masked marginal). Indel: the difference of the
                 pseudo-log-likelihoods of the ALT and REF windows over the allele as written plus
                 INDEL_FLANK bases each side, each position masked alone.
    MXDNA_EMB    cosine distance between the mean-pooled final token states of the REF and ALT windows.
    MXDNA_DPROB  a classifier's class probability, ALT window minus REF window (its own window length).

Windows: the REF allele with `(window - len(REF)) // 2` genome bases on each side (fewer at a contig
end), the ALT window the same flanks around the ALT allele. The flanks are equal so that a window is
the mirror image of the reverse-complement input's window: with `strand='both'` every score is the
mean of the two strands and is the same for the reverse complement of the whole input.

The model runs on tasks of two kinds in one stream (`RoleIds`: masked-LM or classifier windows),
so a resumable run has one journal and one batching whichever scores are asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mxdna_cli import sequence as dna
from mxdna_cli.defaults import DEFAULT_BATCH_TOKENS, PROMOTER_LABEL, STRANDS
from mxdna_cli.engine.forward import classify, masked_lm
from mxdna_cli.engine.journal import Journal
from mxdna_cli.engine.pipeline import Pipeline
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.bed import parse_region, read_bed
from mxdna_cli.io.fasta import Region
from mxdna_cli.io.vcf import (
    VcfReader,
    is_symbolic,
)
from mxdna_cli.io.writers import STDOUT
from mxdna_cli.runtime import LoadedModel
from mxdna_cli.windows import TRAINING_WINDOW

MAX_ALLELE = 51  # bases in REF or ALT: a 50 bp indel and its anchor base
INDEL_FLANK = 5  # bases each side of an indel's alleles that its pseudo-log-likelihood also sums
SCORE_NAMES = ("llr", "emb", "dprob")
INFO_IDS = {"llr": "MXDNA_LLR", "emb": "MXDNA_EMB", "dprob": "MXDNA_DPROB"}
INFO_DESCRIPTIONS = {
    "llr": "MxDNA masked-LM log-likelihood ratio log P(ALT) - log P(REF): masked marginal over the differing "
           "bases (SNV/MNV), pseudo-log-likelihood difference over the alleles and {flank} bases each side (indel)",
    "emb": "MxDNA cosine distance between the mean-pooled embeddings of the REF and ALT windows",
    "dprob": "MxDNA classifier probability of class '{label}', ALT window minus REF window",
}
FILTERS = {
    "ref_mismatch": ("MXDNA_REF_MISMATCH", "REF does not match the genome: not scored by mxdna"),
    "skipped": ("MXDNA_SKIPPED", (f"at least one ALT not scored by mxdna (symbolic, longer than {MAX_ALLELE} bp, "
                                  "or not A/C/G/T); its scores are missing")),
    "unknown_contig": ("MXDNA_UNKNOWN_CONTIG", "contig not in the genome FASTA: not scored by mxdna"),
}
SKIP_REASONS = ("symbolic", "too_long", "not_acgt")
BASES = "ACGT"  # column order of every per-base output
_ID_COLUMN = {dna.A: 0, dna.C: 1, dna.G: 2, dna.T: 3}  # model id -> column of BASES
_LM_COLUMNS = np.array([0, 3, 1, 2])  # masked_lm's columns are ids 5..8 (A, T, C, G): A T C G -> A C G T
_COMPLEMENT = np.array([3, 2, 1, 0])  # BASES column of each column's complement (A<->T, C<->G)


# --------------------------------------------------------------------------- the genome


class Genome:
    """Contig lengths and forward-strand text: an indexed FASTA, or sequences held in memory (the API)."""

    def __init__(self, path: str, lengths: Mapping[str, int], fetch: Callable[[str, int, int], str],
                 close: Callable[[], None] | None = None) -> None:
        self.path = path
        self.lengths = dict(lengths)
        self._fetch = fetch
        self._close = close

    @classmethod
    def open(cls, path: str) -> Genome:
        from mxdna_cli.io.faidx import IndexedFasta

        fasta = IndexedFasta(path)
        return cls(path, fasta.lengths, lambda c, a, b: fasta.fetch(Region(c, a, b)), fasta.close)

    @classmethod
    def from_sequences(cls, sequences: Mapping[str, str]) -> Genome:
        texts = dict(sequences)
        return cls("<sequences>", {k: len(v) for k, v in texts.items()}, lambda c, a, b: texts[c][a:b])

    def fetch(self, chrom: str, start: int, end: int) -> str:
        return self._fetch(chrom, start, end)

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self) -> Genome:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def centred_span(pos0: int, ref_length: int, contig_length: int, window: int) -> tuple[int, int]:
    """[start, end) of the window around a REF allele at `pos0`: equal flanks, cut at the contig ends."""
    flank = max(0, (window - ref_length) // 2)
    return max(0, pos0 - flank), min(contig_length, pos0 + ref_length + flank)


# --------------------------------------------------------------------------- records and alleles


@dataclass
class VariantRecord:
    """One VCF record (or API tuple): 1-based `pos` as in the file, `raw` the pysam record."""

    number: int
    chrom: str
    pos: int
    id: str | None
    ref: str
    alts: tuple[str, ...]
    raw: Any = None

    @property
    def where(self) -> str:
        return f"record {self.number} ({self.chrom}:{self.pos}" + (f" {self.id})" if self.id else ")")


@dataclass
class RecordPlan:
    """What happens to one record: per ALT the reason it is not scored (None: scored), and its FILTERs."""

    record: VariantRecord
    reasons: list[str | None]
    filters: list[str] = field(default_factory=list)


@dataclass
class Allele:
    """One ALT of one record, to be scored; `key` numbers the scored alleles of a run from 0."""

    key: int
    record: VariantRecord
    alt_index: int
    chrom: str
    pos0: int
    ref: str
    alt: str


def _allele_reason(ref: str, alt: str | None) -> str | None:
    if is_symbolic(alt) or is_symbolic(ref):
        return "symbolic"
    if len(ref) > MAX_ALLELE or len(alt) > MAX_ALLELE:
        return "too_long"
    if set(ref.upper()) - set(BASES) or set(alt.upper()) - set(BASES):
        return "not_acgt"
    return None


@dataclass
class VariantSettings:
    """What `score_variants` computes and writes (the CLI's options)."""

    output: str = STDOUT  # .vcf.gz / .vcf.bgz (bgzip + tabix), .vcf, or TSV (.tsv, .txt, '-')
    scores: tuple[str, ...] = ("llr", "emb")
    strand: str = "forward"
    window: int | None = None  # masked-LM window (LLR, EMB); None: the model's training window
    classifier_window: int | None = None  # DPROB window; None: the classifier's training window
    label: str = PROMOTER_LABEL
    label_index: int = 1
    regions: Sequence[str] = ()
    bed: str | None = None
    strict: bool = False  # a REF mismatch is an error, not a FILTER
    skip_unknown_contigs: bool = False  # a contig missing from the genome gets a FILTER, not an error
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    resume: bool = False


def plan_record(record: VariantRecord, genome: Genome, s: VariantSettings, source: str) -> RecordPlan:
    """Check one record against the genome (contig, REF) and its ALTs against what can be scored."""
    length = genome.lengths.get(record.chrom)
    if length is None:
        if not s.skip_unknown_contigs:
            shown = ", ".join(list(genome.lengths)[:5]) + (", ..." if len(genome.lengths) > 5 else "")
            raise DataError(f"{source}: {record.where}: contig '{record.chrom}' is not in the genome {genome.path} "
                            f"(contigs: {shown}); --skip-unknown-contigs scores the others")
        return RecordPlan(record, ["unknown_contig"] * len(record.alts), [FILTERS["unknown_contig"][0]])
    pos0 = record.pos - 1
    end = pos0 + len(record.ref)
    found = genome.fetch(record.chrom, pos0, min(end, length)) if pos0 < length else ""
    if found.upper() != record.ref.upper() or end > length:
        if s.strict:
            what = f"'{found}'" if end <= length else f"past the end of {record.chrom} (length {length:,})"
            raise DataError(f"{source}: {record.where}: REF '{record.ref}' does not match the genome {genome.path} "
                            f"({what}); without --strict such records get FILTER {FILTERS['ref_mismatch'][0]}")
        return RecordPlan(record, ["ref_mismatch"] * len(record.alts), [FILTERS["ref_mismatch"][0]])
    reasons = [_allele_reason(record.ref, alt) for alt in record.alts]
    filters = [FILTERS["skipped"][0]] if any(r is not None for r in reasons) else []
    return RecordPlan(record, reasons, filters)


def _overlaps(regions: dict[str, list[tuple[int, int]]] | None, chrom: str, start: int, end: int) -> bool:
    if regions is None:
        return True
    return any(a < max(end, start + 1) and start < b for a, b in regions.get(chrom, ()))


def resolve_regions(s: VariantSettings, genome: Genome) -> dict[str, list[tuple[int, int]]] | None:
    """--region / --bed as intervals per contig (None: the whole VCF)."""
    if not s.regions and s.bed is None:
        return None
    regions = [parse_region(text, genome.lengths) for text in s.regions]
    if s.bed is not None:
        regions += read_bed(s.bed)
    result: dict[str, list[tuple[int, int]]] = {}
    for region in regions:
        result.setdefault(region.chrom, []).append((region.start, region.end))
    return result


def vcf_records(path: str) -> Iterator[VariantRecord]:
    with VcfReader(path) as reader:
        for number, raw in reader:
            yield VariantRecord(number, raw.chrom, raw.pos, raw.id, raw.ref, tuple(raw.alts or ()), raw)


def planned(records: Iterable[VariantRecord], genome: Genome, s: VariantSettings, source: str,
            regions: dict | None) -> Iterator[RecordPlan]:
    for record in records:
        if _overlaps(regions, record.chrom, record.pos - 1, record.pos - 1 + len(record.ref)):
            yield plan_record(record, genome, s, source)


def alleles_of(plans: Iterable[RecordPlan]) -> Iterator[Allele]:
    key = 0
    for plan in plans:
        r = plan.record
        for index, (alt, reason) in enumerate(zip(r.alts, plan.reasons)):
            if reason is None:
                yield Allele(key, r, index, r.chrom, r.pos - 1, r.ref.upper(), alt.upper())
                key += 1


# --------------------------------------------------------------------------- window tasks


class RoleIds(np.ndarray):
    """A window's ids tagged with the model that reads it ('lm' or 'clf'), so that one batch of the
    pipeline (which hands the forward only the ids) can hold windows of both models."""

    role: str = "lm"

    def __array_finalize__(self, obj: Any) -> None:
        self.role = getattr(obj, "role", "lm")


def tagged(ids: np.ndarray, role: str, strand: str) -> RoleIds:
    ids = ids if strand == "+" else dna.reverse_complement_ids(ids)
    result = np.ascontiguousarray(ids).view(RoleIds)
    result.role = role
    return result


@dataclass
class ScoreTask:
    """One window of one allele (or ISM position) on one strand; `info` says how its result counts."""

    ids: RoleIds
    key: int
    part: str
    strand: str
    info: Any = None
    last: bool = False

    @property
    def progress(self) -> int:
        return len(self.ids)


def _columns(text: str) -> np.ndarray:
    return np.array([BASES.index(b) for b in text], dtype=np.int64)


def _ids(text: str) -> np.ndarray:
    return dna.encode(text).astype(np.int64)


def _masked(ids: np.ndarray, positions: Sequence[int] | np.ndarray) -> np.ndarray:
    out = ids.copy()
    out[np.asarray(positions, dtype=np.int64)] = dna.MASK
    return out


def allele_tasks(allele: Allele, genome: Genome, s: VariantSettings, strands: Sequence[str],
                 lm_window: int, clf_window: int) -> list[ScoreTask]:
    """Every window the scores of one allele need (see the module docstring)."""
    tasks: list[ScoreTask] = []
    contig = genome.lengths[allele.chrom]
    ref, alt, pos0 = allele.ref, allele.alt, allele.pos0

    def windows(width: int) -> tuple[np.ndarray, np.ndarray, int]:
        start, end = centred_span(pos0, len(ref), contig, width)
        context = _ids(genome.fetch(allele.chrom, start, end))
        offset = pos0 - start
        alt_ids = np.concatenate([context[:offset], _ids(alt), context[offset + len(ref):]])
        return context, alt_ids, offset

    def add(ids: np.ndarray, role: str, part: str, info: Any = None) -> None:
        for strand in strands:
            tasks.append(ScoreTask(tagged(ids, role, strand), allele.key, part, strand, info))

    if "llr" in s.scores or "emb" in s.scores:
        ref_ids, alt_ids, offset = windows(lm_window)
        if "llr" in s.scores:
            if len(ref) == len(alt):
                differ = [k for k in range(len(ref)) if ref[k] != alt[k]] or list(range(len(ref)))
                info = (_columns("".join(ref[k] for k in differ)), _columns("".join(alt[k] for k in differ)))
                add(_masked(ref_ids, [offset + k for k in differ]), "lm", "llr", info)
            else:
                for side, ids, size in (("ref", ref_ids, len(ref)), ("alt", alt_ids, len(alt))):
                    for j in range(max(0, offset - INDEL_FLANK), min(len(ids), offset + size + INDEL_FLANK)):
                        if ids[j] in _ID_COLUMN:  # an N in the flank has no likelihood to sum
                            add(_masked(ids, [j]), "lm", f"pll_{side}", _ID_COLUMN[int(ids[j])])
        if "emb" in s.scores:
            add(ref_ids, "lm", "emb_ref")
            add(alt_ids, "lm", "emb_alt")
    if "dprob" in s.scores:
        ref_ids, alt_ids, _ = windows(clf_window)
        add(ref_ids, "clf", "p_ref")
        add(alt_ids, "clf", "p_alt")
    tasks[-1].last = True
    return tasks


def model_forward(lm: LoadedModel | None, clf: LoadedModel | None, id_arrays: list[np.ndarray]) -> list[Any]:
    """One batch: the masked-LM windows through the LM, the classifier windows through the classifier."""
    results: list[Any] = [None] * len(id_arrays)
    for role, loaded, run in (("lm", lm, masked_lm), ("clf", clf, classify)):
        rows = [i for i, ids in enumerate(id_arrays) if getattr(ids, "role", "lm") == role]
        if rows:
            for i, output in zip(rows, run(loaded, [np.asarray(id_arrays[i]).view(np.ndarray) for i in rows])):
                results[i] = output
    return results


def _oriented(log_probs: np.ndarray, strand: str) -> np.ndarray:
    """masked_lm's (M, 4) rows as forward-strand rows in BASES columns (a '-' window is reversed and
    complemented)."""
    rows = log_probs[:, _LM_COLUMNS]
    return rows if strand == "+" else rows[::-1][:, _COMPLEMENT]


def accumulate(acc: dict[str, dict[str, Any]], task: ScoreTask, output: Any, label_index: int) -> None:
    """Fold one window's result into its allele's accumulator (small: scalars and pooled vectors)."""
    part, strand = task.part, task.strand
    slot = acc.setdefault(part, {})
    if part == "llr":
        rows = _oriented(output.log_probs, strand)
        ref_cols, alt_cols = task.info
        k = np.arange(len(ref_cols))
        slot[strand] = float(np.sum(rows[k, alt_cols] - rows[k, ref_cols]))
    elif part.startswith("pll_"):
        column = task.info if strand == "+" else int(_COMPLEMENT[task.info])
        slot[strand] = slot.get(strand, 0.0) + float(output.log_probs[0, _LM_COLUMNS][column])
    elif part.startswith("emb_"):
        slot[strand] = output.pooled
    else:  # p_ref, p_alt
        slot[strand] = float(output[label_index])


def finish_scores(acc: dict[str, dict[str, Any]], scores: Sequence[str]) -> dict[str, float]:
    """The allele's scores from its accumulator, each the mean over the strands read."""
    result = {}
    if "llr" in scores:
        if "llr" in acc:
            result["llr"] = float(np.mean(list(acc["llr"].values())))
        else:
            ref, alt = acc.get("pll_ref", {}), acc.get("pll_alt", {})
            strands = sorted(set(ref) | set(alt))
            result["llr"] = float(np.mean([alt.get(x, 0.0) - ref.get(x, 0.0) for x in strands]))
    if "emb" in scores:
        a = np.mean(list(acc["emb_ref"].values()), axis=0)
        b = np.mean(list(acc["emb_alt"].values()), axis=0)
        denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
        result["emb"] = float(max(0.0, 1.0 - float(a @ b) / denominator)) if denominator > 0 else float("nan")
    if "dprob" in scores:
        result["dprob"] = float(np.mean([acc["p_alt"][x] - acc["p_ref"][x] for x in acc["p_ref"]]))
    return result


def run_tasks(pipeline: Pipeline, tasks: Iterable[ScoreTask], forward: Callable, label_index: int,
              scores: Sequence[str], journal: Journal | None = None,
              state: dict | None = None) -> Iterator[tuple[int, dict[str, Any] | None, dict[str, float]]]:
    """(key, accumulator, scores) of every allele (or ISM item), in order, as its last window is done.

    `state` holds the accumulator of the item in progress: with a journal it is saved at every
    checkpoint, so a resumed run picks the item up where it stopped.
    """
    state = {} if state is None else state
    for task, output in pipeline.run(tasks, forward, journal=journal, state=state):
        accs = state.setdefault("acc", {})
        acc = accs.setdefault(task.key, {})
        accumulate(acc, task, output, label_index)
        if task.last:
            del accs[task.key]
            yield task.key, acc, finish_scores(acc, scores)


# --------------------------------------------------------------------------- model windows


def lm_window(loaded: LoadedModel | None, window: int | None) -> int:
    """The masked-LM window: as asked, else the model's pretraining window (its card), else the default."""
    if window is not None:
        if window < 1:
            raise UsageError(f"--window {window}: must be at least 1")
        return window
    settings = loaded.info.extra.get("settings", {}) if loaded is not None else {}
    try:
        return int(settings.get("window", TRAINING_WINDOW)) if isinstance(settings, dict) else TRAINING_WINDOW
    except (TypeError, ValueError):
        return TRAINING_WINDOW


def check_scores(scores: Sequence[str], lm: LoadedModel | None, clf: LoadedModel | None) -> tuple[str, ...]:
    unknown = [name for name in scores if name not in SCORE_NAMES]
    if unknown or not scores:
        raise UsageError(f"--scores {','.join(scores)}: choose from {', '.join(SCORE_NAMES)}")
    if "dprob" in scores and clf is None:
        raise UsageError("the dprob score needs a classifier (--model CLASSIFIER)")
    if ("llr" in scores or "emb" in scores) and lm is None:
        raise UsageError("the llr and emb scores need a masked-LM model (--lm)")
    return tuple(name for name in SCORE_NAMES if name in scores)


def strands_of(strand: str) -> tuple[str, ...]:
    if strand not in STRANDS:
        raise UsageError(f"--strand {strand}: choose from {', '.join(STRANDS)}")
    return {"forward": ("+",), "reverse": ("-",), "both": ("+", "-")}[strand]


def _fmt(value: float) -> str:
    """A score as a TSV cell: six significant digits, '.' when missing."""
    return "." if value is None or not np.isfinite(value) else f"{value:.6g}"
