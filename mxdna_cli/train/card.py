"""What a fine-tuned classifier folder says about itself: the training log (TSV) and the model card
(README.md): data, splits, settings, precision and metrics. It reads a run's `FinetuneData` and
`FinetuneSettings` by their fields (no import of the trainer, which imports this)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from mxdna_cli.model.config import ModelConfig
from mxdna_cli.train.metrics import METRIC_NAMES
from mxdna_cli.train.splits import SPLITS

LOG_COLUMNS = ("step", "epoch", "kind", "loss", "lr", *METRIC_NAMES, "seconds")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _write_log(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    buffer.write("\t".join(LOG_COLUMNS) + "\n")
    for row in rows:
        buffer.write("\t".join(_fmt(row.get(column)) for column in LOG_COLUMNS) + "\n")
    path.write_text(buffer.getvalue())


def _metric_cell(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def model_card(name: str, data: Any, metrics: dict, settings: Any,
               pretrained_from: dict | None, config: ModelConfig, precision: str = "float32") -> str:
    """The markdown card written as README.md in the classifier folder."""
    test, valid = metrics["test"], metrics["validation"] or {}
    start = (f"pretrained model `{pretrained_from['name']}` ({pretrained_from['task']}, sha256 "
             f"{pretrained_from['sha256'][:12]}…)" if pretrained_from else f"random initialisation (preset `{settings.preset}`, no pretraining)")
    positive = data.labels[-1] if len(data.labels) == 2 else None
    lines = [
        f"# {name}: MxDNA sequence classifier",
        "",
        f"Classes: {', '.join(f'`{label}`' for label in data.labels)}"
        + (f" (positive class for F1/AUROC/AUPRC: `{positive}`)." if positive else " (macro averages)."),
        f"Trained on sequences of {data.info['lengths']['min']}–{data.info['lengths']['max']} bp (window {data.window}).",
        f"Started from {start}; model `{config.name}` ({config.hidden_size} hidden, "
        f"{config.num_nucleotide_layers}+{config.num_token_layers} layers), pooling `{settings.pooling}`.",
        "",
        "## Test metrics",
        "",
        "| split | n | accuracy | F1 | MCC | AUROC | AUPRC |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, values in (("test", test), ("validation (best)", valid)):
        if values:
            lines.append(f"| {split} | {values['n']} | " + " | ".join(_metric_cell(values[m]) for m in METRIC_NAMES) + " |")
    lines += [
        "",
        f"Best validation MCC at step {metrics['best_step']} of {metrics['steps']} "
        f"({metrics['epochs']} epochs{', stopped early' if metrics['stopped_early'] else ''}); "
        f"{metrics['train_seconds']} s.",
        "",
        "## Data",
        "",
        f"Inputs: train {', '.join(settings.train)}"
        + (f"; valid {', '.join(settings.valid)}" if settings.valid else "")
        + (f"; test {', '.join(settings.test)}" if settings.test else "")
        + (f"; genome {settings.genome}" if settings.genome else "") + ".",
        f"Split: {data.info['split']}.",
        "",
        "| split | " + " | ".join(data.labels) + " |",
        "|---|" + "---|" * len(data.labels),
    ]
    for split in SPLITS:
        lines.append(f"| {split} | " + " | ".join(str(data.info["counts"][split][label]) for label in data.labels) + " |")
    shared = data.info["identical_to_a_train_sequence"]
    lines += [
        "",
        f"Sequences identical to a training sequence: {shared['valid']} in valid, {shared['test']} in test.",
        "",
        "## Training",
        "",
        f"AdamW lr {settings.lr}, weight decay {settings.weight_decay}, batch {settings.batch_size}, "
        f"{settings.schedule} decay after {settings.warmup_ratio:.0%} warmup, class weighting `{settings.class_weighting}`, "
        f"early stopping on validation MCC (patience {settings.patience}), seed {settings.seed}.",
        f"Layer-wise lr decay {settings.layer_decay:g}"
        + (" (off)" if settings.layer_decay == 1 else " per layer below the top (head and top layer at lr)")
        + f"; classifier dropout {config.classifier_dropout:g}; reverse-complement augmentation "
        + ("on (each example on a random strand, p = 0.5 per epoch)." if settings.rc_augment else "off."),
        "Validation and test scoring: " + (
            "mean of the class probabilities of each sequence and its reverse complement (eval strand `both`; "
            "`mxdna predict` and `mxdna evaluate` score new sequences the same way unless given --strand)."
            if settings.eval_strand == "both" else "the given strand only (eval strand `forward`)."),
        f"Trained in {'bf16 autocast' if precision == 'bfloat16' else 'float32'}"
        + (f", {settings.grad_accum} micro-batches per step" if settings.grad_accum > 1 else "") + ". "
        "Metrics are those of the float32 model" + (" (stored as float16)." if settings.half else "."),
        "",
    ]
    return "\n".join(lines)
