"""`python -m mxdna_cli ...` (and `torchrun -m mxdna_cli ...`): the `mxdna` command, with its error
lines and exit codes."""

from mxdna_cli.cli import app

if __name__ == "__main__":
    app()
