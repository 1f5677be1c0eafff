"""The `mxdna` command line: thin Typer verbs over `mxdna_cli.engine` and `mxdna_cli.train`.

Each verb parses its options, calls one library function and reports on stderr; data goes only to
the output files or stdout. Expected failures (`MxdnaError`) and Typer's own usage errors become
one line, `mxdna: error: ...`, with exit code 1 (bad data) or 2 (bad usage), in one place:
`MxdnaGroup.main`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import signal
import sys
import time
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Optional

import typer
from typer._click import exceptions as click_exceptions
from typer.core import TyperArgument, TyperGroup, TyperOption

from mxdna_cli import __version__
from mxdna_cli import engine
from mxdna_cli.errors import MxdnaError, UsageError
from mxdna_cli.extras import require

PROG = "mxdna"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(message: str) -> str:
    return f"{PROG}: error: {_one_line(message)}"


# Options that also work as flags: alone (at the end, or before another option) they take this value.
OPTIONAL_VALUES = {"--export-bed": "-"}


def optional_values(args: list[str]) -> list[str]:
    """`mxdna tokenize genome.fa --export-bed` (as the design card writes it) means BED6 on stdout;
    with a value it is that file. Click has no optional option values, so the flag form gets its
    value here, before parsing."""
    result = []
    for index, arg in enumerate(args):
        result.append(arg)
        if arg in OPTIONAL_VALUES:
            following = args[index + 1] if index + 1 < len(args) else None
            if following is None or (following.startswith("-") and following != "-"):
                result.append(OPTIONAL_VALUES[arg])
    return result


class Interrupted(Exception):
    """A verb stopped by SIGINT or SIGTERM, after its outputs were cleaned up (exit 128 + signal).

    Not a KeyboardInterrupt: click would turn that into an Abort and print a blank line first.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signal(KeyboardInterrupt):
    """Raised by the signal handlers below, so that every `with` block and writer unwinds (and
    removes its temporary files) exactly as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_signal(signum: int, frame: Any) -> None:
    raise _Signal(signum)


@contextlib.contextmanager
def interrupts_unwind():
    """SIGTERM (timeout, SLURM, container runtimes) is handled like SIGINT; a shell starts background
    jobs with SIGINT ignored, which Python would keep, so both are set here."""
    try:
        previous = {sig: signal.signal(sig, _raise_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread (e.g. called from a library user's worker): leave them
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class MxdnaGroup(TyperGroup):
    """The top-level group: maps every expected failure to one stderr line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            with interrupts_unwind():
                return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            raise Interrupted(getattr(interrupt, "signum", signal.SIGINT)) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any) -> Any:
        args = optional_values(list(sys.argv[1:] if args is None else args))
        from mxdna_cli.engine.outputs import set_command_line

        set_command_line(args)
        try:
            result = super().main(
                args=args, prog_name=prog_name or PROG, complete_var=complete_var, standalone_mode=False, **extra
            )
            code = result if isinstance(result, int) else 0
        except Interrupted as interrupted:
            print(f"{PROG}: interrupted", file=sys.stderr)
            code = 128 + interrupted.signum
        except MxdnaError as error:
            print(error_line(str(error)), file=sys.stderr)
            code = error.exit_code
        except click_exceptions.NoArgsIsHelpError as error:
            code = error.exit_code  # the help text was printed when the error was made
        except click_exceptions.ClickException as error:
            message = error.format_message()
            context = getattr(error, "ctx", None)
            if isinstance(error, click_exceptions.UsageError) and context is not None:
                message += f" (see '{context.command_path} --help')"
            print(error_line(message), file=sys.stderr)
            code = error.exit_code
        except typer.Abort:
            print(f"{PROG}: interrupted", file=sys.stderr)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code)


_READABLE_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "int range": "INTEGER",
                   "float range": "FLOAT", "list[str]": "TEXT", "Path": "PATH"}


def _readable_type(self: Any, ctx: Any) -> str | None:
    """The type column of `--help`: nothing for flags and named arguments, the choices of a choice
    option (`forward|reverse|both`), else the plain word samtools-style help uses (TEXT, INTEGER),
    not typer's `<bool>` or `<list[str]>`. Ranges are shown beside it by typer itself."""
    if getattr(self, "is_flag", False) or (isinstance(self, TyperArgument) and self.metavar is not None):
        return None
    if self.metavar is not None:
        return self.metavar
    label = self.display_type(ctx).strip("<>")
    return label if "|" in label else _READABLE_TYPES.get(label, label.upper())


for _parameter in (TyperOption, TyperArgument):
    if hasattr(_parameter, "display_type_rich"):  # typer's rich help (>= 0.25) asks each parameter for its type
        _parameter.display_type_rich = _readable_type


def _example(*lines: str) -> str:
    """An epilog with a worked example (rich markup: one line per paragraph)."""
    body = "\n\n".join(f"  [bold]$[/bold] {line}" for line in lines)
    return f"[bold]Example:[/bold]\n\n{body}"


app = typer.Typer(
    cls=MxdnaGroup,
    epilog=_example("mxdna info", "mxdna tokenize genome.fa.gz -r chr1:1-5000 --export-bed units.bed",
                    "mxdna embed genome.fa.gz --bed genes.bed -o genes.npy"),
    name=PROG,
    help="MxDNA, a DNA language model that learns its own tokenization: embeddings, learnt tokens, "
    "promoter predictions and pretraining, on a plain CPU.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
predict_app = typer.Typer(
    help="Predict with a fine-tuned classifier.",
    epilog=_example("mxdna predict promoter candidates.fa -m my-promoter-model > predictions.tsv"),
    rich_markup_mode="rich",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(predict_app, name="predict")


def _version(value: bool) -> None:
    if value:
        print(f"mxdna_cli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """MxDNA on the command line."""


# ---------------------------------------------------------------------------------------------
# Choices and shared options


def _choices(name: str, values: Iterable[str]) -> Any:
    """A str Enum of an option's choices, made from the engine's list so that the two never differ."""
    return Enum(name, [(value, value) for value in values], type=str)


Strand = _choices("Strand", engine.STRANDS)
Pool = _choices("Pool", engine.POOLINGS)
Format = _choices("Format", engine.FORMATS)
Dtype = _choices("Dtype", engine.DTYPE_NAMES)
OutDtype = _choices("OutDtype", engine.OUT_DTYPES)
Preset = _choices("Preset", ("tiny", "small", "base"))
Pooling = _choices("Pooling", ("decoder", "mean"))
ClassWeighting = _choices("ClassWeighting", ("balanced", "none"))


INPUT_PANEL = "Input"
WINDOW_PANEL = "Windows and batching"
MODEL_PANEL = "Model and device"
OUTPUT_PANEL = "Output"

InputArg = Annotated[
    str,
    typer.Argument(
        metavar="INPUT",
        help="FASTA file: plain, bgzip (with .fai/.gzi) or gzip; '-' reads stdin.",
        show_default=False,
    ),
]
RegionOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--region", "-r", metavar="CHR:FROM-TO",
        help="Region, samtools style (1-based, inclusive); repeatable. Needs an indexed FASTA.",
        rich_help_panel=INPUT_PANEL, show_default=False,
    ),
]
BedOpt = Annotated[
    Optional[str],
    typer.Option(
        "--bed", "-b", metavar="BED",
        help="Regions from a BED file (0-based); its name and strand columns are honoured ('-' = the model "
        "reads the reverse complement; outputs stay in forward coordinates).",
        rich_help_panel=INPUT_PANEL, show_default=False,
    ),
]
StrandOpt = Annotated[
    Strand,
    typer.Option(
        "--strand", "-s",
        help="Strand the model reads, relative to the BED strand: forward, reverse (the reverse complement) "
        "or both (the average of the two; twice the work).",
        rich_help_panel=INPUT_PANEL, case_sensitive=False,
    ),
]
WindowOpt = Annotated[
    int,
    typer.Option("--window", "-w", help="Window length in nucleotides.", rich_help_panel=WINDOW_PANEL, min=1),
]
StrideOpt = Annotated[
    Optional[int],
    typer.Option(
        "--stride", help="Start-to-start distance of windows.",
        rich_help_panel=WINDOW_PANEL, show_default="3/4 of the window", min=1,
    ),
]
BatchTokensOpt = Annotated[
    int,
    typer.Option(
        "--batch-tokens", help="Input positions per batch; windows are sorted by length and packed up to it.",
        rich_help_panel=WINDOW_PANEL, min=1,
    ),
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--weights", "--model", "-m", metavar="MODEL",
        help="Model folder or bundled model name.",
        rich_help_panel=MODEL_PANEL, show_default="$MXDNA_WEIGHTS, else the bundled default",
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=MODEL_PANEL),
]
DtypeOpt = Annotated[
    Dtype,
    typer.Option(
        "--dtype", help="Compute precision (autocast); float16 needs CUDA.", rich_help_panel=MODEL_PANEL,
        case_sensitive=False,
    ),
]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--threads", "-t", help="CPU threads for torch.", rich_help_panel=MODEL_PANEL,
        show_default="torch's choice", min=1,
    ),
]
ResumeOpt = Annotated[
    bool,
    typer.Option("--resume", help="Continue an interrupted run of the same command (same options and inputs) "
                 "from the progress journal kept beside its output (.OUTPUT.resume/); the final files are those "
                 "of an uninterrupted run. Without it, an unfinished earlier run is discarded.",
                 rich_help_panel=OUTPUT_PANEL),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar, summary or warnings on stderr.")
]


@dataclass(frozen=True)
class InputOptions:
    """--region, --bed, --strand: what the model reads of the INPUT FASTA."""

    region: RegionOpt = None
    bed: BedOpt = None
    strand: StrandOpt = Strand.forward

    def open(self, path: str) -> engine.Inputs:
        """The targets of the run (use them in a `with` block)."""
        return engine.Inputs(engine.InputSpec(path, regions=list(self.region or []), bed=self.bed,
                                              strand=self.strand.value))


@dataclass(frozen=True)
class WindowOptions:
    """--window, --stride, --batch-tokens: how targets are cut into windows and windows into batches."""

    window: WindowOpt = engine.DEFAULT_WINDOW
    stride: StrideOpt = None
    batch_tokens: BatchTokensOpt = engine.DEFAULT_BATCH_TOKENS


@dataclass(frozen=True)
class ModelOptions:
    """--weights/--model, --device, --dtype, --threads: which model runs, where and in what precision."""

    weights: WeightsOpt = None
    device: DeviceOpt = "auto"
    dtype: DtypeOpt = Dtype.float32
    threads: ThreadsOpt = None

    def load(self, reporter: engine.Reporter) -> engine.LoadedModel:
        return engine.load(self.weights, device=self.device, dtype=self.dtype.value, threads=self.threads,
                           reporter=reporter)

    def load_classifier(self, label: str, reporter: engine.Reporter) -> tuple[engine.LoadedModel, int]:
        return engine.load_classifier(self.weights, label=label, device=self.device, dtype=self.dtype.value,
                                      threads=self.threads, reporter=reporter)


def model_files_of(weights: str | None) -> list[str]:
    """The files of a model folder given by path (outputs must never overwrite them)."""
    if weights is None or not Path(weights).is_dir():
        return []
    return [str(Path(weights) / name) for name in ("model.safetensors", "model.json", "README.md")]


def check_paths(outputs: dict[str, str | None], *inputs: str | None, weights: str | None = None) -> None:
    """Usage errors before any work: an output that is an input, or two outputs on one path."""
    engine.check_output_paths(outputs, [*inputs, *model_files_of(weights)])


def option_groups(verb: Callable[..., Any]) -> Callable[..., Any]:
    """Let a verb take the option groups above: a parameter typed with a group (its default: the
    group's defaults) stands, on the command line, for the group's options, in their order, at its
    place, and reaches the verb as one object.

    Typer has no option groups; it sees the wrapper's signature, where each group is spelt out.
    """
    hints = typing.get_type_hints(verb, include_extras=True)
    groups: dict[str, Any] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in inspect.signature(verb).parameters.values():
        kind = hints[parameter.name]
        if dataclasses.is_dataclass(kind):
            groups[parameter.name] = kind
            field_hints = typing.get_type_hints(kind, include_extras=True)
            parameters += [
                inspect.Parameter(item.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=item.default,
                                  annotation=field_hints[item.name])
                for item in dataclasses.fields(kind)
            ]
        else:
            parameters.append(parameter.replace(annotation=kind))

    @functools.wraps(verb)
    def run(**values: Any) -> Any:
        for name, group in groups.items():
            values[name] = group(**{item.name: values.pop(item.name) for item in dataclasses.fields(group)})
        return verb(**values)

    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return run


# ---------------------------------------------------------------------------------------------
# Reporting on stderr


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StderrReporter(engine.Reporter):
    """A rich progress bar on stderr (only on a terminal), warnings as one line each."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress = None
        self._task = None

    def start(self, total: int | None, description: str) -> None:
        if self.quiet:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.text import Text

        console = Console(stderr=True)
        if not console.is_terminal:
            return

        class Rate(ProgressColumn):
            def render(self, task) -> Text:
                speed = task.finished_speed or task.speed
                return Text("-- nt/s" if speed is None else f"{speed:,.0f} nt/s", style="cyan")

        class Done(ProgressColumn):
            def render(self, task) -> Text:
                total = "?" if task.total is None else f"{int(task.total):,}"
                return Text(f"{int(task.completed):,}/{total} nt")

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), Done(), Rate(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, nucleotides: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, nucleotides)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def warn(self, message: str) -> None:
        if not self.quiet:
            _stderr(f"{PROG}: warning: {_one_line(message)}")


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "es" if word.endswith("ch") else "s")


def _report(verb: str, summary: engine.Summary, quiet: bool, what: str = "record") -> None:
    if quiet:
        return
    outputs = ", ".join("stdout" if o == "-" else o for o in summary.outputs)
    _stderr(
        f"{PROG} {verb}: {_plural(summary.targets, what)}, {summary.nucleotides:,} nt, "
        f"{_plural(summary.windows, 'window')} "
        f"in {summary.seconds:.1f} s ({summary.rate:,.0f} nt/s) -> {outputs}"
    )


# ---------------------------------------------------------------------------------------------
# embed


@app.command(
    epilog=_example(
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
        Optional[Format],
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
        Optional[int],
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
    engine.check_pool_strand(pool.value, source.strand.value)
    check_paths({"--output": output}, input, source.bed, weights=model.weights)
    with source.open(input) as inputs:
        summary = engine.embed(inputs, model.load(reporter), settings, reporter)
    _report("embed", summary, quiet)


# ---------------------------------------------------------------------------------------------
# tokenize


@app.command(
    epilog=_example(
        "mxdna tokenize genome.fa.gz -r chr1:1-5000 --export-bed units.bed --tokens tokens.bed --plot lengths.png",
        "cat reads.fa | mxdna tokenize - --export-bed - | head",
    ),
)
@option_groups
def tokenize(
    input: InputArg,
    export_bed: Annotated[
        Optional[str],
        typer.Option("--export-bed", "-o", metavar="BED",
                     help="Basic units as BED6: name = <length>nt_e<expert>, score = round(1000 x gate probability). "
                     "'-' = stdout.",
                     rich_help_panel=OUTPUT_PANEL, show_default="stdout when no other output is asked for"),
    ] = None,
    tokens: Annotated[
        Optional[str],
        typer.Option("--tokens", metavar="BED",
                     help="Assembled tokens as BED12: blocks = the basic units the token's deformable sampling "
                     "reads (weight > --min-weight) plus its own; name = token index, score = "
                     "min(1000, round(1000 x largest weight)).", rich_help_panel=OUTPUT_PANEL, show_default=False),
    ] = None,
    summary: Annotated[
        Optional[str],
        typer.Option("--summary", metavar="TSV", help="Unit-length counts as TSV.",
                     rich_help_panel=OUTPUT_PANEL, show_default="a table on stderr"),
    ] = None,
    plot: Annotated[
        Optional[str],
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
    engine.check_one_strand(source.strand.value)
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
        _stderr("length\tunits\tfraction")
        for length in sorted(counts):
            _stderr(f"{length}\t{counts[length]}\t{counts[length] / total:.4f}")
        _stderr(f"mean unit length {result.extra['mean_length']:.3f} nt over {total:,} units")
    _report("tokenize", result, quiet)


# ---------------------------------------------------------------------------------------------
# predict promoter


@predict_app.command(
    "promoter",
    epilog=_example(
        "mxdna predict promoter candidates.fa -m my-promoter-model > predictions.tsv",
        "mxdna predict promoter genome.fa.gz -r chr1:1-200,000 --track promoter.bw --step 50",
    ),
)
@option_groups
def promoter(
    input: InputArg,
    output: Annotated[
        Optional[str],
        typer.Option("--output", "-o", help="TSV of id, chrom, start, end, strand, probability, label.",
                     rich_help_panel=OUTPUT_PANEL, show_default="stdout"),
    ] = None,
    track: Annotated[
        Optional[str],
        typer.Option("--track", metavar="TRACK", help="Instead of the TSV: scan in windows and write the "
                     "probability as a track, bigWig (.bw, .bigwig) or bedGraph (.bedgraph, .bg) by the name "
                     "(each window's value on its central --step bases).",
                     rich_help_panel=OUTPUT_PANEL, show_default=False),
    ] = None,
    window: Annotated[
        Optional[int],
        typer.Option("--window", "-w", help="Scan window.", rich_help_panel=WINDOW_PANEL,
                     show_default="the classifier's training length from its model card, else 300", min=1),
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
    $MXDNA_WEIGHTS). With [cyan]--strand both[/cyan] the probabilities of the two strands are averaged.
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
    with source.open(input) as inputs:
        loaded, label_index = model.load_classifier(label, reporter)
        summary = engine.predict(inputs, loaded, label_index, settings, reporter)
    _report("predict promoter", summary, quiet, what="sequence")


# ---------------------------------------------------------------------------------------------
# windows


@app.command(
    epilog=_example(
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
    source: InputOptions = InputOptions(),
    windowing: WindowOptions = WindowOptions(),
    quiet: QuietOpt = False,
) -> None:
    """Show the window plan (record, chrom, strand, start, end, keep_start, keep_end) without running the model.

    Coordinates are forward-strand, 0-based half-open; each window's keep interval is the part its
    outputs are used for. The plan's size (records, windows, nucleotides, input positions = tokens
    that --batch-tokens budgets, batches) goes to stderr.
    """
    engine.check_suffix(output, "tsv", "--output")
    check_paths({"--output": output}, input, source.bed)
    with source.open(input) as inputs:
        summary = engine.window_plan(inputs, output, window=windowing.window, stride=windowing.stride,
                                     batch_tokens=windowing.batch_tokens)
    if not quiet:
        _stderr(
            f"{PROG} windows: {_plural(summary.targets, 'sequence')}, {_plural(summary.windows, 'window')}, "
            f"{summary.nucleotides:,} nt, {summary.extra['positions']:,} input positions (the tokens that "
            f"--batch-tokens budgets), ~{_plural(summary.extra['batches'], 'batch')} of <= {windowing.batch_tokens:,}"
        )


# ---------------------------------------------------------------------------------------------
# info


@app.command(epilog=_example("mxdna info", "mxdna info --json --verify | python -m json.tool"))
def info(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Recompute each model's SHA-256.")] = False,
) -> None:
    """Bundled models (task, size, SHA-256, trained or not), the device found, and versions."""
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
        for column in ("name", "task", "preset / config", "parameters", "sha256", "trained"):
            table.add_column(column, no_wrap=column in ("name", "parameters", "sha256"))
        for row in models:
            sha = row["sha256"][:16] + "…"
            if verify:
                sha += " ok" if row["sha256_ok"] else " MISMATCH"
            task = row["task"] + (f" ({', '.join(row['labels'])})" if row["labels"] else "")
            table.add_row(row["name"], task, f"{row['preset']}: {row['config']}", f"{row['parameters']:,}", sha,
                          "yes" if row["trained"] else "no (random weights)")
        console.print(table)
    else:
        console.print("Bundled models: none (looked in " + ", ".join(env["weights_dirs"]) + ")", markup=False)
    cuda = ", ".join(env["cuda"]) if env["cuda"] else "none"
    console.print(f"Device: {env['default_device']} (CPU threads {env['cpu_threads']} of {env['cpu_cores']} cores; "
                  f"CUDA: {cuda})", markup=False)
    console.print("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), markup=False)


# ---------------------------------------------------------------------------------------------
# pretrain and evaluate


def _heldout(items: list[str] | None) -> list | None:
    """--heldout RECORD or FILE_GLOB//RECORD_GLOB into PretrainSettings.heldout entries."""
    if not items:
        return None
    result: list = []
    for item in items:
        if "//" in item:
            file_glob, record_glob = item.split("//", 1)
            if not file_glob or not record_glob:
                raise UsageError(f"--heldout {item}: expected RECORD or FILE_GLOB//RECORD_GLOB")
            result.append([file_glob, record_glob])
        else:
            result.append(item)
    return result


@app.command(
    epilog=_example(
        "mxdna pretrain genomes/ --out runs/small --preset small --steps 20000 "
        "--plot runs/small/loss.png --export weights/my-model",
        "mxdna pretrain genome.fa --out runs/tiny --preset tiny --steps 200 --window 256",
    ),
)
def pretrain(
    inputs: Annotated[
        list[str],
        typer.Argument(metavar="INPUTS...", help="FASTA files or folders (searched for .fa/.fasta/.fna/.fas[.gz]).",
                       show_default=False),
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", metavar="RUN_DIR", help="Run folder: checkpoint.pt, log.tsv, "
                          "settings.json. A folder with a checkpoint is resumed.", show_default=False)
    ],
    preset: Annotated[Preset, typer.Option("--preset", help="Model size (presets of mxdna_cli.model.config).")] = Preset.small,
    window: Annotated[int, typer.Option("--window", "-w", help="Nucleotides per training window.", min=8)] = 510,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per step (per accumulation).", min=1)] = 16,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Batches accumulated per step.", min=1)] = 1,
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps in total.", min=1)] = 20000,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW; cosine decay).")] = 5e-4,
    warmup: Annotated[int, typer.Option("--warmup", help="Linear warm-up steps.", min=0)] = 500,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sampling, masking and initialisation.")] = 0,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Steps between validations.", min=1)] = 250,
    eval_windows: Annotated[int, typer.Option("--eval-windows", help="Held-out windows per validation.", min=1)] = 64,
    checkpoint_minutes: Annotated[
        float, typer.Option("--checkpoint-minutes", help="Minutes between checkpoints.")
    ] = 5.0,
    heldout: Annotated[
        Optional[list[str]],
        typer.Option("--heldout", metavar="RECORD|FILE_GLOB//RECORD_GLOB", help="Held-out validation sequences; "
                     "repeatable.", show_default="D. melanogaster chr4 and H. pylori Puno120"),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", "-t", help="CPU threads for torch.", min=1)] = 2,
    device: DeviceOpt = "auto",
    restart: Annotated[bool, typer.Option("--restart", help="Start afresh even if RUN_DIR has a checkpoint.")] = False,
    init_from: Annotated[
        Optional[str],
        typer.Option("--init-from", metavar="MODEL", help="Start from a saved masked-LM model's weights (fresh "
                     "optimiser), e.g. when a run's checkpoint is lost. Ignored when resuming.", show_default=False),
    ] = None,
    plot: Annotated[
        Optional[str], typer.Option("--plot", metavar="PNG", help="Write the loss/accuracy curves at the end.",
                                    show_default=False)
    ] = None,
    export: Annotated[
        Optional[str],
        typer.Option("--export", metavar="FOLDER", help="Write the final model as a model folder (for --weights).",
                     show_default=False),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Pretrain a masked-LM MxDNA model; stop at any time (Ctrl-C) and rerun to resume exactly.

    Validation = masked-nucleotide accuracy on held-out sequences (see --heldout).
    """
    from mxdna_cli.train.pretrain import PretrainSettings, Pretrainer, export_checkpoint, plot_log

    values = dict(
        inputs=list(inputs), out_dir=out, preset=preset.value, window=window, batch_size=batch_size, grad_accum=grad_accum,
        steps=steps, lr=lr, warmup=warmup, seed=seed, eval_every=eval_every, eval_windows=eval_windows,
        checkpoint_minutes=checkpoint_minutes, threads=threads, device=device, init_from=init_from,
    )
    held = _heldout(heldout)
    if held is not None:
        values["heldout"] = held
    settings = PretrainSettings(**values)
    engine.pick_device(device)
    if plot is not None:
        require("matplotlib", "--plot")
    trainer = Pretrainer(settings, restart=restart, say=lambda text: None if quiet else _stderr(f"{PROG}: {text}"))
    if plot is not None:  # checked once the run folder exists: the plot often goes inside it
        engine.check_output(plot, allow_stdout=False, what="--plot")
    if len(trainer.validation) == 0 and not quiet:
        _stderr(f"{PROG}: warning: no held-out sequence matched {settings.heldout} (or none is {window} nt long); "
                "training runs without validation (see --heldout)")
    progress = _TrainProgress(trainer, quiet)
    try:
        with progress:
            trainer.run(progress=progress.update)
    except KeyboardInterrupt as interrupt:
        _stderr(f"{PROG}: interrupted at step {trainer.step}; checkpoint saved in {out}; "
                "run the same command again to resume")
        raise typer.Exit(128 + getattr(interrupt, "signum", signal.SIGINT)) from None
    run_dir = Path(out)
    if plot is not None:
        plot_log(run_dir / "log.tsv", plot)
    if export is not None:
        export_checkpoint(run_dir, export)
    if not quiet:
        last = progress.last
        parts = [f"step {trainer.step}/{settings.steps}"]
        if last.get("loss") is not None:
            parts.append(f"loss {last['loss']:.4f}")
        if last.get("accuracy") is not None:
            parts.append(f"val acc {last['accuracy']:.4f}")
        outputs = [str(run_dir)] + [p for p in (plot, export) if p]
        _stderr(f"{PROG} pretrain: " + ", ".join(parts) + " -> " + ", ".join(outputs))


class _TrainProgress:
    """A rich progress bar of training steps with loss, held-out accuracy and nt/s (lines when not a terminal)."""

    def __init__(self, trainer, quiet: bool) -> None:
        self.trainer = trainer
        self.quiet = quiet
        self.total = trainer.settings.steps
        self.last: dict[str, Any] = {}
        self._progress = None
        self._task = None
        self._started = time.perf_counter()
        self._start_nt = trainer.nucleotides
        self._terminal = False

    def __enter__(self):
        if self.quiet:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self._terminal = console.is_terminal
        if self._terminal:
            self._progress = Progress(
                TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(),
                TextColumn("loss {task.fields[loss]}  val acc {task.fields[acc]}  {task.fields[rate]} nt/s"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total, completed=self.trainer.step,
                                                 loss="-", acc="-", rate="-")
        return self

    def update(self, step: int, row: dict) -> None:
        if row.get("kind") == "train":
            self.last["loss"] = row["loss"]
        else:
            self.last["accuracy"] = row.get("accuracy")
            self.last["val_loss"] = row.get("loss")
        seconds = time.perf_counter() - self._started
        rate = (self.trainer.nucleotides - self._start_nt) / seconds if seconds > 0 else 0.0
        if self._progress is not None:
            acc = self.last.get("accuracy")
            self._progress.update(self._task, completed=step, loss=f"{self.last.get('loss', 0):.4f}",
                                  acc="-" if acc is None else f"{acc:.4f}", rate=f"{rate:,.0f}")
        elif not self.quiet and row.get("kind") == "validation":
            _stderr(f"{PROG}: step {step}/{self.total} loss {self.last.get('loss', float('nan')):.4f} "
                    f"val loss {row.get('loss', float('nan')):.4f} val acc {row.get('accuracy', float('nan')):.4f} "
                    f"{rate:,.0f} nt/s")

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()


@app.command(
    epilog=_example(
        "mxdna evaluate held_out.fa --model mxdna-small",
        "mxdna evaluate held_out.fa -m runs/export --window 510 --max-windows 512 --seed 1",
        "mxdna evaluate labelled_test.tsv -m promoter-arabidopsis",
        "mxdna evaluate promoter=tss.bed nonpromoter=random.bed --genome genome.fa -m my-classifier",
    ),
)
@option_groups
def evaluate(
    inputs: Annotated[
        list[str], typer.Argument(metavar="INPUT...", help="FASTA files or folders (masked-LM model), or labelled "
                                  "sequences (classifier: CSV/TSV, LABEL=FASTA, or BED with --genome).",
                                  show_default=False)
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="TSV with one result row; '-' = stdout.")] = "-",
    window: Annotated[int, typer.Option("--window", "-w", help="Nucleotides per evaluation window.", min=1)] = 510,
    max_windows: Annotated[
        int, typer.Option("--max-windows", help="At most this many windows, evenly spread over the input.", min=1)
    ] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the masking (same seed = same masked positions).")] = 1234,
    mask_prob: Annotated[float, typer.Option("--mask-prob", help="Share of nucleotides masked.")] = 0.15,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows (sequences) per batch.", min=1)] = 16,
    genome: Annotated[Optional[str], typer.Option("--genome", help="FASTA that BED inputs refer to (classifier).",
                      show_default=False)] = None,
    model: ModelOptions = ModelOptions(),
    quiet: QuietOpt = False,
) -> None:
    """Masked-nucleotide accuracy and loss of a masked-LM model on any FASTA (seeded, reproducible), or a
    classifier's accuracy, F1, MCC, AUROC and AUPRC on labelled sequences.

    Masked LM: windows tile each record from its start without overlap (windows with > 10% N are
    skipped); 15% of nucleotides are masked BERT-style and the model predicts them (softmax over
    A/C/G/T). Classifier: every sequence is classified whole; labels must be the model's classes.
    """
    from mxdna_cli.io.writers import TsvWriter

    engine.check_suffix(output, "tsv", "--output")
    check_paths({"--output": output}, *inputs, genome, weights=model.weights)
    engine.check_output(output)
    reporter = StderrReporter(quiet)
    loaded = model.load(reporter)
    settings = engine.EvaluateSettings(window=window, max_windows=max_windows, seed=seed, mask_prob=mask_prob,
                                       batch_size=batch_size, genome=genome)
    result = engine.evaluate(inputs, loaded, settings)
    if loaded.info.task == "classification":
        columns = ("model", "input", "n", *engine.CLASSIFIER_METRICS)
        summary = ", ".join(f"{m} {result[m]:.4f}" for m in engine.CLASSIFIER_METRICS)
        summary += f" on {result['n']:,} sequences"
        meta = engine.run_meta("evaluate", loaded, None)
    else:
        columns = ("model", "input", "window", "windows", "masked", "loss", "accuracy", "seed")
        summary = (f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} nats on "
                   f"{result['masked']:,} masked nucleotides ({result['windows']} windows)")
        meta = engine.run_meta("evaluate", loaded, None, mask_prob=mask_prob)
    with TsvWriter(output, columns, meta) as writer:
        writer.write_row([result[c] for c in columns])
    if not quiet:
        _stderr(f"{PROG} evaluate: {summary} in {result['seconds']} s")


@app.command(
    epilog=_example(
        "mxdna finetune train.tsv --valid valid.tsv --test test.tsv --pretrained mxdna-small -o my-promoter-model",
        "mxdna finetune promoter=prom.fa.gz nonpromoter=background.fa.gz -o my-classifier --epochs 5",
        "mxdna finetune promoter=tss.bed nonpromoter=random.bed --genome genome.fa -o my-classifier",
    )
)
def finetune(
    train: Annotated[
        list[str],
        typer.Argument(metavar="INPUTS...", help="Labelled sequences: CSV/TSV with sequence,label columns; "
                       "LABEL=FASTA (one file per class); or BED (+ --genome) with LABEL= or a label column.",
                       show_default=False),
    ],
    out: Annotated[str, typer.Option("--out", "-o", metavar="FOLDER", help="Classifier model folder to write.",
                                     show_default=False)],
    valid: Annotated[Optional[list[str]], typer.Option("--valid", help="Given validation inputs (else a seeded "
                     "split of INPUTS).", show_default=False)] = None,
    test: Annotated[Optional[list[str]], typer.Option("--test", help="Given test inputs (else a seeded split).",
                    show_default=False)] = None,
    genome: Annotated[Optional[str], typer.Option("--genome", help="FASTA that BED inputs refer to.",
                      show_default=False)] = None,
    pretrained: Annotated[Optional[str], typer.Option("--pretrained", metavar="MODEL", help="Masked-LM model to "
                          "start from (default: the bundled model).", show_default=False)] = None,
    from_scratch: Annotated[bool, typer.Option("--from-scratch", help="Random initialisation of --preset "
                            "instead of pretrained weights (a baseline).")] = False,
    preset: Annotated[Preset, typer.Option("--preset", help="Model size with --from-scratch.")] = Preset.small,
    pooling: Annotated[Pooling, typer.Option("--pooling", help="decoder ([CLS] through the cross-attention decoder, "
                       "as the reference) or mean (over tokens).")] = Pooling.decoder,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training set (at most).")] = 10,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many steps.",
                         show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per optimiser step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, warm-up then linear decay).")] = 1e-4,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Evaluations without a better validation "
                        "MCC before stopping.")] = 3,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", min=1, help="Steps between validations "
                          "(default: once per epoch).", show_default=False)] = None,
    class_weighting: Annotated[ClassWeighting, typer.Option("--class-weighting", help="balanced (loss weights "
                               "against class imbalance) or none.")] = ClassWeighting.balanced,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, the initialisation and the order.")] = 0,
    threads: Annotated[int, typer.Option("--threads", "-t", min=1, help="CPU threads for torch.")] = 2,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a sequence classifier (e.g. promoters) and write it as a model folder with its card.

    Early stopping on validation MCC; test accuracy, F1, MCC, AUROC and AUPRC go into the card.
    """
    from mxdna_cli.train.finetune import FinetuneSettings, check_out_dir, run_finetune

    check_out_dir(out)
    engine.pick_device(device)
    settings = FinetuneSettings(
        train=list(train), out_dir=out, valid=list(valid or []), test=list(test or []), genome=genome,
        pretrained=pretrained, from_scratch=from_scratch, preset=preset.value, pooling=pooling.value, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, lr=lr, patience=patience, eval_every=eval_every,
        class_weighting=class_weighting.value, seed=seed, threads=threads, device=device,
    )

    def progress(step: int, row: dict) -> None:
        if not quiet and row.get("kind") == "validation":
            _stderr(f"{PROG}: step {step} val loss {row.get('loss', float('nan')):.4f} "
                    f"val MCC {row.get('mcc', float('nan')):.4f} val AUROC {row.get('auroc', float('nan')):.4f}")

    result = run_finetune(settings, progress=progress)
    if not quiet:
        test_metrics = result["metrics"].get("test", {})
        shown = ", ".join(f"{k} {test_metrics[k]:.4f}" for k in ("accuracy", "f1", "mcc", "auroc", "auprc") if k in test_metrics)
        _stderr(f"{PROG} finetune: best step {result['best_step']} of {result['steps']}; test {shown} -> {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
