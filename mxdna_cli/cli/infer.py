"""The inference verbs: `embed`, `tokenize`, `windows` and `info`. Each parses its options, checks
what is cheap to check, calls one `mxdna_cli.engine` function and reports on stderr."""

# ruff: noqa: B008 -- an option group's default is a frozen dataclass: immutable

from __future__ import annotations

import json
from typing import Annotated

import typer

from mxdna_cli import engine
from mxdna_cli.cli.options import (
    OUTPUT_PANEL,
    WINDOW_PANEL,
    Format,
    InputArg,
    InputOptions,
    ModelOptions,
    OutDtype,
    Pool,
    QuietOpt,
    ResumeOpt,
    WindowOptions,
    check_paths,
    example,
    option_groups,
)
from mxdna_cli.cli.progress import PROG, StderrReporter, plural, report, say
from mxdna_cli.extras import require

commands = typer.Typer()  # merged into the top-level app by main.py


@commands.command(
    epilog=example(
        "mxdna embed genome.fa.gz --region chr1:10,001-12,000 -o emb.npy",
        "mxdna embed promoters.fa --pool none --layer 2 -o tokens.tsv",
        "zcat reads.fa.gz | mxdna embed - --strand both -o - | head",
    ),
)
@option_groups
def embed(
    input: InputArg,
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="Output file (.npy or .tsv); '-' = TSV on stdout.",
                     rich_help_panel=OUTPUT_PANEL),
    ] = "-",
    format: Annotated[
        Format | None,
        typer.Option("--format", "-f", help="npy or tsv.",
                     rich_help_panel=OUTPUT_PANEL, show_default="from the output name", case_sensitive=False),
    ] = None,
    pool: Annotated[
        Pool,
        typer.Option("--pool", "-p", help="mean or max over a record's tokens (each token once, however the "
                     "windows overlap), cls (the [CLS] state averaged over windows), or none (one row per token, "
                     "with coordinates).", rich_help_panel=OUTPUT_PANEL, case_sensitive=False),
    ] = Pool.mean,
    layer: Annotated[
        int | None,
        typer.Option("--layer", "-l", help="Token layer: 0 = tokenizer output, N = after token layer N; the last "
                     "(default) passes through the final LayerNorm; negative counts from the end.",
                     rich_help_panel=OUTPUT_PANEL, show_default=False),
    ] = None,
    dtype_out: Annotated[
        OutDtype,
        typer.Option("--dtype-out", help="Value type of an NPY matrix.", rich_help_panel=OUTPUT_PANEL,
                     case_sensitive=False),
    ] = OutDtype.float32,
    source: InputOptions = InputOptions(),
    windowing: WindowOptions = WindowOptions(),
    model: ModelOptions = ModelOptions(),
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Embed each record or region (or each token) with the model's token states.

    NPY output comes with [cyan]OUT.index.tsv[/cyan] (one line per row: name, chrom, start, end, strand,
    n_fraction, soft_masked_fraction) and [cyan]OUT.npy.json[/cyan] (model, SHA-256, window, stride,
    pooling, strand, dtype, layer). With [cyan]--pool none[/cyan] the rows are tokens: the index holds
    record, chrom, centre, unit_start, unit_end, strand, and [cyan]OUT.records.tsv[/cyan] gives each
    record's first row and token count. TSV output starts with [cyan]#key=value[/cyan] lines.
    """
    reporter = StderrReporter(quiet)
    settings = engine.EmbedSettings(
        output=output, fmt=format.value if format else None, pool=pool.value, layer=layer,
        dtype_out=dtype_out.value, window=windowing.window, stride=windowing.stride,
        batch_tokens=windowing.batch_tokens, resume=resume,
    )
    # validate the cheap things before loading a model
    engine.output_format(output, settings.fmt)
    engine.resolve_stride(windowing.window, windowing.stride)
    engine.check_pool_strand(pool.value, source.strand_or())
    check_paths({"--output": output}, input, source.bed, weights=model.weights)
    with source.open(input) as inputs:
        summary = engine.embed(inputs, model.load(reporter), settings, reporter)
    report("embed", summary, quiet)


@commands.command(
    epilog=example(
        "mxdna tokenize genome.fa.gz -r chr1:1-5000 --export-bed units.bed --tokens tokens.bed --plot lengths.png",
        "cat reads.fa | mxdna tokenize - --export-bed - | head",
    ),
)
@option_groups
def tokenize(
    input: InputArg,
    export_bed: Annotated[
        str | None,
        typer.Option("--export-bed", "-o", metavar="BED",
                     help="Basic units as BED6: name = <length>nt_e<expert>, score = round(1000 x gate probability). "
                     "'-' = stdout.",
                     rich_help_panel=OUTPUT_PANEL, show_default="stdout when no other output is asked for"),
    ] = None,
    tokens: Annotated[
        str | None,
        typer.Option("--tokens", metavar="BED",
                     help="Assembled tokens as BED12: blocks = the basic units the token's deformable sampling "
                     "reads (weight > --min-weight) plus its own; name = token index, score = "
                     "min(1000, round(1000 x largest weight)).", rich_help_panel=OUTPUT_PANEL, show_default=False),
    ] = None,
    summary: Annotated[
        str | None,
        typer.Option("--summary", metavar="TSV", help="Unit-length counts as TSV.",
                     rich_help_panel=OUTPUT_PANEL, show_default="a table on stderr"),
    ] = None,
    plot: Annotated[
        str | None,
        typer.Option("--plot", metavar="PNG", help="Histogram of unit lengths as PNG.", rich_help_panel=OUTPUT_PANEL,
                     show_default=False),
    ] = None,
    min_weight: Annotated[
        float,
        typer.Option("--min-weight", help="Smallest sampling weight (modulation x interpolation) that puts a unit "
                     "in a token's footprint.", rich_help_panel=OUTPUT_PANEL),
    ] = engine.DEFAULT_MIN_WEIGHT,
    source: InputOptions = InputOptions(),
    windowing: WindowOptions = WindowOptions(),
    model: ModelOptions = ModelOptions(),
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export the learnt tokenization: basic units (BED6) and assembled tokens (BED12).

    Units of overlapping windows are joined at a unit boundary both windows share, so the units
    tile every record exactly. Units are one strand's reading: use [cyan]--strand reverse[/cyan] for the other.
    """
    engine.check_one_strand(source.strand_or())
    if export_bed is None and tokens is None and summary is None and plot is None:
        export_bed = "-"
    settings = engine.TokenizeSettings(
        units=export_bed, tokens=tokens, summary=summary, plot=plot, min_weight=min_weight,
        window=windowing.window, stride=windowing.stride, batch_tokens=windowing.batch_tokens, resume=resume,
    )
    engine.resolve_stride(windowing.window, windowing.stride)
    if plot is not None:
        require("matplotlib", "--plot")
    for path, kind, option in ((export_bed, "bed", "--export-bed"), (tokens, "bed", "--tokens"),
                               (summary, "tsv", "--summary"), (plot, "png", "--plot")):
        engine.check_suffix(path, kind, option)
    check_paths({"--export-bed": export_bed, "--tokens": tokens, "--summary": summary, "--plot": plot},
                input, source.bed, weights=model.weights)
    reporter = StderrReporter(quiet)
    with source.open(input) as inputs:
        result = engine.tokenize(inputs, model.load(reporter), settings, reporter)
    if not quiet and summary is None:
        counts = result.extra["length_counts"]
        total = result.extra["units"]
        say("length\tunits\tfraction")
        for length in sorted(counts):
            say(f"{length}\t{counts[length]}\t{counts[length] / total:.4f}")
        say(f"mean unit length {result.extra['mean_length']:.3f} nt over {total:,} units")
    report("tokenize", result, quiet)


@commands.command(
    epilog=example(
        "mxdna windows genome.fa.gz --window 1024 --stride 768 | head",
        "mxdna windows genes.fa --bed promoters.bed --strand both -o plan.tsv",
    ),
)
@option_groups
def windows(
    input: InputArg,
    output: Annotated[
        str, typer.Option("--output", "-o", help="TSV of the windows; '-' = stdout.", rich_help_panel=OUTPUT_PANEL)
    ] = "-",
    step: Annotated[
        int | None,
        typer.Option("--step", min=1, help="Show a track scan's windows instead (those of `predict --track --step N`, "
                     "with --window the classifier's window): keep = the central N nt each value covers.",
                     rich_help_panel=WINDOW_PANEL),
    ] = None,
    source: InputOptions = InputOptions(),
    windowing: WindowOptions = WindowOptions(),
    quiet: QuietOpt = False,
) -> None:
    """Show the window plan (record, chrom, strand, start, end, keep_start, keep_end) without running the model.

    Coordinates are forward-strand, 0-based half-open; each window's keep interval is the part its
    outputs are used for (tiled windows: the centre crop that is stitched; with --step, scan
    windows: the span a track value covers). The plan's size (records, windows, nucleotides, input positions = tokens
    that --batch-tokens budgets, batches) goes to stderr.
    """
    engine.check_suffix(output, "tsv", "--output")
    check_paths({"--output": output}, input, source.bed)
    with source.open(input) as inputs:
        summary = engine.window_plan(inputs, output, window=windowing.window, stride=windowing.stride, step=step,
                                     batch_tokens=windowing.batch_tokens)
    if not quiet:
        say(
            f"{PROG} windows: {plural(summary.targets, 'sequence')}, {plural(summary.windows, 'window')}, "
            f"{summary.nucleotides:,} nt, {summary.extra['positions']:,} input positions (the tokens that "
            f"--batch-tokens budgets), ~{plural(summary.extra['batches'], 'batch')} of <= {windowing.batch_tokens:,}"
        )


@commands.command(epilog=example("mxdna info", "mxdna info --json --verify | python -m json.tool"))
def info(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Recompute each model's SHA-256.")] = False,
) -> None:
    """Bundled models (task, what each is for, size, SHA-256, trained or not), the device found, and versions."""
    models = engine.describe_models(verify=verify)
    env = engine.environment()
    if as_json:
        print(json.dumps({"models": models, "environment": env}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=200)  # a pipe or a file: do not fold the table to 80 columns
    if models:
        table = Table(title="Bundled models", title_justify="left")
        for column in ("name", "task", "for", "preset / config", "parameters", "sha256", "trained"):
            table.add_column(column, no_wrap=column in ("name", "parameters", "sha256"))
        for row in models:
            sha = row["sha256"][:16] + "…"
            if verify:
                sha += " ok" if row["sha256_ok"] else " MISMATCH"
            task = row["task"] + (f" ({', '.join(row['labels'])})" if row["labels"] else "")
            use = row["purpose"] + "".join(f"; the default of `predict {label}`" for label in row["default_for"])
            table.add_row(row["name"], task, use, f"{row['preset']}: {row['config']}", f"{row['parameters']:,}", sha,
                          "yes" if row["trained"] else "no (random weights)")
        console.print(table)
    else:
        console.print("Bundled models: none (looked in " + ", ".join(env["weights_dirs"]) + ")", markup=False)
    cuda = ", ".join(env["cuda"]) if env["cuda"] else "none"
    console.print(f"Device: {env['default_device']} (CPU threads {env['cpu_threads']} of {env['cpu_cores']} cores; "
                  f"CUDA: {cuda})", markup=False)
    console.print("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), markup=False)
