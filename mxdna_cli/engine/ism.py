"""In-silico saturation mutagenesis (`mxdna ism`): every base of a region changed to each of the three
others and scored by a classifier (probability change) or the masked LM (log-likelihood ratio), on
the one pipeline; per-base importance as TSV or bigWig, and a logo-style PNG."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mxdna_cli.defaults import DEFAULT_BATCH_TOKENS, PROMOTER_LABEL
from mxdna_cli.engine.alleles import (
    BASES,
    Genome,
    ScoreTask,
    _fmt,
    _ids,
    _masked,
    _oriented,
    centred_span,
    lm_window,
    model_forward,
    strands_of,
    tagged,
)
from mxdna_cli.engine.outputs import check_output, run_meta
from mxdna_cli.engine.pipeline import Pipeline
from mxdna_cli.engine.report import Reporter, Summary, timed
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.bed import parse_region
from mxdna_cli.io.fasta import Region
from mxdna_cli.io.writers import STDOUT, TsvWriter, atomic_output
from mxdna_cli.runtime import LoadedModel


# --------------------------------------------------------------------------- in-silico mutagenesis


@dataclass
class IsmResult:
    """Saturation mutagenesis of one sequence: `delta[i, b]` is the score change when base i becomes
    BASES[b] (0 at the reference base, NaN where the reference is not A/C/G/T). `score` says what
    changes: 'llr' (masked-LM log P(alt) - log P(ref)) or 'dprob' (classifier probability)."""

    sequence: str
    delta: np.ndarray  # (L, 4) float64, columns A C G T
    score: str
    chrom: str = "sequence"
    start: int = 0  # 0-based genome position of sequence[0]
    meta: dict = field(default_factory=dict)

    @property
    def max_abs(self) -> np.ndarray:
        """Per base: the largest absolute change over the three substitutions."""
        with np.errstate(invalid="ignore"):
            return np.max(np.abs(self.delta), axis=1)

    @property
    def mean(self) -> np.ndarray:
        """Per base: the mean change over the three substitutions."""
        return np.sum(self.delta, axis=1) / 3.0


def ism_cost(length: int, mode: str, strands: int) -> int:
    """Windows an ISM run reads: masked LM one per base (its three substitutions share it), a
    classifier the reference plus one per substitution."""
    return strands * (length if mode == "llr" else 1 + 3 * length)


def ism(genome: Genome, region: Region, lm: LoadedModel | None, clf: LoadedModel | None, *, strand: str = "forward",
        window: int | None = None, label_index: int = 1, batch_tokens: int = DEFAULT_BATCH_TOKENS,
        reporter: Reporter | None = None) -> IsmResult | None:
    """Every base of `region` changed to each of the three others, scored by the classifier (`clf`:
    probability change, the region read whole) or else by the masked LM (`lm`: LLR, each base masked
    in a window centred on it, with genome context beyond the region, as `score_variants`)."""
    strands = strands_of(strand)
    mode = "dprob" if clf is not None else "llr"
    loaded = clf if clf is not None else lm
    if loaded is None:
        raise UsageError("ism needs a masked-LM model or a classifier")
    text = genome.fetch(region.chrom, region.start, region.end).upper()
    n = len(text)
    contig = genome.lengths[region.chrom]
    pipeline = Pipeline(loaded, batch_tokens=batch_tokens, reporter=reporter)
    ref_columns = np.array([BASES.find(b) for b in text])  # -1: not A/C/G/T

    def lm_tasks(width: int) -> Iterator[ScoreTask]:
        flank = (width - 1) // 2
        lo, hi = max(0, region.start - flank), min(contig, region.end + flank)
        context = _ids(genome.fetch(region.chrom, lo, hi))
        for i in range(n):
            if ref_columns[i] < 0:
                continue
            a, b = centred_span(region.start + i, 1, contig, width)
            ids = _masked(context[a - lo : b - lo], [region.start + i - a])
            for k, x in enumerate(strands):
                yield ScoreTask(tagged(ids, "lm", x), i, "ism", x, None, k == len(strands) - 1)

    def clf_tasks() -> Iterator[ScoreTask]:
        ids = _ids(text)
        for k, x in enumerate(strands):
            yield ScoreTask(tagged(ids, "clf", x), -1, "ref", x, None, k == len(strands) - 1)
        for i in range(n):
            if ref_columns[i] < 0:
                continue
            others = [c for c in range(4) if c != ref_columns[i]]
            for c in others:
                mutant = ids.copy()
                mutant[i] = _ids(BASES[c])[0]
                for k, x in enumerate(strands):
                    yield ScoreTask(tagged(mutant, "clf", x), i, c, x, None, c == others[-1] and k == len(strands) - 1)

    width = lm_window(lm, window) if mode == "llr" else n
    tasks = lm_tasks(width) if mode == "llr" else clf_tasks()
    forward = functools.partial(model_forward, lm if mode == "llr" else None, clf)
    delta = np.full((n, 4), np.nan)
    sums: dict[Any, float] = {}
    reference = 0.0

    def work() -> None:
        nonlocal reference
        for task, output in pipeline.run(tasks, forward):
            if mode == "llr":  # one masked window gives all three substitutions of its base
                row = _oriented(output.log_probs, task.strand)[0]
                values = (row - row[ref_columns[task.key]]) / len(strands)
                delta[task.key] = values if task.strand == strands[0] else delta[task.key] + values
            elif task.key == -1:
                reference += float(output[label_index]) / len(strands)
            else:
                slot = (task.key, task.part)
                sums[slot] = sums.get(slot, 0.0) + float(output[label_index]) / len(strands)
                if task.last:
                    delta[task.key, ref_columns[task.key]] = 0.0

    summary = Summary()
    timed(summary, reporter or Reporter(), ism_cost(n, mode, len(strands)) * (width if mode == "llr" else n),
          "mutagenesis", work)
    if not pipeline.writes:
        return None
    if mode == "dprob":
        for (i, c), p in sums.items():
            delta[i, c] = p - reference
    meta = {"score": mode, "strand": strand, "window": width, "windows": pipeline.windows, "seconds": summary.seconds,
            "model": loaded.name, "model_sha256": loaded.info.sha256}
    return IsmResult(text, delta, mode, region.chrom, region.start, meta)


ISM_COLUMNS = ("chrom", "pos", "ref", *(f"delta_{b}" for b in BASES), "max_abs", "mean")


def write_ism_tsv(result: IsmResult, path: str, meta: dict) -> None:
    with TsvWriter(path, ISM_COLUMNS, meta) as writer:
        max_abs, mean = result.max_abs, result.mean
        for i, base in enumerate(result.sequence):
            writer.write_row([result.chrom, result.start + i + 1, base, *(_fmt(v) for v in result.delta[i]),
                              _fmt(max_abs[i]), _fmt(mean[i])])


def write_ism_bigwig(result: IsmResult, path: str, chrom_sizes: Sequence[tuple[str, int]], value: str,
                     meta: dict) -> None:
    """One value per base (`max_abs` or `mean`); bases that are not A/C/G/T have none."""
    from mxdna_cli.io.bigwig import BigWigWriter

    values = result.max_abs if value == "max_abs" else result.mean
    finite = np.isfinite(values)
    breaks = np.flatnonzero(np.diff(finite.astype(np.int8)) != 0) + 1
    with BigWigWriter(path, chrom_sizes, {**meta, "value": value}) as writer:
        for run in np.split(np.arange(len(values)), breaks):
            if len(run) and finite[run[0]]:
                writer.add(result.chrom, result.start + int(run[0]), values[run].astype(np.float64))


def plot_ism(result: IsmResult, path: str, title: str | None = None, xlabel: str | None = None) -> None:
    """A PNG: the sequence as a logo whose letter heights are the base's importance (minus the mean
    change when it is mutated: up = the base supports the score), over a heatmap of every change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import PathPatch
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    n = len(result.sequence)
    importance = np.nan_to_num(-result.mean)
    colours = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839"}
    font = FontProperties(family="DejaVu Sans", weight="bold")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(24, 3 + n * 0.1), 4.2), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    for i, base in enumerate(result.sequence):
        height = float(importance[i])
        if base not in colours or height == 0:
            continue
        glyph = TextPath((0, 0), base, size=1, prop=font)
        box = glyph.get_extents()
        transform = (Affine2D().translate(-box.x0, -box.y0).scale(0.9 / box.width, abs(height) / box.height)
                     .translate(i - 0.45, min(0.0, height)))
        top.add_patch(PathPatch(transform.transform_path(glyph), facecolor=colours[base], edgecolor="none"))
    span = float(np.max(np.abs(importance))) or 1.0
    top.set_ylim(-span * 1.05 if importance.min() < 0 else 0, span * 1.05)
    top.axhline(0, color="grey", linewidth=0.5)
    what = "P(class)" if result.score == "dprob" else "log-likelihood"
    top.set_ylabel(f"importance\n(-mean change in {what})", fontsize=8)
    if title:
        top.set_title(title, fontsize=9)
    limit = float(np.nanmax(np.abs(result.delta))) or 1.0
    image = bottom.imshow(result.delta.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                          extent=(-0.5, n - 0.5, 3.5, -0.5), interpolation="nearest")
    bottom.set_yticks(range(4), list(BASES))
    bottom.set_ylabel("to", fontsize=8)
    ticks = np.arange(0, n, max(1, n // 10 // 10 * 10 or 10))
    bottom.set_xticks(ticks, [f"{result.start + t + 1:,}" for t in ticks], fontsize=7)
    bottom.set_xlabel(xlabel or f"{result.chrom} position (1-based)", fontsize=8)
    bottom.set_xlim(-0.5, n - 0.5)
    fig.subplots_adjust(left=0.08, right=0.92, top=0.9, bottom=0.14, hspace=0.08)
    fig.colorbar(image, cax=fig.add_axes([0.935, 0.14, 0.012, 0.3]), label=f"change in {what}")
    try:
        with atomic_output(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- the ism verb


ISM_VALUES = ("max_abs", "mean")


@dataclass
class IsmSettings:
    output: str = STDOUT  # .tsv ('-') or bigWig (.bw, .bigwig)
    region: str | None = None  # CHR:FROM-TO; None: the FASTA's one record
    plot: str | None = None
    value: str = "max_abs"  # the bigWig's value
    strand: str = "forward"
    window: int | None = None  # masked-LM window (without a classifier)
    label: str = PROMOTER_LABEL
    label_index: int = 1
    batch_tokens: int = DEFAULT_BATCH_TOKENS


def ism_region(genome_path: str, lm: LoadedModel | None, clf: LoadedModel | None, settings: IsmSettings,
               reporter: Reporter | None = None) -> Summary:
    """`mxdna ism`: mutagenesis of one region (or a one-record FASTA), written as TSV or bigWig (+ PNG)."""
    from mxdna_cli.engine.outputs import SUFFIXES
    from mxdna_cli.engine.prediction import MAX_WHOLE_LENGTH_FACTOR, classifier_window

    reporter = reporter or Reporter()
    s = settings
    bigwig = s.output != STDOUT and s.output.lower().endswith(SUFFIXES["bigwig"])
    if s.value not in ISM_VALUES:
        raise UsageError(f"--value {s.value}: choose from {', '.join(v.replace('_', '-') for v in ISM_VALUES)}")
    check_output(s.output, allow_stdout=not bigwig, what="bigWig")
    if s.plot is not None:
        check_output(s.plot, allow_stdout=False, what="--plot")
    with Genome.open(genome_path) as genome:
        if s.region is not None:
            region = parse_region(s.region, genome.lengths)
            if region.chrom not in genome.lengths:
                raise DataError(f"{genome_path}: unknown contig '{region.chrom}' in region {s.region}")
            if region.end > genome.lengths[region.chrom]:
                raise DataError(f"{genome_path}: region {s.region} ends past the end of contig '{region.chrom}' "
                                f"(length {genome.lengths[region.chrom]:,})")
        elif len(genome.lengths) == 1:
            chrom, length = next(iter(genome.lengths.items()))
            region = Region(chrom, 0, length)
        else:
            raise UsageError(f"{genome_path} has {len(genome.lengths)} records: pick one with --region CHR:FROM-TO")
        if clf is not None:
            limit = MAX_WHOLE_LENGTH_FACTOR * classifier_window(clf, None)
            if region.length > limit:
                raise UsageError(f"{region.label}: {region.length:,} nt is too long for a classifier that reads it "
                                 f"whole (at most {limit:,} nt); pick a shorter --region")
        result = ism(genome, region, lm, clf, strand=s.strand, window=s.window, label_index=s.label_index,
                     batch_tokens=s.batch_tokens, reporter=reporter)
        if result is None:  # another torchrun rank
            return Summary()
        loaded = clf if clf is not None else lm
        meta = run_meta("ism", loaded, None, input=genome_path, region=region.label, score=result.score,
                        strand=s.strand, window=result.meta["window"],
                        label=s.label if clf is not None else None, batch_tokens=s.batch_tokens,
                        cost=f"{result.meta['windows']:,} windows")
        if bigwig:
            sizes = [(region.chrom, genome.lengths[region.chrom])]
            write_ism_bigwig(result, s.output, sizes, s.value, meta)
        else:
            write_ism_tsv(result, s.output, meta)
        if s.plot is not None:
            plot_ism(result, s.plot, f"{loaded.name}: in-silico mutagenesis of {region.label} "
                                     f"({'P(' + s.label + ')' if clf is not None else 'masked-LM LLR'}, "
                                     f"strand {s.strand})")
    summary = Summary(targets=1, nucleotides=region.length, windows=int(result.meta["windows"]),
                      seconds=float(result.meta["seconds"]),
                      outputs=[s.output] + ([s.output + ".json"] if bigwig else []) + ([s.plot] if s.plot else []))
    summary.extra["result"] = result
    return summary
