"""What every output of a run shares: its provenance (`run_meta`), the checks that it can be written
where asked before any work starts (`check_output`, `check_output_paths`, `check_suffix`), and the
choice between NPY and TSV."""

from __future__ import annotations

import datetime
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

from mxdna_cli import __version__
from mxdna_cli.defaults import FORMATS
from mxdna_cli.errors import UsageError
from mxdna_cli.io.writers import STDOUT, output_folder

if TYPE_CHECKING:  # annotations only: the CLI's early checks must not import torch
    from mxdna_cli.engine.inputs import Inputs
    from mxdna_cli.runtime import LoadedModel



# Provenance that differs between two runs of the same work (not part of a run's identity).
RUN_STAMP_KEYS = ("command_line", "date", "versions")
_command_line: list[str] | None = None  # set by the CLI; a library caller's outputs record sys.argv


def set_command_line(args: list[str]) -> None:
    """The arguments of the `mxdna` command being run, for the outputs' provenance."""
    global _command_line
    _command_line = list(args)


def run_meta(command: str, loaded: LoadedModel | None, inputs: Inputs | None, **settings: Any) -> dict[str, Any]:
    """Provenance written into every output (header lines or JSON sidecar): the tool, the verb and
    the full command line, the model, the input and its regions, the settings, the versions of
    mxdna, torch and Python, and the UTC time the run started."""
    import platform

    import torch

    meta: dict[str, Any] = {"tool": f"mxdna_cli {__version__}", "command": command,
                            "command_line": " ".join(shlex.quote(a) for a in ["mxdna", *(sys.argv[1:] if _command_line is None
                                                                                     else _command_line)])}
    if loaded is not None:
        meta.update(loaded.meta())
    if inputs is not None:
        meta["input"] = inputs.path
        if inputs.spec.regions:
            meta["regions"] = list(inputs.spec.regions)
        if inputs.spec.bed is not None:
            meta["bed"] = inputs.spec.bed
    meta.update({k: v for k, v in settings.items() if v is not None})
    meta["versions"] = f"mxdna_cli {__version__}, torch {torch.__version__}, python {platform.python_version()}"
    meta["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return meta


def run_fingerprint(meta: dict[str, Any], inputs: Inputs, **extra: Any) -> dict[str, Any]:
    """What makes two runs the same work (for --resume): settings, model, inputs and their files,
    outputs; not the time, the command line or the versions (RUN_STAMP_KEYS)."""
    from mxdna_cli.engine.journal import input_fingerprint

    return {"meta": {k: v for k, v in meta.items() if k not in RUN_STAMP_KEYS}, "extra": extra,
            "regions": list(inputs.spec.regions), "files": input_fingerprint([inputs.path, inputs.spec.bed])}


def check_output(path: str, *, allow_stdout: bool = True, what: str = "output") -> None:
    """Fail before any work when an output cannot be written where asked."""
    if path == STDOUT:
        if not allow_stdout:
            raise UsageError(f"{what} cannot go to stdout ('-'); give a file name")
        return
    folder = output_folder(path)
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{path}: output folder {folder} is not writable")


# Files written beside an output (sidecars): they are outputs too, and must not hit an input either.
COMPANIONS = {
    ".npy": (".index.tsv", ".records.tsv"),  # replace the suffix
}
SIDECAR_SUFFIX = ".json"  # appended to NPY and bigWig outputs
FASTA_INDEXES = (".fai", ".gzi")

SUFFIXES = {
    "tsv": (".tsv", ".txt", ".tab"),
    "bed": (".bed",),
    "bigwig": (".bw", ".bigwig"),
    "track": (".bw", ".bigwig", ".bedgraph", ".bg"),  # --track: bigWig or bedGraph, by suffix
    "png": (".png",),
}


def check_suffix(path: str | None, kind: str, option: str) -> None:
    """A fixed-format output must be named for its format (`-` is stdout for text formats)."""
    if path is None or path == STDOUT:
        return
    suffixes = SUFFIXES[kind]
    if not path.lower().endswith(suffixes):
        raise UsageError(f"{option} {path}: a {kind} output name must end with {' or '.join(suffixes)}")


def _written_paths(path: str) -> list[str]:
    """An output and the sidecars written beside it."""
    paths = [path]
    lower = path.lower()
    for suffix, companions in COMPANIONS.items():
        if lower.endswith(suffix):
            paths += [path[: -len(suffix)] + c for c in companions]
    if lower.endswith((".npy", ".bw", ".bigwig")):
        paths.append(path + SIDECAR_SUFFIX)
    return paths


def _same_file_key(path: str) -> str:
    """The real path of `path` (links resolved); a missing file's folder resolved, its name kept."""
    return os.path.realpath(os.path.abspath(path))


def check_output_paths(outputs: dict[str, str | None], inputs: list[str | None]) -> None:
    """Before any work: no output (or its sidecars) is an input (or an input's .fai/.gzi), and no
    two outputs share a path. `outputs` maps each option name to its path (None: not asked for)."""
    protected: dict[str, str] = {}
    for path in inputs:
        if path is None or path == STDOUT:
            continue
        for candidate in [path] + [path + suffix for suffix in FASTA_INDEXES]:
            protected.setdefault(_same_file_key(candidate), path)
    seen: dict[str, str] = {}
    stdout_options = []
    for option, path in outputs.items():
        if path is None:
            continue
        if path == STDOUT:
            stdout_options.append(option)
            continue
        for written in _written_paths(path):
            key = _same_file_key(written)
            if key in protected:
                what = "is" if written == path else f"would write {written}, which is"
                raise UsageError(f"{option} {path}: {what} an input ({protected[key]}); "
                                 "choose another output name")
            if key in seen:
                raise UsageError(f"{option} {path}: the same file as {seen[key]}; give each output its own name")
            seen[key] = f"{option} {path}"
    if len(stdout_options) > 1:
        raise UsageError(f"only one output can go to stdout ('-'): {', '.join(stdout_options)}")


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

