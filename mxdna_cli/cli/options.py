"""What the verbs share in their declarations: option types and choices, the option groups
(`InputOptions`, `WindowOptions`, `ModelOptions`) and `option_groups`, the example epilog, and the
checks on options made before any work (`check_paths`, `optional_values`)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from mxdna_cli import engine
from mxdna_cli.model.config import PRESETS


def example(*lines: str) -> str:
    """An epilog with a worked example (rich markup: one line per paragraph)."""
    body = "\n\n".join(f"  [bold]$[/bold] {line}" for line in lines)
    return f"[bold]Example:[/bold]\n\n{body}"


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


# ---------------------------------------------------------------------------------------------
# Choices


def _choices(name: str, values: Iterable[str]) -> Any:
    """A str Enum of an option's choices, made from the engine's list so that the two never differ."""
    return Enum(name, [(value, value) for value in values], type=str)


Strand = _choices("Strand", engine.STRANDS)
Pool = _choices("Pool", engine.POOLINGS)
Format = _choices("Format", engine.FORMATS)
Dtype = _choices("Dtype", engine.DTYPE_NAMES)
OutDtype = _choices("OutDtype", engine.OUT_DTYPES)
Preset = _choices("Preset", tuple(PRESETS))
Pooling = _choices("Pooling", ("decoder", "mean"))
ClassWeighting = _choices("ClassWeighting", ("balanced", "none"))


# ---------------------------------------------------------------------------------------------
# Shared options

INPUT_PANEL = "Input"
WINDOW_PANEL = "Windows and batching"
MODEL_PANEL = "Model and device"
OUTPUT_PANEL = "Output"


def window_option(help: str = "Window length in nucleotides.", *, min: int = 1, show_default: bool | str = True) -> Any:
    """--window/-w; each verb says what its window is and its smallest length."""
    return typer.Option("--window", "-w", help=help, rich_help_panel=WINDOW_PANEL, show_default=show_default, min=min)


def threads_option(*, show_default: bool | str = True) -> Any:
    """--threads/-t (the inference verbs leave it to torch, the training verbs default to 2)."""
    return typer.Option("--threads", "-t", help="CPU threads for torch.", rich_help_panel=MODEL_PANEL,
                        show_default=show_default, min=1)


InputArg = Annotated[
    str,
    typer.Argument(
        metavar="INPUT",
        help="FASTA file: plain, bgzip (with .fai/.gzi) or gzip; '-' reads stdin.",
        show_default=False,
    ),
]
RegionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--region", "-r", metavar="CHR:FROM-TO",
        help="Region, samtools style (1-based, inclusive); repeatable. Needs an indexed FASTA.",
        rich_help_panel=INPUT_PANEL, show_default=False,
    ),
]
BedOpt = Annotated[
    str | None,
    typer.Option(
        "--bed", "-b", metavar="BED",
        help="Regions from a BED file (0-based); its name and strand columns are honoured ('-' = the model "
        "reads the reverse complement; outputs stay in forward coordinates).",
        rich_help_panel=INPUT_PANEL, show_default=False,
    ),
]
StrandOpt = Annotated[
    Strand | None,
    typer.Option(
        "--strand", "-s",
        help="Strand the model reads, relative to the BED strand: forward, reverse (the reverse complement) "
        "or both (the average of the two; twice the work).",
        rich_help_panel=INPUT_PANEL, case_sensitive=False, show_default="forward",
    ),
]
WindowOpt = Annotated[int, window_option()]
StrideOpt = Annotated[
    int | None,
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
    str | None,
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
        "--dtype", rich_help_panel=MODEL_PANEL,
        help="Compute precision of the token layers (autocast); the units and the classification head stay "
             "float32, so units do not change. float16 needs CUDA.",
        case_sensitive=False,
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option("--compile", rich_help_panel=MODEL_PANEL,
                 help="Run the dense layers through torch.compile, after a compile of 6-30 s at the first batch "
                      "(needs a C++ compiler on the CPU); the same units, outputs within float rounding. On the "
                      "CPU the eager layers now run as fast (0.98-1.01x, docs/benchmarks.md)."),
]
ThreadsOpt = Annotated[int | None, threads_option(show_default="torch's choice")]
TrainThreadsOpt = Annotated[int, threads_option()]
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


# ---------------------------------------------------------------------------------------------
# Option groups


@dataclass(frozen=True)
class InputOptions:
    """--region, --bed, --strand: what the model reads of the INPUT FASTA."""

    region: RegionOpt = None
    bed: BedOpt = None
    strand: StrandOpt = None  # not given: `default_strand` of `open` (a classifier's card may set it)

    def strand_or(self, default: str = Strand.forward.value) -> str:
        """--strand as given, else `default`."""
        return self.strand.value if self.strand is not None else default

    def open(self, path: str, default_strand: str = Strand.forward.value) -> engine.Inputs:
        """The targets of the run (use them in a `with` block)."""
        return engine.Inputs(engine.InputSpec(path, regions=list(self.region or []), bed=self.bed,
                                              strand=self.strand_or(default_strand)))


@dataclass(frozen=True)
class WindowOptions:
    """--window, --stride, --batch-tokens: how targets are cut into windows and windows into batches."""

    window: WindowOpt = engine.DEFAULT_WINDOW
    stride: StrideOpt = None
    batch_tokens: BatchTokensOpt = engine.DEFAULT_BATCH_TOKENS


@dataclass(frozen=True)
class ModelOptions:
    """--weights/--model, --device, --dtype, --compile, --threads: which model runs, where and how."""

    weights: WeightsOpt = None
    device: DeviceOpt = "auto"
    dtype: DtypeOpt = Dtype.float32
    compile: CompileOpt = False
    threads: ThreadsOpt = None

    def load(self, reporter: engine.Reporter) -> engine.LoadedModel:
        return engine.load(self.weights, device=self.device, dtype=self.dtype.value, threads=self.threads,
                           reporter=reporter, compile=self.compile)

    def load_classifier(self, label: str, reporter: engine.Reporter) -> tuple[engine.LoadedModel, int]:
        return engine.load_classifier(self.weights, label=label, device=self.device, dtype=self.dtype.value,
                                      threads=self.threads, reporter=reporter, compile=self.compile)


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
# Checks before any work


def model_files_of(weights: str | None) -> list[str]:
    """The files of a model folder given by path (outputs must never overwrite them)."""
    if weights is None or not Path(weights).is_dir():
        return []
    return [str(Path(weights) / name) for name in ("model.safetensors", "model.json", "README.md")]


def check_paths(outputs: dict[str, str | None], *inputs: str | None, weights: str | None = None) -> None:
    """Usage errors before any work: an output that is an input, or two outputs on one path."""
    engine.check_output_paths(outputs, [*inputs, *model_files_of(weights)])


# Training precision, accumulation and checkpoints (pretrain, finetune).
PrecisionOpt = Annotated[
    str,
    typer.Option("--precision", help="Training compute: auto (bf16 autocast where the GPU or CPU has native bf16, "
                 "else float32), float32 or bfloat16."),
]
GradAccumOpt = Annotated[
    int,
    typer.Option("--grad-accum", min=1, help="Micro-batches per optimiser step, summed before it (under torchrun "
                 "shared out over the processes: a multiple of their number)."),
]

# Fine-tuning recipe (finetune): augmentation, strand of scoring, layer-wise lr decay, head dropout.
EvalStrand = _choices("EvalStrand", ("forward", "both"))
RcAugmentOpt = Annotated[
    bool,
    typer.Option("--rc-augment", help="Train on each example's reverse complement with probability 0.5, drawn "
                 "anew every epoch from the run's seed."),
]
EvalStrandOpt = Annotated[
    EvalStrand,
    typer.Option("--eval-strand", case_sensitive=False, help="Score validation and test on the forward strand, or "
                 "on both (the mean of the class probabilities of each sequence and its reverse complement; "
                 "the card records it, and `mxdna predict` and `evaluate` then score the same way by default)."),
]
ScoreStrandOpt = Annotated[
    EvalStrand | None,
    typer.Option("--strand", "-s", case_sensitive=False, show_default="the model card's eval strand, else forward",
                 help="Classifier: score the given strand, or both (the mean of the class probabilities of each "
                 "sequence and its reverse complement, as `mxdna predict --strand both` and `finetune --eval-strand "
                 "both`)."),
]
LayerDecayOpt = Annotated[
    float,
    typer.Option("--layer-decay", metavar="FLOAT", help="Layer-wise lr decay: the head and the top layer train at "
                 "--lr, each layer below at this factor times the one above, the embedding lowest (1 = off; "
                 "0 < FLOAT <= 1)."),
]
DropoutOpt = Annotated[
    float | None,
    typer.Option("--dropout", metavar="FLOAT", min=0.0, max=0.99, help="Dropout of the classification head "
                 "(0 <= FLOAT < 1).", show_default="the model configuration's (0)"),
]
