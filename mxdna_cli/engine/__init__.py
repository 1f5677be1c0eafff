"""Run MxDNA over FASTA input, one verb at a time; the CLI is a thin layer over these functions.

The pipeline, one module a step:

    read     inputs.py      targets: whole records or regions, on one strand or both, with sequences
    encode   inputs.py      Target.model_ids: the ids the model reads (reverse complement for '-')
    window   stitch.py      window tasks: each strand of a target cut into overlapping windows
    batch    runner.py      windows packed into batches by a token budget, results back in order
    model    loading.py     a model on its device, in its precision (`load`, `load_classifier`)
             runner.py      the backbone (units, gates, token states) or the classifier on a batch
    stitch   stitch.py      the windows' basic units joined at shared boundaries into one tiling
    write    outputs.py     provenance and output checks; the writers are in `mxdna_cli.io.writers`

The verbs put the steps together: embedding.py (`embed`), tokenization.py (`tokenize`),
prediction.py (`predict`), plan.py (`window_plan`, the windows verb: no model), info.py
(`describe_models`, `environment`) and evaluation.py (`evaluate`). report.py holds the progress
`Reporter` and the run `Summary` they all share.

The verb modules are not named like their functions (`embed`, `tokenize`, ...) so that
`mxdna_cli.engine.embed` is always the function, never a module shadowed by it.
"""

from mxdna_cli.device import pick_device
from mxdna_cli.engine.embedding import OUT_DTYPES, POOLINGS, EmbedSettings, check_pool_strand, embed
from mxdna_cli.engine.evaluation import CLASSIFIER_METRICS, EvaluateSettings, evaluate
from mxdna_cli.engine.info import describe_models, environment
from mxdna_cli.engine.inputs import STRANDS, Inputs, InputSpec, Target, strands_for
from mxdna_cli.engine.loading import DTYPES, PROMOTER_LABEL, LoadedModel, load, load_classifier
from mxdna_cli.engine.outputs import FORMATS, check_output, check_output_paths, check_suffix, output_format, run_meta
from mxdna_cli.engine.plan import window_plan
from mxdna_cli.engine.prediction import DEFAULT_TRACK_STEP, PredictSettings, check_track, predict
from mxdna_cli.engine.report import Reporter, Summary
from mxdna_cli.engine.runner import DEFAULT_BATCH_TOKENS, Runner, WindowOutput, resolve_layer
from mxdna_cli.engine.stitch import DEFAULT_WINDOW, Piece, UnitStitcher, choose_cut, resolve_stride
from mxdna_cli.engine.tokenization import (
    DEFAULT_MIN_WEIGHT,
    TokenizeSettings,
    check_one_strand,
    token_footprints,
    tokenize,
)

__all__ = [
    "DEFAULT_BATCH_TOKENS",
    "DEFAULT_MIN_WEIGHT",
    "DEFAULT_TRACK_STEP",
    "DEFAULT_WINDOW",
    "DTYPES",
    "FORMATS",
    "OUT_DTYPES",
    "POOLINGS",
    "PROMOTER_LABEL",
    "STRANDS",
    "EmbedSettings",
    "CLASSIFIER_METRICS",
    "EvaluateSettings",
    "InputSpec",
    "Inputs",
    "LoadedModel",
    "Piece",
    "PredictSettings",
    "Reporter",
    "Runner",
    "Summary",
    "Target",
    "TokenizeSettings",
    "UnitStitcher",
    "WindowOutput",
    "check_one_strand",
    "check_output",
    "check_output_paths",
    "check_suffix",
    "check_pool_strand",
    "check_track",
    "choose_cut",
    "describe_models",
    "embed",
    "environment",
    "evaluate",
    "load",
    "load_classifier",
    "output_format",
    "pick_device",
    "predict",
    "resolve_layer",
    "resolve_stride",
    "run_meta",
    "strands_for",
    "token_footprints",
    "tokenize",
    "window_plan",
]
