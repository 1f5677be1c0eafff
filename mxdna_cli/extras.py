"""Optional libraries: the core verbs need none of them; a feature that does says which extra to
install, before any work starts.

    plot       matplotlib     --plot of tokenize and pretrain, the report scripts
    baselines  scikit-learn   the k-mer logistic-regression baseline (scripts, benchmarks)
    bench      transformers, tokenizers   the peer models of benchmarks/
"""

from __future__ import annotations

import importlib.util

from mxdna_cli.errors import UsageError

EXTRAS = {"matplotlib": "plot", "sklearn": "baselines", "transformers": "bench", "tokenizers": "bench"}


def require(module: str, what: str) -> None:
    """UsageError naming the extra to install when `module` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        extra = EXTRAS[module]
        raise UsageError(f"{what} needs {module}, which is not installed: pip install 'mxdna_cli[{extra}]'")
