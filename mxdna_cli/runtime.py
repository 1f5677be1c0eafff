"""Where and how a model runs: the device a `--device` choice names, CPU threads, the compute
precision (autocast), and a model folder (or the classifier for a label) loaded into a `LoadedModel`.

Below the engine and the trainers, which both use it; it imports neither."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from mxdna_cli import distributed
from mxdna_cli import weights as model_files
from mxdna_cli.defaults import PROMOTER_LABEL
from mxdna_cli.errors import DataError, UsageError

class Warns(Protocol):
    """Anything with a `warn(message)`: the engine's `Reporter`, the CLI's stderr reporter."""

    def warn(self, message: str) -> None: ...


DTYPES: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_FOR = "default_for"  # card field: the labels for which a bundled classifier is the default
NO_CLASSIFIER = "no promoter classifier is bundled yet; train one with `mxdna finetune` or pass --model"


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
    compiled: bool = False  # dense layers through torch.compile (--compile)

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
            # only when set, so that the headers of ordinary runs stay as they were
            **({"compiled": True} if self.compiled else {}),
        }


def set_threads(threads: int | None) -> None:
    """torch's CPU threads (None: torch's default). The kernel caches are capped and torch's huge
    pages asked for first, even with None: setting the thread count configures oneDNN, which reads
    its cache size then, and torch reads its huge-page setting at its first large tensor
    (engine/memory.py); a caller may set the threads after loading."""
    from mxdna_cli.engine.memory import before_first_allocation

    before_first_allocation()
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
    reporter: Warns | None = None,
    compile: bool = False,
) -> LoadedModel:
    """Resolve (`weights.resolve_model`: path, bundled name, $MXDNA_WEIGHTS, default) and load a model;
    `compile` runs its dense layers through torch.compile (`model.compiled`)."""
    set_threads(threads)
    torch_device = pick_device(device)
    place = distributed.world()
    if place.distributed and torch_device.type == "cuda" and device in ("auto", "cuda"):
        torch_device = torch.device("cuda", place.local_rank % torch.cuda.device_count())  # a GPU per rank
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
    module = module.to(torch_device).eval()
    if compile:
        from mxdna_cli.model.compiled import check_compiler, compile_dense_layers

        check_compiler(torch_device)
        compile_dense_layers(module)
    return LoadedModel(module, info, torch_device, cast, dtype, compiled=compile)


def find_classifier(name_or_path: str | None, label: str) -> Path:
    """The classifier to use: --model, $MXDNA_WEIGHTS when it is a classifier, or a bundled one with `label`."""
    if name_or_path is not None:
        return model_files.resolve_model(name_or_path)
    env = os.environ.get(model_files.WEIGHTS_ENV)
    if env and (Path(env) / model_files.CARD_FILE).is_file():
        if model_files.read_info(env).task == "classification":
            return Path(env)
    classifiers = [info for info in model_files.list_bundled() if info.task == "classification"]
    bundled = [info for info in classifiers if label in info.labels]
    # the one whose card names it the default for this label first (tests/cli/test_cli.py holds the
    # bundled set to one such card per label; scripts/ship_classifier.py --default-for moves the mark)
    preferred = [info for info in bundled if label in info.extra.get(DEFAULT_FOR, [])]
    if preferred or bundled:
        return (preferred or bundled)[0].path
    if classifiers:
        classes = sorted({c for info in classifiers for c in info.labels})
        raise UsageError(f"--label {label}: no bundled classifier has this class (theirs: {', '.join(classes)}); "
                         "choose one of those, or pass a classifier that has it with --model")
    raise DataError(NO_CLASSIFIER)


def load_classifier(
    name_or_path: str | None, *, label: str = PROMOTER_LABEL, device: str = "auto", dtype: str = "float32",
    threads: int | None = None, reporter: Warns | None = None, compile: bool = False,
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
    loaded = load(str(folder), device=device, dtype=dtype, threads=threads, reporter=reporter, compile=compile)
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



def class_probabilities(
    module: torch.nn.Module, id_arrays: list, device: torch.device | str, autocast_dtype: torch.dtype | None = None,
):
    """Class probabilities (N, C) as float32 numpy for one batch of id arrays ([CLS] ... [SEP]
    each), for a sequence classifier. Padded by `pad_batch`, run in inference mode (and autocast
    to `autocast_dtype` when given); the softmax is taken in float32 whatever the compute dtype."""
    from mxdna_cli.model.mxdna import pad_batch

    device = torch.device(device)
    input_ids, attention_mask = pad_batch(id_arrays, device)
    cast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
            else contextlib.nullcontext())
    with torch.inference_mode(), cast:
        logits = module(input_ids, attention_mask).logits
    return torch.softmax(logits.float(), dim=-1).cpu().numpy()
