"""mxdna_cli: MxDNA, a DNA language model that learns its own tokenization, as a command-line tool
and a Python library.

    import mxdna_cli as mx
    model = mx.load()                        # the bundled backbone
    vectors = model.embed(["ACGTACGT..."])   # numpy (n, hidden)

`load`, `Model` and `Tokenization` live in `mxdna_cli.api` and are imported on first use, so that
`mxdna --help` never imports torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Model", "Tokenization", "load", "bundled_weights_dir", "__version__"]
_API = ("Model", "Tokenization", "load")


def __getattr__(name: str) -> Any:
    if name in _API:
        from mxdna_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'mxdna_cli' has no attribute {name!r}")


def bundled_weights_dir():
    """The folder of bundled models: `weights/` beside the package (editable install or checkout),
    else the copy installed inside the package as `mxdna_cli/_weights`."""
    from pathlib import Path

    here = Path(__file__).resolve().parent
    checkout = here.parent / "weights"
    if checkout.is_dir() and (here.parent / "pyproject.toml").is_file():
        return checkout
    return here / "_weights"
