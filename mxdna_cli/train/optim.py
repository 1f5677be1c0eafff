"""What both trainers share about optimisation: AdamW with its parameter groups, the learning-rate
schedules, and the training precision (float32, or bf16 autocast where the hardware has it).

Precision. `auto` trains in bf16 autocast on a CUDA device that supports bf16 and on a CPU with
native bf16 instructions (AVX512-BF16 or AMX-BF16: matrix products then run at bf16 speed), and in
float32 everywhere else, where bf16 is emulated and slower. Autocast keeps the weights, the
optimiser and the losses in float32; the model computes its router softmax and the unit selection
in float32 too, so the discrete choices see float32 scores.
"""

from __future__ import annotations

import contextlib
import math
import platform
from functools import lru_cache
from pathlib import Path

import torch

from mxdna_cli.errors import UsageError

PRECISIONS = ("auto", "float32", "bfloat16")
SCHEDULES = ("linear", "cosine")
BETAS = (0.9, 0.98)
EPS = 1e-6
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def adamw(model: torch.nn.Module, *, lr: float, weight_decay: float, layer_decay: float = 1.0) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (no decay on biases, norms and other vectors).

    With `layer_decay` < 1 (a classifier over the MxDNA backbone, see `layer_depths`) every depth
    gets its own pair of groups (decayed matrices, undecayed vectors) at lr * layer_decay ** (top -
    depth), the head and the top layer first, at lr. 1.0 keeps the two groups of old: checkpoints
    of runs without layer decay keep their optimiser layout."""
    if layer_decay == 1.0:
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, betas=BETAS, eps=EPS,
        )
    return torch.optim.AdamW(layer_decay_groups(model, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay),
                             lr=lr, betas=BETAS, eps=EPS)


def layer_depths(model: torch.nn.Module) -> tuple[dict[str, int], int]:
    """Depth of every parameter of a model over the MxDNA backbone (`model.*`), and the top depth.

    Bottom up: the embedding is 0, nucleotide layer i is 1 + i, the learnt tokenizer (router,
    experts, assembly) is one layer above the nucleotide layers, then the token layers; the top
    token layer, the backbone's final norm and everything outside the backbone (decoder, norm,
    classification head) share the top depth. A backbone parameter of another name is refused
    rather than guessed, so that a new module cannot silently train at the wrong rate."""
    backbone = getattr(model, "model", None)
    if backbone is None or not hasattr(backbone, "nucleotide_layers"):
        raise UsageError("layer decay needs a model over the MxDNA backbone")
    n, m = len(backbone.nucleotide_layers), len(backbone.token_layers)
    top = n + m + 1
    depths = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")
        if parts[0] != "model":
            depths[name] = top
        elif parts[1] == "embed_tokens":
            depths[name] = 0
        elif parts[1] == "nucleotide_layers":
            depths[name] = 1 + int(parts[2])
        elif parts[1] == "tokenizer":
            depths[name] = n + 1
        elif parts[1] == "token_layers":
            depths[name] = n + 2 + int(parts[2])
        elif parts[1] == "final_norm":
            depths[name] = top
        else:
            raise UsageError(f"layer decay: no depth known for backbone parameter {name}")
    return depths, top


def layer_decay_groups(model: torch.nn.Module, *, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW parameter groups, top depth first: per depth the matrices (weight decay) and the
    vectors (none), each with lr * layer_decay ** (top - depth); `depth` and `lr_scale` are kept in
    the group (read them to see which rate a layer trains at)."""
    if not 0 < layer_decay <= 1:
        raise UsageError(f"layer decay {layer_decay}: must lie in (0, 1] (1 = off)")
    depths, top = layer_depths(model)
    groups = []
    named = list(model.named_parameters())
    for depth in range(top, -1, -1):
        scale = layer_decay ** (top - depth)
        for decayed in (True, False):
            params = [p for name, p in named if depths[name] == depth and (p.dim() >= 2) == decayed]
            if params:
                groups.append({"params": params, "weight_decay": weight_decay if decayed else 0.0,
                               "lr": lr * scale, "lr_scale": scale, "depth": depth})
    return groups


def warmup_decay(step: int, warmup: int, total: int, schedule: str) -> float:
    """Fine-tuning: linear warmup from 0 to 1 over `warmup` steps, then linear or cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - progress


def warmup_cosine_floor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Pretraining: linear warmup to 1, then cosine decay to min_ratio at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def lambda_schedule(optimizer: torch.optim.Optimizer, factor) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler multiplying the base learning rate by `factor(step)`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU executes bf16 arithmetic natively (AVX512-BF16 or AMX-BF16).

    Read from /proc/cpuinfo (Linux x86); torch does not report these flags itself. Elsewhere
    (macOS, ARM, Windows) the answer is False, which keeps `auto` at float32."""
    if platform.system() != "Linux":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(flag in flags for flag in CPU_BF16_FLAGS)
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """'float32' or 'bfloat16' for a --precision choice on `device` (see the module docstring)."""
    if name not in PRECISIONS:
        raise UsageError(f"--precision {name}: choose from {', '.join(PRECISIONS)}")
    if name == "bfloat16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UsageError(f"--precision bfloat16: {torch.cuda.get_device_name(device)} does not support bf16")
        return name
    if name == "float32":
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"


def precision_reason(precision: str, device: torch.device, asked: str) -> str:
    """A few words on why this precision, for the log line."""
    if asked != "auto":
        return f"{precision} (--precision {asked})"
    if device.type == "cuda":
        return f"{precision} autocast (CUDA bf16 support)" if precision == "bfloat16" else "float32 (no CUDA bf16)"
    if precision == "bfloat16":
        return "bfloat16 autocast (CPU has native bf16)"
    return "float32 (no native bf16 on this CPU)"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None: plain float32)."""
    return torch.bfloat16 if precision == "bfloat16" else None


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """torch.autocast to `dtype` on `device`, or nothing when dtype is None (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
