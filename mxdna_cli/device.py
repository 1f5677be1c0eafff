"""The torch device a `--device` choice names (auto, cpu, cuda, cuda:N), checked before any work."""

from __future__ import annotations

import torch

from mxdna_cli.errors import UsageError


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when there is one), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available (use --device cpu)")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) found")
        return device
    raise UsageError(f"--device {name}: use auto, cpu, cuda or cuda:N")
