"""Transfer learning: a new sequence classifier, from scratch or started from a pretrained
masked-LM model, whose backbone `model.*` and, for pooling="decoder", cross-attention `decoder.*`
and the LayerNorm `norm.*` after it are copied in; the classification head is always fresh."""

from __future__ import annotations

from dataclasses import replace

import torch

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.model.config import ConfigError, ModelConfig
from mxdna_cli.model.mxdna import POOLINGS, MxDNAForSequenceClassification


def backbone_keys(key: str, pooling: str) -> bool:
    """Whether a pretrained tensor is copied into a classifier with this pooling."""
    if key.startswith("model."):
        return True
    return pooling == "decoder" and key.startswith(("decoder.", "norm."))


def load_pretrained_backbone(classifier: MxDNAForSequenceClassification, source: str | None) -> dict:
    """Copy a saved model's backbone (and, for pooling="decoder", decoder and norm) into `classifier`.

    `source` is a model folder or bundled name (None: the default model). The configurations must
    agree apart from the classifier dropout. Returns provenance: path, name, task, sha256, copied keys.
    """
    from mxdna_cli.weights import load_model, resolve_model

    folder = resolve_model(source)
    pretrained, info = load_model(folder)
    if _comparable(info.config) != _comparable(classifier.config):
        raise DataError(f"{folder}: its model configuration does not match the classifier's")
    target = classifier.state_dict()
    copied = []
    with torch.no_grad():
        for key, value in pretrained.state_dict().items():
            if backbone_keys(key, classifier.pooling):
                if key not in target or target[key].shape != value.shape:
                    raise DataError(f"{folder}: tensor {key} does not fit the classifier")
                target[key].copy_(value.to(target[key].dtype))
                copied.append(key)
    needed = [k for k in target if backbone_keys(k, classifier.pooling)]
    missing = sorted(set(needed) - set(copied))
    if missing:
        raise DataError(f"{folder}: has no tensor {missing[0]} to start the classifier from (a {info.task} model)")
    return {"path": str(folder), "name": info.name, "task": info.task, "sha256": info.sha256,
            "config": info.config.name, "trained": info.trained, "copied_tensors": len(copied)}


def preset_config(name: str) -> ModelConfig:
    """The configuration of `--preset NAME`; an unknown name is a usage error."""
    try:
        return ModelConfig.preset(name)
    except ConfigError as error:
        raise UsageError(f"--preset: {error}") from None


def _comparable(config: ModelConfig) -> dict:
    values = config.to_dict()
    values.pop("classifier_dropout", None)
    values.pop("name", None)
    return values



def new_classifier(
    num_labels: int, *, pooling: str, pretrained: str | None, from_scratch: bool, preset: str,
    classifier_dropout: float | None, seed: int,
) -> tuple[MxDNAForSequenceClassification, dict | None]:
    """A seeded classifier, from pretrained weights (None: the default model) or, with
    `from_scratch`, a random `preset`. Returns it and the pretrained model's provenance (or None)."""
    if pooling not in POOLINGS:
        raise UsageError(f"pooling '{pooling}': choose from {', '.join(POOLINGS)}")
    if from_scratch and pretrained is not None:
        raise UsageError("give either pretrained weights or from_scratch, not both")
    if from_scratch:
        config, source = preset_config(preset), None
    else:
        from mxdna_cli.weights import read_info, resolve_model

        source = resolve_model(pretrained)
        config = read_info(source).config
    if classifier_dropout is not None:
        config = replace(config, classifier_dropout=float(classifier_dropout))
    torch.manual_seed(seed)
    model = MxDNAForSequenceClassification(config, num_labels=num_labels, pooling=pooling)
    provenance = None if source is None else load_pretrained_backbone(model, str(source))
    return model, provenance
