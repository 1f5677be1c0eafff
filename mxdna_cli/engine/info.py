"""The info verb: the bundled models (card, size, checksum) and the environment (devices, threads,
versions)."""

from __future__ import annotations

import math
import os
import platform
from typing import Any

import torch

from mxdna_cli import __version__
from mxdna_cli import weights as model_files


def parameter_count(info: model_files.ModelInfo) -> int:
    """Parameters in a saved model, from the safetensors header only (no tensor is read)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(info.path / model_files.TENSOR_FILE), framework="pt") as handle:
        for key in handle.keys():
            total += math.prod(handle.get_slice(key).get_shape())
    return total


def describe_models(verify: bool = False) -> list[dict[str, Any]]:
    rows = []
    for info in model_files.list_bundled():
        c = info.config
        row = {
            "name": info.name,
            "task": info.task,
            "preset": c.name,
            "config": f"d={c.hidden_size} heads={c.num_heads} layers={c.num_nucleotide_layers}+{c.num_token_layers} "
                      f"experts={c.num_experts}",
            "parameters": parameter_count(info),
            "sha256": info.sha256,
            "trained": info.trained,
            "labels": info.labels,
            "purpose": info.extra.get("purpose", ""),
            "default_for": list(info.extra.get("default_for", [])),
            "window": info.extra.get("window"),
            "path": str(info.path),
        }
        if verify:
            row["sha256_ok"] = model_files.sha256_of(info.path / model_files.TENSOR_FILE) == info.sha256
        rows.append(row)
    return rows


def environment() -> dict[str, Any]:
    import numpy
    import pysam
    import typer

    versions = {"mxdna_cli": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": numpy.__version__, "pysam": pysam.__version__, "typer": typer.__version__}
    try:
        import pyBigWig

        versions["pyBigWig"] = getattr(pyBigWig, "__version__", "installed")
    except ImportError:  # pragma: no cover - a dependency
        versions["pyBigWig"] = "missing"
    cuda = []
    if torch.cuda.is_available():
        cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "cpu_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "cuda": cuda,
        "default_device": "cuda" if cuda else "cpu",
        "weights_dirs": [str(p) for p in model_files.weights_dirs()],
        "versions": versions,
        "platform": f"{platform.system()} {platform.machine()}",
    }

