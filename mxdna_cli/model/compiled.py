"""Opt-in torch.compile of the dense layers (`--compile`): fused element-wise work, same model.

Only the blocks with fixed control flow are compiled: every nucleotide and token layer and the
cross-attention decoder layers, which do nearly all the FLOPs. The learnt tokenizer (router, unit
selection, experts, deformable assembly) stays eager, since its shapes and loops follow the data.
Compilation is lazy (at the first batch), with dynamic shapes so that windows and batches of other
sizes reuse the kernels; inductor keeps its kernels in its on-disk cache, so later runs compile
faster. Measured effect and exactness: docs/benchmarks.md (benchmarks/compiled.py).
"""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from mxdna_cli.errors import UsageError
from mxdna_cli.model.layers import CrossAttentionLayer, EncoderLayer


def compile_dense_layers(module: nn.Module) -> nn.Module:
    """Compile every encoder and cross-attention layer of `module` in place; returns `module`."""
    for layer in module.modules():
        if isinstance(layer, (EncoderLayer, CrossAttentionLayer)):
            layer.compile(dynamic=True)
    return module


def check_compiler(device: torch.device) -> None:
    """Inductor writes C++ on the CPU and Triton on CUDA: say so before the first batch, not inside it."""
    if device.type == "cpu":
        compiler = os.environ.get("CXX", "g++")
        if shutil.which(compiler) is None:
            raise UsageError(f"--compile on the CPU needs a C++ compiler ({compiler} not found; set $CXX "
                             "or run without --compile)")
    elif device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            raise UsageError("--compile on CUDA needs triton (pip install triton), or run without --compile") from None
