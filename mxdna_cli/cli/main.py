"""The `mxdna` app: the top-level Typer group with the verbs of infer.py, predict.py and train.py,
`--version`, and the one place where failures become output. Expected failures (`MxdnaError`)
and Typer's own usage errors become one line, `mxdna: error: ...`, with exit code 1 (bad data)
or 2 (bad usage), in `MxdnaGroup.main`; SIGINT and SIGTERM end a verb as `Interrupted` (exit 128 +
signal). A disk that fills or fails under a write (`WRITE_FAILURES`) is bad luck, not a bug: one line,
exit 1, the outputs aborted as for any error. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
from typing import Annotated, Any

import typer
from typer._click import exceptions as click_exceptions
from typer.core import TyperArgument, TyperGroup, TyperOption

from mxdna_cli import __version__
from mxdna_cli.cli import infer, predict, train, variants
from mxdna_cli.cli.options import example, optional_values
from mxdna_cli.cli.progress import PROG, one_line
from mxdna_cli.errors import MxdnaError


# errno values of a write that the machine refused (full disk, quota, file size limit, a failing or
# read-only disk): reported in one line, like bad data
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def error_line(message: str) -> str:
    return f"{PROG}: error: {one_line(message)}"


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
        from mxdna_cli.io.faidx import discard_built_indexes, forget_built_indexes

        set_command_line(args)
        forget_built_indexes()
        code = 1
        try:
            result = super().main(
                args=args, prog_name=prog_name or PROG, complete_var=complete_var, standalone_mode=False, **extra
            )
            code = result if isinstance(result, int) else 0
            if code == 0:
                from mxdna_cli.distributed import finish

                finish()  # under torchrun: every rank is done before any leaves
        except Interrupted as interrupted:
            print(f"{PROG}: interrupted", file=sys.stderr)
            code = 128 + interrupted.signum
        except MxdnaError as error:
            print(error_line(str(error)), file=sys.stderr)
            code = error.exit_code
        except OSError as error:
            if error.errno not in WRITE_FAILURES:
                raise
            where = f"{error.filename}: " if error.filename else ""
            print(error_line(f"{where}cannot write the output: {error.strerror}"), file=sys.stderr)
            code = 1
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
        finally:
            if code != 0:
                discard_built_indexes()  # a failed command leaves its inputs' folders as they were
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


app = typer.Typer(
    cls=MxdnaGroup,
    epilog=example("mxdna info", "mxdna tokenize genome.fa.gz -r chr1:1-5000 --export-bed units.bed",
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
# The verbs in the order `mxdna --help` lists them; the unnamed sub-apps' commands become top-level verbs.
app.add_typer(infer.commands)
app.add_typer(train.commands)
app.add_typer(predict.app, name="predict")
app.add_typer(variants.commands)


def _version(value: bool) -> None:
    if value:
        print(f"mxdna_cli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """MxDNA on the command line."""
