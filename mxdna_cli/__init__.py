"""mxdna_cli: MxDNA, a DNA language model that learns its own tokenization, as a command-line tool."""

__version__ = "0.1.0"


def bundled_weights_dir():
    """The folder of bundled models: `weights/` beside the package (editable install or checkout),
    else the copy installed inside the package as `mxdna_cli/_weights`."""
    from pathlib import Path

    here = Path(__file__).resolve().parent
    checkout = here.parent / "weights"
    if checkout.is_dir() and (here.parent / "pyproject.toml").is_file():
        return checkout
    return here / "_weights"
