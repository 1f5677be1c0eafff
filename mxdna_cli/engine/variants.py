"""The score-variants verb: every ALT allele of a VCF scored (MXDNA_LLR, MXDNA_EMB, MXDNA_DPROB;
their definitions are in `engine/alleles.py` and docs/variants.md), resumable, written as VCF
(bgzip + tabix for .vcf.gz, records in input order, input fields kept) or TSV; and the same scoring
for the Python API (`score_records`)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from mxdna_cli.defaults import DEFAULT_BATCH_TOKENS
from mxdna_cli.engine.alleles import (
    _fmt,
    FILTERS,
    Genome,
    INDEL_FLANK,
    INFO_DESCRIPTIONS,
    INFO_IDS,
    MAX_ALLELE,
    RecordPlan,
    SCORE_NAMES,
    SKIP_REASONS,
    ScoreTask,
    VariantRecord,
    VariantSettings,
    _overlaps,
    allele_tasks,
    alleles_of,
    check_scores,
    lm_window,
    model_forward,
    planned,
    resolve_regions,
    run_tasks,
    strands_of,
    vcf_records,
)
from mxdna_cli.engine.journal import Journal, input_fingerprint
from mxdna_cli.engine.outputs import RUN_STAMP_KEYS, check_output, run_meta
from mxdna_cli.engine.pipeline import Pipeline
from mxdna_cli.engine.spill import RowSpill
from mxdna_cli.engine.report import Reporter, Summary, timed
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.vcf import (
    BGZIP_SUFFIXES,
    VcfReader,
    VcfWriter,
    header_value,
)
from mxdna_cli.io.writers import STDOUT, TsvWriter
from mxdna_cli.runtime import LoadedModel


# --------------------------------------------------------------------------- the score-variants verb


SPILL_ROW = np.dtype([("key", "<i8"), ("llr", "<f8"), ("emb", "<f8"), ("dprob", "<f8")])


def output_kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith(BGZIP_SUFFIXES):
        return "vcf.gz"
    if lower.endswith(".vcf"):
        return "vcf"
    if path == STDOUT or lower.endswith((".tsv", ".txt", ".tab")):
        return "tsv"
    raise UsageError(f"{path}: name a variant output .vcf.gz (bgzip + tabix), .vcf or .tsv ('-' = TSV on stdout)")


@dataclass
class VariantCounts:
    records: int = 0
    alleles: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, plan: RecordPlan) -> None:
        self.records += 1
        for reason in plan.reasons:
            if reason is None:
                self.alleles += 1
            else:
                self.skipped[reason] = self.skipped.get(reason, 0) + 1


def score_variants(vcf: str, genome_path: str, lm: LoadedModel | None, clf: LoadedModel | None,
                   settings: VariantSettings, reporter: Reporter | None = None) -> Summary:
    """Score every ALT of a VCF and write the VCF (every input field kept, INFO added) or a TSV."""
    reporter = reporter or Reporter()
    s = settings
    kind = output_kind(s.output)
    check_output(s.output)
    s.scores = check_scores(s.scores, lm, clf)
    strands = strands_of(s.strand)
    window = lm_window(lm, s.window)
    from mxdna_cli.engine.prediction import classifier_window

    clf_window = classifier_window(clf, s.classifier_window) if clf is not None else 0
    with Genome.open(genome_path) as genome:
        regions = resolve_regions(s, genome)
        # pass 1, no model: every record checked (errors before any work or output) and the work counted
        counts, total, contigs = VariantCounts(), 0, {}
        for plan in planned(vcf_records(vcf), genome, s, vcf, regions):
            counts.add(plan)
            contigs.setdefault(plan.record.chrom, genome.lengths.get(plan.record.chrom))
        for allele in alleles_of(planned(vcf_records(vcf), genome, s, vcf, regions)):
            total += sum(t.progress for t in allele_tasks(allele, genome, s, strands, window, clf_window))
        main = lm if lm is not None else clf
        meta = run_meta("score-variants", main, None, input=vcf, genome=genome_path, regions=list(s.regions) or None,
                        bed=s.bed, scores=",".join(s.scores), strand=s.strand,
                        window=window if ("llr" in s.scores or "emb" in s.scores) else None,
                        indel_flank=INDEL_FLANK if "llr" in s.scores else None,
                        classifier=clf.name if clf is not None else None,
                        classifier_sha256=clf.info.sha256 if clf is not None else None,
                        classifier_window=clf_window or None, label=s.label if clf is not None else None,
                        batch_tokens=s.batch_tokens)
        pipeline = Pipeline(main, batch_tokens=s.batch_tokens, reporter=reporter)
        forward = functools.partial(model_forward, lm, clf)

        def tasks() -> Iterator[ScoreTask]:
            for allele in alleles_of(planned(vcf_records(vcf), genome, s, vcf, regions)):
                yield from allele_tasks(allele, genome, s, strands, window, clf_window)

        if not pipeline.writes:  # another torchrun rank: its share of the windows, nothing written
            pipeline.serve(tasks(), forward)
            return Summary()
        fingerprint = {"meta": {k: v for k, v in meta.items() if k not in RUN_STAMP_KEYS},
                       "files": input_fingerprint([vcf, genome_path, s.bed])}
        journal = Journal([s.output], fingerprint, resume=s.resume, warn=reporter.warn)
        summary = Summary(outputs=[s.output] + ([s.output + ".tbi"] if kind == "vcf.gz" else []))
        with journal.guard():
            spill = RowSpill(s.output, SPILL_ROW, journal, key="scores")
            try:
                state = journal.state or {"acc": {}}

                def work() -> None:
                    for key, _, scores in run_tasks(pipeline, tasks(), forward, s.label_index, s.scores,
                                                    journal, state):
                        spill.add(key, *(scores.get(name, np.nan) for name in SCORE_NAMES))

                timed(summary, reporter, total, "scoring variants", work)
                rows = spill.rows()
                if kind == "tsv":
                    _write_tsv(vcf, genome, s, regions, rows, meta)
                else:
                    indexed = _write_vcf(vcf, genome, s, regions, rows, meta, contigs)
                    if kind == "vcf.gz" and not indexed:
                        summary.outputs.pop()
                        reporter.warn(f"{vcf}: records are not sorted by position: {s.output} has no tabix index "
                                      "(sort the input, e.g. bcftools sort, for one)")
            finally:
                spill.remove()
    _warn_counts(counts, s, reporter)
    summary.targets = counts.alleles
    summary.nucleotides = total
    summary.windows = pipeline.windows
    summary.extra["counts"] = counts
    return summary


def _warn_counts(counts: VariantCounts, s: VariantSettings, reporter: Reporter) -> None:
    skipped = {k: v for k, v in counts.skipped.items() if k in SKIP_REASONS}
    if skipped:
        detail = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in skipped.items())
        reporter.warn(f"{sum(skipped.values()):,} ALT allele(s) not scored ({detail}; at most {MAX_ALLELE} bp of "
                      f"A/C/G/T are scored): FILTER {FILTERS['skipped'][0]}")
    if counts.skipped.get("ref_mismatch"):
        reporter.warn(f"{counts.skipped['ref_mismatch']:,} ALT allele(s) on records whose REF does not match the "
                      f"genome: FILTER {FILTERS['ref_mismatch'][0]} (--strict makes it an error)")
    if counts.skipped.get("unknown_contig"):
        reporter.warn(f"{counts.skipped['unknown_contig']:,} ALT allele(s) on contigs not in the genome: FILTER "
                      f"{FILTERS['unknown_contig'][0]}")


def _scored(vcf: str, genome: Genome, s: VariantSettings, regions, rows: np.ndarray) -> Iterator[tuple[RecordPlan, list]]:
    """Every kept record's plan with, per ALT, its scores (None where not scored), from the spill."""
    cursor = 0
    for plan in planned(vcf_records(vcf), genome, s, vcf, regions):
        values: list[dict[str, float] | None] = []
        for reason in plan.reasons:
            if reason is not None:
                values.append(None)
                continue
            row = rows[cursor]
            if int(row["key"]) != cursor:
                raise RuntimeError("variant scores are out of step with the VCF")
            values.append({name: float(row[name]) for name in s.scores})
            cursor += 1
        yield plan, values
    if cursor != len(rows):
        raise DataError(f"{vcf}: the file changed while it was scored; run again")


def _write_vcf(vcf: str, genome: Genome, s: VariantSettings, regions, rows, meta, contigs) -> bool:
    with VcfReader(vcf) as reader:
        reader.declare_contigs(contigs)
        reader.complete_header()
        header = reader.header
        for name in s.scores:
            if INFO_IDS[name] not in header.info:
                description = INFO_DESCRIPTIONS[name].format(flank=INDEL_FLANK, label=s.label)
                header.add_line(f'##INFO=<ID={INFO_IDS[name]},Number=A,Type=Float,Description="{description}">')
        for filter_id, description in FILTERS.values():
            if filter_id not in header.filters:
                header.add_line(f'##FILTER=<ID={filter_id},Description="{description}">')
        for key, value in meta.items():
            header.add_line(f"##mxdna_{key}={header_value(value)}")
        writer = VcfWriter(s.output, reader)
        try:
            scored = _scored(vcf, genome, s, regions, rows)
            for number, raw in reader:
                if not _overlaps(regions, raw.chrom, raw.pos - 1, raw.pos - 1 + len(raw.ref)):
                    continue
                plan, values = next(scored)
                if plan.record.number != number:
                    raise RuntimeError("VCF passes disagree")
                if any(v is not None for v in values):  # a record with nothing scored gets its FILTER only
                    for name in s.scores:
                        raw.info[INFO_IDS[name]] = tuple(None if v is None else _vcf_float(v[name]) for v in values)
                for filter_id in plan.filters:
                    raw.filter.add(filter_id)
                writer.write(raw)
            for _ in scored:  # runs the end-of-file check
                pass
        except BaseException:
            writer.abort()
            raise
        writer.commit()
        return writer.indexed


def _vcf_float(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _write_tsv(vcf: str, genome: Genome, s: VariantSettings, regions, rows, meta) -> None:
    columns = ("chrom", "pos", "id", "ref", "alt", "filter", *(INFO_IDS[n] for n in s.scores))
    with TsvWriter(s.output, columns, meta) as writer:
        for plan, values in _scored(vcf, genome, s, regions, rows):
            r = plan.record
            kept = [f for f in (r.raw.filter if r.raw is not None else ()) if f != "PASS"]
            filters = ";".join(kept + plan.filters) or "PASS"  # the input's FILTER, then mxdna's
            for alt, v in zip(r.alts, values):
                writer.write_row([r.chrom, r.pos, r.id or ".", r.ref, alt, filters,
                                  *(_fmt(None if v is None else v[n]) for n in s.scores)])


# --------------------------------------------------------------------------- the API's variant scoring


VARIANT_DTYPE = np.dtype([("chrom", object), ("pos", "<i8"), ("id", object), ("ref", object), ("alt", object),
                          ("filter", object), ("llr", "<f8"), ("emb", "<f8"), ("dprob", "<f8")])


def score_records(records: Iterable[VariantRecord], genome: Genome, lm: LoadedModel | None,
                  clf: LoadedModel | None, s: VariantSettings, source: str,
                  batch_tokens: int = DEFAULT_BATCH_TOKENS) -> np.ndarray | None:
    """Scores of every ALT of `records` as a structured array (VARIANT_DTYPE; NaN: not scored/asked)."""
    s.scores = check_scores(s.scores, lm, clf)
    strands = strands_of(s.strand)
    window = lm_window(lm, s.window)
    from mxdna_cli.engine.prediction import classifier_window

    clf_window = classifier_window(clf, s.classifier_window) if clf is not None else 0
    regions = resolve_regions(s, genome)
    plans = list(planned(records, genome, s, source, regions))
    pipeline = Pipeline(lm if lm is not None else clf, batch_tokens=batch_tokens)
    tasks = (t for a in alleles_of(plans) for t in allele_tasks(a, genome, s, strands, window, clf_window))
    done = {key: scores for key, _, scores in run_tasks(pipeline, tasks, functools.partial(model_forward, lm, clf),
                                                        s.label_index, s.scores)}
    if not pipeline.writes:
        return None
    out, key = [], 0
    for plan in plans:
        r = plan.record
        for alt, reason in zip(r.alts, plan.reasons):
            values = {}
            if reason is None:
                values = done[key]
                key += 1
            out.append((r.chrom, r.pos, r.id or ".", r.ref, alt, ";".join(plan.filters) or "PASS",
                        *(values.get(n, np.nan) for n in SCORE_NAMES)))
    return np.array(out, dtype=VARIANT_DTYPE)


