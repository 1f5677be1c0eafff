"""The evaluate verb: seeded masked-nucleotide loss and accuracy of a masked-LM model on fixed
windows of any FASTA files."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mxdna_cli.engine.loading import LoadedModel
from mxdna_cli.errors import DataError, UsageError


@dataclass
class EvaluateSettings:
    window: int = 510
    max_windows: int = 256
    seed: int = 1234
    mask_prob: float = 0.15
    batch_size: int = 16


def evaluate(paths: Sequence[str], loaded: LoadedModel, settings: EvaluateSettings) -> dict[str, Any]:
    """Seeded masked-nucleotide loss and accuracy on fixed windows of the FASTA files."""
    from mxdna_cli.train.data import find_fasta_files, fixed_validation_windows, load_genomes
    from mxdna_cli.train.pretrain import evaluate_masked_lm

    s = settings
    if loaded.info.task != "masked_lm":
        raise UsageError(f"model '{loaded.name}' is a {loaded.info.task} model; evaluate needs a masked-LM model")
    if s.window < 1 or s.max_windows < 1 or s.batch_size < 1:
        raise UsageError("--window, --max-windows and --batch-size must be at least 1")
    if not 0 < s.mask_prob < 1:
        raise UsageError(f"--mask-prob {s.mask_prob}: must be between 0 and 1")
    files = find_fasta_files(list(paths))
    windows = fixed_validation_windows(load_genomes(files), s.window)
    if len(windows) == 0:
        raise DataError(f"no {s.window} nt window with few enough N in {', '.join(map(str, paths))} "
                        "(records shorter than --window are skipped)")
    if len(windows) > s.max_windows:
        pick = np.linspace(0, len(windows) - 1, s.max_windows).round().astype(int)
        windows = windows[pick]
    started = time.perf_counter()
    result = evaluate_masked_lm(loaded.module, windows, seed=s.seed, mask_prob=s.mask_prob,
                                batch_size=s.batch_size, device=loaded.device, autocast_dtype=loaded.autocast)
    seconds = time.perf_counter() - started
    return {"model": loaded.name, "model_sha256": loaded.info.sha256, "input": ",".join(map(str, paths)),
            "window": s.window, "windows": int(len(windows)), "masked": result["masked"],
            "loss": round(result["loss"], 6), "accuracy": round(result["accuracy"], 6), "seed": s.seed,
            "seconds": round(seconds, 2)}

