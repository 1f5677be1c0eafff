"""Model files: save and strictly load safetensors + JSON, SHA-256 checks, bundled models, reference keys.

A saved model is a folder holding `model.safetensors` (tensors; the config and format version are
also in its metadata) and `model.json` (config, task, labels, provenance and the SHA-256 of the
tensor file). Loading is strict: a missing or unexpected key, a shape mismatch or a checksum
mismatch is an error that names it, because silent partial loads gave users of peer tools
different embeddings after a reload. `load_reference_checkpoint` maps the official MxDNA
`ckpt/model.safetensors` (spec §3.11) onto this package's module names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM, MxDNAForSequenceClassification

FORMAT_VERSION = 1
TENSOR_FILE = "model.safetensors"
CARD_FILE = "model.json"
WEIGHTS_ENV = "MXDNA_WEIGHTS"
DEFAULT_MODEL = "mxdna-small"
TASKS = ("masked_lm", "classification")


@dataclass
class ModelInfo:
    """What model.json says about a saved model."""

    path: Path
    task: str
    config: ModelConfig
    sha256: str
    labels: list[str] = field(default_factory=list)
    pooling: str = "decoder"
    trained: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(
    model: nn.Module,
    folder: str | Path,
    *,
    half: bool = False,
    trained: bool = True,
    extra: dict | None = None,
) -> ModelInfo:
    """Write model.safetensors and model.json into `folder` (created), atomically per file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, MxDNAForSequenceClassification):
        task, labels, pooling = "classification", list((extra or {}).get("labels", [])), model.pooling
        if not labels:
            labels = [str(i) for i in range(model.num_labels)]
    elif isinstance(model, MxDNAForMaskedLM):
        task, labels, pooling = "masked_lm", [], "decoder"
    else:
        raise TypeError(f"cannot save a {type(model).__name__}")
    storage = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", storage).contiguous() for k, v in model.state_dict().items()}
    tmp = folder / (TENSOR_FILE + ".tmp")
    # One metadata key: safetensors writes several keys in random order, which would change the SHA-256.
    metadata = json.dumps({"format_version": FORMAT_VERSION, "task": task, "config": model.config.to_dict()}, sort_keys=True)
    save_file(tensors, str(tmp), metadata={"mxdna": metadata})
    os.replace(tmp, folder / TENSOR_FILE)
    os.chmod(folder / TENSOR_FILE, 0o644)  # readable by every user of a shared installation
    card = {
        "format_version": FORMAT_VERSION,
        "task": task,
        "config": model.config.to_dict(),
        "labels": labels,
        "pooling": pooling,
        "trained": trained,
        "storage_dtype": str(storage).replace("torch.", ""),
        "sha256": sha256_of(folder / TENSOR_FILE),
        "extra": {k: v for k, v in (extra or {}).items() if k != "labels"},
    }
    write_card(folder, card)
    return read_info(folder)


def write_card(folder: Path, card: dict) -> None:
    """Write `card` as the folder's model.json, atomically (a temporary file, then rename)."""
    tmp = folder / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, folder / CARD_FILE)


def read_info(folder: str | Path) -> ModelInfo:
    """Read model.json (no tensors); DataError if it is missing or malformed."""
    folder = Path(folder)
    card_path = folder / CARD_FILE
    if not card_path.is_file() or not (folder / TENSOR_FILE).is_file():
        raise DataError(f"{folder}: not a model folder (needs {TENSOR_FILE} and {CARD_FILE})")
    try:
        card = json.loads(card_path.read_text())
        if card.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{card_path}: format version {card.get('format_version')} is not {FORMAT_VERSION}")
        if card["task"] not in TASKS:
            raise DataError(f"{card_path}: unknown task '{card['task']}'")
        return ModelInfo(
            path=folder,
            task=card["task"],
            config=ModelConfig.from_dict(card["config"]),
            sha256=card["sha256"],
            labels=list(card.get("labels", [])),
            pooling=card.get("pooling", "decoder"),
            trained=bool(card.get("trained", True)),
            extra=card.get("extra", {}),
        )
    except (KeyError, TypeError, ValueError, UsageError) as error:
        raise DataError(f"{card_path}: malformed model card ({error})") from None


def build_model(info: ModelInfo) -> nn.Module:
    if info.task == "classification":
        return MxDNAForSequenceClassification(info.config, num_labels=len(info.labels), pooling=info.pooling)
    return MxDNAForMaskedLM(info.config)


def load_state_strict(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy tensors into model; any missing/unexpected key or shape mismatch is a DataError naming it."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise DataError(f"{source}: missing key {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        raise DataError(f"{source}: unexpected key {unexpected[0]}" + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    for key, value in tensors.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise DataError(f"{source}: shape mismatch for {key}: file {tuple(value.shape)}, model {tuple(expected[key].shape)}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises several types for a damaged file
        raise DataError(f"{path}: cannot read safetensors file ({error})") from None


def load_model(folder: str | Path, *, verify: bool = True) -> tuple[nn.Module, ModelInfo]:
    """Load a saved model in eval mode, checking its SHA-256 first."""
    info = read_info(folder)
    tensor_path = info.path / TENSOR_FILE
    if verify:
        actual = sha256_of(tensor_path)
        if actual != info.sha256:
            raise DataError(f"{tensor_path}: SHA-256 {actual[:12]}… does not match the card's {info.sha256[:12]}…")
    model = build_model(info)
    load_state_strict(model, read_tensors(tensor_path), str(tensor_path))
    return model.eval(), info


# ---------------------------------------------------------------- bundled models


def weights_dirs() -> list[Path]:
    """Folders searched for bundled models: $MXDNA_WEIGHTS (if a folder of models), the repo's weights/."""
    dirs = []
    env = os.environ.get(WEIGHTS_ENV)
    if env and Path(env).is_dir() and not (Path(env) / CARD_FILE).is_file():
        dirs.append(Path(env))
    from mxdna_cli import bundled_weights_dir

    dirs.append(bundled_weights_dir())
    return dirs


def list_bundled() -> list[ModelInfo]:
    models = []
    for base in weights_dirs():
        if base.is_dir():
            models.extend(read_info(p) for p in sorted(base.iterdir()) if (p / CARD_FILE).is_file())
    return models


def resolve_model(name_or_path: str | None, *, task: str | None = None) -> Path:
    """A model folder from a path, a bundled name, $MXDNA_WEIGHTS, or the default bundled model."""
    if name_or_path is None:
        env = os.environ.get(WEIGHTS_ENV)
        if env and (Path(env) / CARD_FILE).is_file():
            return Path(env)
        name_or_path = DEFAULT_MODEL
    candidate = Path(name_or_path)
    if (candidate / CARD_FILE).is_file():
        return candidate
    if candidate.name == TENSOR_FILE and (candidate.parent / CARD_FILE).is_file():
        return candidate.parent
    for base in weights_dirs():
        if (base / name_or_path / CARD_FILE).is_file():
            return base / name_or_path
    names = ", ".join(info.name for info in list_bundled()) or "none"
    raise DataError(f"model '{name_or_path}' not found (not a model folder; bundled models: {names})")


# ---------------------------------------------------------------- reference checkpoint

# (pattern in the official checkpoint, replacement in this package), applied in order.
REFERENCE_KEY_RULES: list[tuple[str, str]] = [
    (r"^model\.motif_layers\.", "model.token_layers."),
    (r"^model\.conversion_layer\.motif_masked_token_embedding$", "model.tokenizer.masked_unit_embedding"),
    (r"^model\.conversion_layer\.gate\.", "model.tokenizer.router."),
    (r"^model\.conversion_layer\.input_layernorm\.norm\.", "model.tokenizer.norm."),
    (r"^model\.conversion_layer\.conv_moe\.experts\.(\d+)\.pointwise_conv_pre\.", r"model.tokenizer.experts.\1.pre."),
    (r"^model\.conversion_layer\.conv_moe\.experts\.(\d+)\.depthwise_conv\.", r"model.tokenizer.experts.\1.conv."),
    (r"^model\.conversion_layer\.conv_moe\.experts\.(\d+)\.norm\.norm\.", r"model.tokenizer.experts.\1.norm."),
    (r"^model\.conversion_layer\.conv_moe\.experts\.(\d+)\.pointwise_conv_post\.", r"model.tokenizer.experts.\1.post."),
    (r"^model\.conversion_layer\.deform_conv\.input_layernorm\.norm\.", "model.tokenizer.assembly.norm."),
    (r"^model\.conversion_layer\.deform_conv\.(offset_conv|modulator_conv)\.", r"model.tokenizer.assembly.\1."),
    (r"^model\.conversion_layer\.deform_conv\.regular_conv\.weight$", "model.tokenizer.assembly.weight"),
    (r"^model\.norm\.norm\.", "model.final_norm."),
    (r"\.self_attn\.projection_([qkvo])\.", r".attn.\1."),
    (r"\.cross_attn\.projection_([qkvo])\.", r".attn.\1."),
    (r"\.ffn\.ffn\.", ".ffn."),
    (r"\.input_layernorm\.norm\.", ".attn_norm."),
    (r"\.post_attention_layernorm\.norm\.", ".ffn_norm."),
    (r"^norm\.norm\.", "norm."),
]


def map_reference_key(key: str) -> str:
    for pattern, replacement in REFERENCE_KEY_RULES:
        key = re.sub(pattern, replacement, key)
    return key


def convert_reference_state(tensors: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename reference keys and drop singleton trailing dims (e.g. regular_conv (d, d, 3, 1) -> (d, d, 3))."""
    expected = model.state_dict()
    converted = {}
    for key, value in tensors.items():
        new_key = map_reference_key(key)
        if new_key in expected:
            while value.dim() > expected[new_key].dim() and value.shape[-1] == 1:
                value = value.squeeze(-1)
        converted[new_key] = value
    return converted


def load_reference_checkpoint(path: str | Path, config: ModelConfig | None = None) -> MxDNAForMaskedLM:
    """Load the official MxDNA `ckpt/model.safetensors` (checkpoint-code layout) as a masked-LM model."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    model = MxDNAForMaskedLM(config or ModelConfig.preset("base"))
    load_state_strict(model, convert_reference_state(read_tensors(path), model), str(path))
    return model.eval()
