"""The `predict` sub-app: `mxdna predict promoter`, a classifier's probabilities per record or
region, or along the genome as a track."""

# ruff: noqa: B008 -- an option group's default is a frozen dataclass: immutable

from __future__ import annotations

from typing import Annotated

import typer

from mxdna_cli import engine
from mxdna_cli.cli.options import (
    MODEL_PANEL,
    OUTPUT_PANEL,
    WINDOW_PANEL,
    BatchTokensOpt,
    InputArg,
    InputOptions,
    ModelOptions,
    QuietOpt,
    ResumeOpt,
    check_paths,
    example,
    option_groups,
    window_option,
)
from mxdna_cli.cli.progress import StderrReporter, report
from mxdna_cli.errors import UsageError

app = typer.Typer(
    help="Predict with a fine-tuned classifier.",
    epilog=example("mxdna predict promoter candidates.fa -m my-promoter-model > predictions.tsv"),
    rich_markup_mode="rich",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command(
    "promoter",
    epilog=example(
        "mxdna predict promoter candidates.fa -m my-promoter-model > predictions.tsv",
        "mxdna predict promoter genome.fa.gz -r chr1:1-200,000 --track promoter.bw --step 50",
    ),
)
@option_groups
def promoter(
    input: InputArg,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="TSV of id, chrom, start, end, strand, probability, label.",
                     rich_help_panel=OUTPUT_PANEL, show_default="stdout"),
    ] = None,
    track: Annotated[
        str | None,
        typer.Option("--track", metavar="TRACK", help="Instead of the TSV: scan in windows and write the "
                     "probability as a track, bigWig (.bw, .bigwig) or bedGraph (.bedgraph, .bg) by the name "
                     "(each window's value on its central --step bases).",
                     rich_help_panel=OUTPUT_PANEL, show_default=False),
    ] = None,
    window: Annotated[
        int | None,
        window_option("Scan window.", show_default="the classifier's training length from its model card, else 300"),
    ] = None,
    step: Annotated[
        int, typer.Option("--step", help="Scan step (--track).", rich_help_panel=WINDOW_PANEL, min=1)
    ] = engine.DEFAULT_TRACK_STEP,
    label: Annotated[
        str, typer.Option("--label", help="Class whose probability is reported.", rich_help_panel=MODEL_PANEL)
    ] = engine.PROMOTER_LABEL,
    source: InputOptions = InputOptions(),
    batch_tokens: BatchTokensOpt = engine.DEFAULT_BATCH_TOKENS,
    model: ModelOptions = ModelOptions(),
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Promoter probability per record or region, or along the genome as a bigWig track.

    Uses a classification model ([cyan]--model[/cyan], a bundled promoter classifier, or
    $MXDNA_WEIGHTS). With [cyan]--strand both[/cyan] the probabilities of the two strands are averaged;
    without [cyan]--strand[/cyan], the strand the model card's metrics were scored on (its eval strand:
    forward for the bundled classifiers).
    """
    if track is not None and output is not None:
        raise UsageError("-o/--output (TSV) and --track (bigWig) cannot be used together; choose one")
    if track is not None:
        engine.check_track(track)
    if resume and track is None:
        raise UsageError("--resume is for --track scans (a TSV of whole records is quick to redo)")
    engine.check_suffix(output, "tsv", "--output")
    engine.check_suffix(track, "track", "--track")
    check_paths({"--output": output, "--track": track}, input, source.bed, weights=model.weights)
    settings = engine.PredictSettings(
        output=output or "-", track=track, window=window, step=step, label=label, batch_tokens=batch_tokens,
        resume=resume,
    )
    reporter = StderrReporter(quiet)
    loaded, label_index = model.load_classifier(label, reporter)
    with source.open(input, default_strand=engine.card_strand(loaded)) as inputs:
        summary = engine.predict(inputs, loaded, label_index, settings, reporter)
    report("predict promoter", summary, quiet, what="sequence")
