"""Run MxDNA over FASTA input, one verb at a time; the CLI is a thin layer over these functions.

The pipeline, one module a step (docs/architecture.md draws it):

    read     inputs.py      targets: whole records or regions, on one strand or both, with sequences
    encode   inputs.py      Target.window_ids: a window's ids (reverse complement for '-'), read from
                            the index per window for an indexed input
    window   pipeline.py    window_tasks: each target cut by a geometry of `mxdna_cli.windows`
    batch    pipeline.py    Pipeline.run: token-budget batches, results back in order; --resume; torchrun
    model    forward.py     the backbone (units, gates, token states) or the classifier on a batch
                            (the model itself is loaded by `mxdna_cli.runtime`)
    stitch   stitch.py      the windows' basic units joined at shared boundaries into one tiling
    write    outputs.py     provenance and output checks; the writers are in `mxdna_cli.io`

The verbs put the steps together: embedding.py (`embed`), tokenization.py (`tokenize`),
prediction.py (`predict`), plan.py (`window_plan`, the windows verb: no model), info.py
(`describe_models`, `environment`); the evaluate verb needs the trainers' code and lives in
`mxdna_cli.train.evaluate` (the engine never imports `mxdna_cli.train`). report.py holds the progress
`Reporter` and the run `Summary` they all share.

`mxdna_cli.defaults` and `mxdna_cli.windows` hold the choices and defaults (torch-free). The names below are imported on first
use (PEP 562), so that `mxdna --help` and the option parsing never import torch.

The verb modules are not named like their functions (`embed`, `tokenize`, ...) so that
`mxdna_cli.engine.embed` is always the function, never a module shadowed by it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # mxdna_cli.defaults
    "DEFAULT_BATCH_TOKENS": "mxdna_cli.defaults",
    "DEFAULT_MIN_WEIGHT": "mxdna_cli.defaults",
    "DEFAULT_TRACK_STEP": "mxdna_cli.defaults",
    "DEFAULT_WINDOW": "mxdna_cli.windows",
    "DTYPE_NAMES": "mxdna_cli.defaults",
    "FORMATS": "mxdna_cli.defaults",
    "OUT_DTYPES": "mxdna_cli.defaults",
    "POOLINGS": "mxdna_cli.defaults",
    "PROMOTER_LABEL": "mxdna_cli.defaults",
    "STRANDS": "mxdna_cli.defaults",
    # mxdna_cli.engine.embedding
    "EmbedSettings": "mxdna_cli.engine.embedding",
    "check_pool_strand": "mxdna_cli.engine.embedding",
    "embed": "mxdna_cli.engine.embedding",
    # mxdna_cli.engine.info
    "describe_models": "mxdna_cli.engine.info",
    "environment": "mxdna_cli.engine.info",
    # mxdna_cli.engine.inputs
    "InputSpec": "mxdna_cli.engine.inputs",
    "Inputs": "mxdna_cli.engine.inputs",
    "Target": "mxdna_cli.engine.inputs",
    "strands_for": "mxdna_cli.engine.inputs",
    # mxdna_cli.runtime
    "DTYPES": "mxdna_cli.runtime",
    "LoadedModel": "mxdna_cli.runtime",
    "load": "mxdna_cli.runtime",
    "load_classifier": "mxdna_cli.runtime",
    # mxdna_cli.runtime
    "pick_device": "mxdna_cli.runtime",
    # mxdna_cli.engine.outputs
    "check_output": "mxdna_cli.engine.outputs",
    "check_output_paths": "mxdna_cli.engine.outputs",
    "check_suffix": "mxdna_cli.engine.outputs",
    "output_format": "mxdna_cli.engine.outputs",
    "run_meta": "mxdna_cli.engine.outputs",
    # mxdna_cli.engine.plan
    "window_plan": "mxdna_cli.engine.plan",
    # mxdna_cli.engine.prediction
    "PredictSettings": "mxdna_cli.engine.prediction",
    "card_strand": "mxdna_cli.engine.prediction",
    "check_track": "mxdna_cli.engine.prediction",
    "predict": "mxdna_cli.engine.prediction",
    # mxdna_cli.engine.report
    "Reporter": "mxdna_cli.engine.report",
    "Summary": "mxdna_cli.engine.report",
    # mxdna_cli.engine.pipeline
    "Pipeline": "mxdna_cli.engine.pipeline",
    # mxdna_cli.windows
    "resolve_stride": "mxdna_cli.windows",
    # mxdna_cli.engine.tokenization
    "TokenizeSettings": "mxdna_cli.engine.tokenization",
    "check_one_strand": "mxdna_cli.engine.tokenization",
    "token_footprints": "mxdna_cli.engine.tokenization",
    "tokenize": "mxdna_cli.engine.tokenization",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (module-level __getattr__, PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mxdna_cli.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
