"""The `mxdna` command line: thin Typer verbs over `mxdna_cli.engine` and `mxdna_cli.train`.

    main.py      the app: the top-level group, error mapping and exit codes, interrupts, --version
    options.py   the shared options, choices and option groups, and the checks made before any work
    progress.py  what goes to stderr: the progress reporter, warnings and the run summaries
    infer.py     embed, tokenize, windows, info
    predict.py   the `predict` sub-app: promoter
    train.py     pretrain, evaluate, finetune

Each verb parses its options, calls one library function and reports on stderr; data goes only to
the output files or stdout. Nothing here imports torch until a verb runs (`mxdna --help` stays fast).
"""

from mxdna_cli.cli.main import app
from mxdna_cli.cli.options import optional_values

__all__ = ["app", "optional_values"]
