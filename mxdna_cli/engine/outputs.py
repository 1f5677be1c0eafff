"""What every output of a run shares: its provenance (`run_meta`), the check that it can be written
where asked before any work starts, and the choice between NPY and TSV."""

from __future__ import annotations

import os
from typing import Any

from mxdna_cli import __version__
from mxdna_cli.engine.inputs import Inputs
from mxdna_cli.engine.loading import LoadedModel
from mxdna_cli.errors import UsageError
from mxdna_cli.io.writers import STDOUT, output_folder

FORMATS = ("npy", "tsv")


def run_meta(command: str, loaded: LoadedModel | None, inputs: Inputs | None, **settings: Any) -> dict[str, Any]:
    """Provenance written into every output (header lines or JSON sidecar)."""
    meta: dict[str, Any] = {"tool": f"mxdna_cli {__version__}", "command": command}
    if loaded is not None:
        meta.update(loaded.meta())
    if inputs is not None:
        meta["input"] = inputs.path
        if inputs.spec.regions:
            meta["regions"] = len(inputs.spec.regions)
        if inputs.spec.bed is not None:
            meta["bed"] = inputs.spec.bed
    meta.update({k: v for k, v in settings.items() if v is not None})
    return meta


def check_output(path: str, *, allow_stdout: bool = True, what: str = "output") -> None:
    """Fail before any work when an output cannot be written where asked."""
    if path == STDOUT:
        if not allow_stdout:
            raise UsageError(f"{what} cannot go to stdout ('-'); give a file name")
        return
    folder = output_folder(path)
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{path}: output folder {folder} is not writable")


def output_format(path: str, fmt: str | None) -> str:
    """npy or tsv, from --format or the file name (`-` = TSV on stdout)."""
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise UsageError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
        if fmt == "npy" and path == STDOUT:
            raise UsageError("NPY output cannot go to stdout ('-'); give a file name ending in .npy")
        if fmt == "npy" and not path.endswith(".npy"):
            raise UsageError(f"{path}: an NPY output name must end with .npy")
        return fmt
    if path == STDOUT:
        return "tsv"
    lower = path.lower()
    if lower.endswith(".npy"):
        return "npy"
    if lower.endswith((".tsv", ".txt", ".tab")):
        return "tsv"
    raise UsageError(f"{path}: cannot tell the format from the name; use .npy or .tsv, or pass --format")

