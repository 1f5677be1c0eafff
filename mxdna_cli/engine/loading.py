"""A model ready to run: resolve a model folder (or the classifier for a label), load it on the
chosen device with its compute precision and CPU threads."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mxdna_cli import weights as model_files
from mxdna_cli.device import pick_device
from mxdna_cli.engine.defaults import PROMOTER_LABEL
from mxdna_cli.engine.report import Reporter
from mxdna_cli.errors import DataError, UsageError

DTYPES: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_PROMOTER_MODEL = "promoter-arabidopsis"
NO_CLASSIFIER = "no promoter classifier is bundled yet; train one with `mxdna finetune` or pass --model"


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    if name not in DTYPES:
        raise UsageError(f"--dtype {name}: choose from {', '.join(DTYPES)}")
    if name == "float16" and device.type == "cpu":
        raise UsageError("--dtype float16 needs a CUDA device; on the CPU use bfloat16 or float32")
    return DTYPES[name]


@dataclass
class LoadedModel:
    """A model ready to run: the module, its card, where it runs and in what precision."""

    module: torch.nn.Module
    info: model_files.ModelInfo
    device: torch.device
    autocast: torch.dtype | None
    dtype_name: str

    @property
    def backbone(self) -> torch.nn.Module:
        return self.module.model

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        return self.info.config.expert_kernel_sizes

    @property
    def hidden_size(self) -> int:
        return self.info.config.hidden_size

    @property
    def num_token_layers(self) -> int:
        return self.info.config.num_token_layers

    def autocast_context(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def meta(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "model_sha256": self.info.sha256,
            "model_task": self.info.task,
            "model_trained": self.info.trained,
            "device": str(self.device),
            "dtype": self.dtype_name,
        }


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads {threads}: must be at least 1")
    torch.set_num_threads(threads)


def load(
    name_or_path: str | None,
    *,
    device: str = "auto",
    dtype: str = "float32",
    threads: int | None = None,
    reporter: Reporter | None = None,
) -> LoadedModel:
    """Resolve (`weights.resolve_model`: path, bundled name, $MXDNA_WEIGHTS, default) and load a model."""
    set_threads(threads)
    torch_device = pick_device(device)
    cast = autocast_dtype(dtype, torch_device)
    try:
        folder = model_files.resolve_model(name_or_path)
    except DataError as error:
        if name_or_path is not None:
            raise
        raise DataError(f"{error}; pass --weights MODEL or set ${model_files.WEIGHTS_ENV}") from None
    module, info = model_files.load_model(folder)
    if not info.trained and reporter is not None:
        reporter.warn(f"model '{info.name}' is untrained (random weights): its outputs are for testing only")
    return LoadedModel(module.to(torch_device).eval(), info, torch_device, cast, dtype)


def find_classifier(name_or_path: str | None, label: str) -> Path:
    """The classifier to use: --model, $MXDNA_WEIGHTS when it is a classifier, or a bundled one with `label`."""
    if name_or_path is not None:
        return model_files.resolve_model(name_or_path)
    env = os.environ.get(model_files.WEIGHTS_ENV)
    if env and (Path(env) / model_files.CARD_FILE).is_file():
        if model_files.read_info(env).task == "classification":
            return Path(env)
    bundled = [info for info in model_files.list_bundled() if info.task == "classification" and label in info.labels]
    # the genome-scan model first: it was trained against random genomic DNA, not curated negatives
    preferred = [info for info in bundled if info.path.name == DEFAULT_PROMOTER_MODEL and label == PROMOTER_LABEL]
    if preferred or bundled:
        return (preferred or bundled)[0].path
    raise DataError(NO_CLASSIFIER)


def load_classifier(
    name_or_path: str | None, *, label: str = PROMOTER_LABEL, device: str = "auto", dtype: str = "float32",
    threads: int | None = None, reporter: Reporter | None = None,
) -> tuple[LoadedModel, int]:
    """A classification model and the index of `label` among its classes."""
    folder = find_classifier(name_or_path, label)
    info = model_files.read_info(folder)
    if info.task != "classification":
        raise UsageError(
            f"model '{info.name}' is a {info.task} model, not a classifier; "
            "pass a classification model with --model (train one with `mxdna finetune`)"
        )
    scored = scored_class(info.labels, label)
    if scored is None:
        raise UsageError(f"model '{info.name}' has no class '{label}' (its classes: {', '.join(info.labels)}); see --label")
    loaded = load(str(folder), device=device, dtype=dtype, threads=threads, reporter=reporter)
    if scored != label and reporter is not None:
        reporter.warn(f"model '{info.name}' has classes {', '.join(info.labels)}: scoring class '{scored}' as "
                      f"'{label}' (pass --label to choose another)")
    return loaded, info.labels.index(scored)


POSITIVE_LABELS = ("1", "true", "positive", "pos", "yes")


def scored_class(labels: list[str], label: str) -> str | None:
    """The class whose probability is reported: `label` itself, or, for the default promoter label,
    a classifier's one conventional positive class (1, true, positive: labels as 0/1 files have them)."""
    if label in labels:
        return label
    if label != PROMOTER_LABEL:
        return None
    positive = [name for name in labels if name.strip().lower() in POSITIVE_LABELS]
    return positive[0] if len(positive) == 1 else None

