"""The variant-effect verbs: `score-variants` (a VCF's variants scored by the masked LM and, with
--model, a classifier) and `ism` (in-silico saturation mutagenesis of a region). Each parses its
options, checks what is cheap to check, calls one `mxdna_cli.engine.variants` or `engine.ism` function and
reports on stderr."""

from __future__ import annotations

from typing import Annotated

import typer

from mxdna_cli import engine
from mxdna_cli.cli.options import (
    INPUT_PANEL,
    MODEL_PANEL,
    OUTPUT_PANEL,
    WINDOW_PANEL,
    BatchTokensOpt,
    BedOpt,
    CompileOpt,
    DeviceOpt,
    Dtype,
    DtypeOpt,
    QuietOpt,
    RegionOpt,
    ResumeOpt,
    Strand,
    StrandOpt,
    ThreadsOpt,
    check_paths,
    example,
)
from mxdna_cli.cli.progress import StderrReporter, report
from mxdna_cli.errors import UsageError
from mxdna_cli.extras import require

commands = typer.Typer()  # merged into the top-level app by main.py

ClassifierOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", metavar="CLASSIFIER", help="A classifier (bundled name or folder): adds its "
                 "probability change (MXDNA_DPROB for score-variants; ism then scores with it alone).",
                 rich_help_panel=MODEL_PANEL, show_default=False),
]
LmOpt = Annotated[
    str | None,
    typer.Option("--lm", metavar="MODEL", help="The masked-LM model for the LLR and embedding scores.",
                 rich_help_panel=MODEL_PANEL, show_default="$MXDNA_WEIGHTS, else the bundled mxdna-small"),
]
LabelOpt = Annotated[
    str, typer.Option("--label", help="The classifier's class whose probability is scored.", rich_help_panel=MODEL_PANEL)
]
LmWindowOpt = Annotated[
    int | None,
    typer.Option("--window", "-w", min=1, help="Masked-LM window, centred on the variant (the REF allele with "
                 "(window - len(REF)) // 2 bases each side).", rich_help_panel=WINDOW_PANEL,
                 show_default="the model's pretraining window (mxdna-small: 510)"),
]
GenomeOpt = Annotated[
    str | None,
    typer.Option("--genome", "-g", metavar="GENOME", help="Indexed FASTA of the genome (plain or bgzip; a missing "
                 ".fai is built).", rich_help_panel=INPUT_PANEL, show_default=False),
]


def _load(lm_name: str | None, classifier: str | None, label: str, need_lm: bool, device: str, dtype: Dtype,
          compile: bool, threads: int | None, reporter: StderrReporter):
    lm = clf = None
    label_index = 1
    if classifier is not None:
        clf, label_index = engine.load_classifier(classifier, label=label, device=device, dtype=dtype.value,
                                                  threads=threads, reporter=reporter, compile=compile)
    if need_lm:
        lm = engine.load(lm_name, device=device, dtype=dtype.value, threads=threads, reporter=reporter,
                         compile=compile)
        if lm.info.task != "masked_lm":
            raise UsageError(f"--lm {lm_name or lm.name}: model '{lm.name}' is a {lm.info.task} model; the LLR and "
                             "embedding scores need a masked-LM model (e.g. the bundled mxdna-small)")
    return lm, clf, label_index


@commands.command(
    "score-variants",
    epilog=example(
        "mxdna score-variants calls.vcf.gz --genome genome.fa.gz -o scored.vcf.gz",
        "mxdna score-variants calls.vcf.gz -g genome.fa.gz -m promoter-human --strand both -r chr1:1-2,000,000 "
        "-o scored.tsv",
    ),
)
def score_variants(
    variants: Annotated[str, typer.Argument(metavar="VARIANTS", help="VCF or BCF file (plain, bgzip or gzip).",
                                            show_default=False)],
    genome: GenomeOpt = None,
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="Scored variants: .vcf.gz (bgzip + tabix index), .vcf, or .tsv "
                     "(chrom, pos, id, ref, alt, filter, scores); '-' = TSV on stdout.", rich_help_panel=OUTPUT_PANEL),
    ] = "-",
    scores: Annotated[
        str | None,
        typer.Option("--scores", help="Comma-separated: llr (masked-LM log-likelihood ratio), emb (embedding cosine "
                     "distance), dprob (classifier probability change; needs --model).", rich_help_panel=OUTPUT_PANEL,
                     show_default="llr,emb, and dprob with --model"),
    ] = None,
    region: RegionOpt = None,
    bed: BedOpt = None,
    strand: StrandOpt = Strand.forward,
    strict: Annotated[
        bool, typer.Option("--strict", help="A REF that does not match the genome is an error (else FILTER "
                           "MXDNA_REF_MISMATCH and no scores).", rich_help_panel=INPUT_PANEL)
    ] = False,
    skip_unknown_contigs: Annotated[
        bool, typer.Option("--skip-unknown-contigs", help="Records on contigs the genome lacks get FILTER "
                           "MXDNA_UNKNOWN_CONTIG (else they are an error).", rich_help_panel=INPUT_PANEL)
    ] = False,
    window: LmWindowOpt = None,
    classifier_window: Annotated[
        int | None,
        typer.Option("--classifier-window", min=1, help="Classifier window, centred on the variant.",
                     rich_help_panel=WINDOW_PANEL, show_default="the classifier's training length (its model card)"),
    ] = None,
    batch_tokens: BatchTokensOpt = engine.DEFAULT_BATCH_TOKENS,
    model: ClassifierOpt = None,
    label: LabelOpt = engine.PROMOTER_LABEL,
    lm: LmOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = Dtype.float32,
    compile: CompileOpt = False,
    threads: ThreadsOpt = None,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score the variants of a VCF with the masked LM (and a classifier), as INFO fields.

    Every ALT of SNVs, MNVs and indels up to 50 bp (REF and ALT at most 51 bp) is scored in windows
    centred on it: [cyan]MXDNA_LLR[/cyan] log P(alt) - log P(ref) with the differing bases masked
    (indels: pseudo-log-likelihood difference over the alleles and 5 bases each side),
    [cyan]MXDNA_EMB[/cyan] the cosine distance of the pooled embeddings, [cyan]MXDNA_DPROB[/cyan] a
    classifier's probability change. Symbolic and longer alleles get FILTER MXDNA_SKIPPED; every
    input record is kept, in input order. Cost per SNV and strand: 3 LM windows (+2 classifier
    windows); per indel, one LM window per base of the alleles plus 20.
    """
    from mxdna_cli.engine.alleles import SCORE_NAMES, VariantSettings
    from mxdna_cli.engine.variants import output_kind
    from mxdna_cli.engine.variants import score_variants as run

    if genome is None:
        raise UsageError("--genome GENOME is required (the FASTA the VCF's REF alleles come from)")
    kind = output_kind(output)
    wanted = tuple(x.strip().lower() for x in scores.split(",") if x.strip()) if scores is not None else \
        ("llr", "emb") + (("dprob",) if model is not None else ())
    unknown = [x for x in wanted if x not in SCORE_NAMES]
    if unknown or not wanted:
        raise UsageError(f"--scores {scores}: choose from {', '.join(SCORE_NAMES)}")
    if "dprob" in wanted and model is None:
        raise UsageError("--scores dprob needs a classifier: pass --model CLASSIFIER")
    outputs = {"--output": output}
    if kind == "vcf.gz":
        outputs["--output (its .tbi index)"] = output + ".tbi"
    check_paths(outputs, variants, variants + ".tbi", variants + ".csi", genome, bed, lm, model)
    if resume and output == "-":
        raise UsageError("--resume needs -o FILE (an output on stdout cannot be resumed)")
    reporter = StderrReporter(quiet)
    loaded_lm, clf, label_index = _load(lm, model, label, "llr" in wanted or "emb" in wanted, device, dtype, compile,
                                        threads, reporter)
    settings = VariantSettings(output=output, scores=wanted, strand=strand.value, window=window,
                               classifier_window=classifier_window, label=label, label_index=label_index,
                               regions=list(region or []), bed=bed, strict=strict,
                               skip_unknown_contigs=skip_unknown_contigs, batch_tokens=batch_tokens, resume=resume)
    summary = run(variants, genome, loaded_lm, clf, settings, reporter)
    report("score-variants", summary, quiet, what="variant allele")


@commands.command(
    "ism",
    epilog=example(
        "mxdna ism genome.fa.gz --region chr1:1,000,001-1,000,300 -m promoter-human -o ism.tsv --plot ism.png",
        "mxdna ism promoter.fa -o ism.bw --value mean",
    ),
)
def ism(
    fasta: Annotated[str | None, typer.Argument(metavar="[FASTA]", help="Indexed FASTA (or give --genome); "
                                                "without --region it must hold one record.", show_default=False)] = None,
    genome: GenomeOpt = None,
    region: Annotated[
        str | None,
        typer.Option("--region", "-r", metavar="CHR:FROM-TO", help="The region to mutate (1-based, inclusive).",
                     rich_help_panel=INPUT_PANEL, show_default="the FASTA's one record"),
    ] = None,
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="Per base: TSV (chrom, pos, ref, delta_A..delta_T, max_abs, mean; '-' = "
                     "stdout) or bigWig (.bw, .bigwig: the --value).", rich_help_panel=OUTPUT_PANEL),
    ] = "-",
    plot: Annotated[
        str | None,
        typer.Option("--plot", metavar="PNG", help="A PNG of the region: the sequence as a logo scaled by each base's "
                     "importance (-mean change), over a heatmap of every change (needs matplotlib).",
                     rich_help_panel=OUTPUT_PANEL, show_default=False),
    ] = None,
    value: Annotated[
        str, typer.Option("--value", help="The bigWig's value: max-abs (largest absolute change) or mean (mean "
                          "change).", rich_help_panel=OUTPUT_PANEL)
    ] = "max-abs",
    strand: StrandOpt = Strand.forward,
    window: LmWindowOpt = None,
    batch_tokens: BatchTokensOpt = engine.DEFAULT_BATCH_TOKENS,
    model: ClassifierOpt = None,
    label: LabelOpt = engine.PROMOTER_LABEL,
    lm: LmOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = Dtype.float32,
    compile: CompileOpt = False,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """In-silico saturation mutagenesis: every base of a region changed to each of the three others.

    With [cyan]--model CLASSIFIER[/cyan] each mutant region is classified whole: the change in its
    probability; cost 1 + 3 x L windows of the region's L bases (a 300 bp promoter: 901), times 2
    with --strand both. Without, the masked LM: each base masked in a window centred on it (genome
    context beyond the region) gives all three substitutions' log P(alt) - log P(ref) at once; cost
    L windows of --window bases (times 2 with --strand both). Per base, the importance is the largest
    absolute change and the mean change, as score-variants gives for the same SNV.
    """
    from mxdna_cli.engine.outputs import check_suffix
    from mxdna_cli.engine.ism import IsmSettings, ism_region

    if (fasta is None) == (genome is None):
        raise UsageError("give the genome once: as the FASTA argument or as --genome")
    source = fasta if fasta is not None else genome
    value_name = value.lower().replace("-", "_")
    if output != "-" and not output.lower().endswith((".tsv", ".txt", ".tab", ".bw", ".bigwig")):
        raise UsageError(f"--output {output}: name it .tsv ('-' = stdout) or .bw/.bigwig")
    check_suffix(plot, "png", "--plot")
    if plot is not None:
        require("matplotlib", "--plot")
    check_paths({"--output": output, "--plot": plot}, source, lm, model)
    reporter = StderrReporter(quiet)
    loaded_lm, clf, label_index = _load(lm, model, label, model is None, device, dtype, compile, threads, reporter)
    settings = IsmSettings(output=output, region=region, plot=plot, value=value_name, strand=strand.value,
                           window=window, label=label, label_index=label_index, batch_tokens=batch_tokens)
    summary = ism_region(source, loaded_lm, clf, settings, reporter)
    report("ism", summary, quiet, what="region")
