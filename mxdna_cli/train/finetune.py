"""Fine-tune MxDNA as a sequence classifier (`mxdna finetune`): read labelled DNA, split, train, test.

Inputs. Each input is `FILE` or `LABEL=FILE`; the format comes from the file name (`.gz` allowed):

* CSV/TSV (`.csv`, `.tsv`, `.txt`): a header naming a `sequence` and a `label` column (the GUE
  format, `sequence,label`); other columns are ignored. `.csv` is comma-separated, `.tsv` tab-
  separated, `.txt` is sniffed from the header. `LABEL=` is not allowed here.
* FASTA (`.fa`, `.fasta`, `.fna`, `.fas`): one file per class. Every record gets the file's label:
  `LABEL=` if given, else the file name without its extensions (`promoter.fa.gz` -> `promoter`).
* BED (`.bed`) with `genome` (an indexed or indexable FASTA): the label is `LABEL=` if given (one BED
  per class), else column 4 (the BED name) of each line. A region on the `-` strand (column 6) is
  read reverse-complemented; a region without strand is read as `+`.

Sequences may contain N and IUPAC codes (read as [UNK]); any other letter is a DataError naming the
file, line or record and the position. Labels are ordered numerically when they are all integers,
else alphabetically, unless `labels` gives the order; with two classes the second is the positive
class of F1/AUROC/AUPRC (`nonpromoter`, `promoter` -> `promoter`).

Splits. Inputs given as `valid`/`test` are used as they are; any split not given is carved from
`train` by a seeded split stratified by class (`split`, default 80/10/10). Every class needs at
least 2 examples in every split, and there must be at least two classes: otherwise DataError.

Model. Either from pretrained weights (`pretrained`: a masked-LM model folder or bundled name;
its backbone `model.*` and, for pooling="decoder", the MLM's cross-attention `decoder.*` and the
LayerNorm `norm.*` after it are copied into the classifier, whose head is freshly initialised) or
from scratch (`from_scratch` with a `preset`). Training: AdamW (no decay on biases and norms),
linear warmup then linear or cosine decay to 0, class-weighted cross-entropy ("balanced" weights
n / (C n_c) from the training split), evaluation on the validation split every epoch (or every
`eval_every` steps), early stopping when the validation MCC has not strictly improved for
`patience` evaluations; the best model (by validation MCC) is restored, scored on the test split
and saved with `weights.save_model` plus a markdown card (`README.md`) and `training_log.tsv`.

A run is deterministic on the CPU given its seed (model initialisation, data order and router
jitter are all drawn from seeded generators).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mxdna_cli import sequence as vocab
from mxdna_cli.runtime import pick_device
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.bed import is_skipped, read_bed
from mxdna_cli.io.faidx import IndexedFasta
from mxdna_cli.io.fasta import check_input_file, open_text_input, raw_entries
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import POOLINGS, MxDNAForSequenceClassification, pad_batch
from mxdna_cli.train.metrics import METRIC_NAMES, classification_metrics

TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")
BED_SUFFIXES = (".bed",)
COMPRESSED_SUFFIXES = (".gz", ".bgz")
SPLITS = ("train", "valid", "test")
MIN_PER_CLASS = 2
SCHEDULES = ("linear", "cosine")
CLASS_WEIGHTINGS = ("balanced", "none")
LOG_FILE = "training_log.tsv"
CARD_NAME = "README.md"
LOG_COLUMNS = ("step", "epoch", "kind", "loss", "lr", *METRIC_NAMES, "seconds")


@dataclass
class FinetuneSettings:
    train: list[str]  # inputs, each FILE or LABEL=FILE (CSV/TSV, FASTA per class, BED + genome)
    out_dir: str  # the classifier model folder to write
    valid: list[str] = field(default_factory=list)  # given validation inputs (else carved from train)
    test: list[str] = field(default_factory=list)  # given test inputs (else carved from train)
    genome: str | None = None  # FASTA that BED inputs refer to
    pretrained: str | None = None  # masked-LM model folder or bundled name (None: the default model)
    from_scratch: bool = False  # random initialisation of `preset` instead of pretrained weights
    preset: str = "small"
    pooling: str = "decoder"
    labels: list[str] | None = None  # class order (default: numeric or alphabetical); last = positive
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimiser steps in all (overrides epochs)
    batch_size: int = 16
    eval_batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # share of all steps spent warming up linearly from 0
    schedule: str = "linear"  # decay after warmup: linear or cosine, to 0 at the last step
    clip: float = 1.0
    class_weighting: str = "balanced"
    patience: int = 3  # evaluations without a better validation MCC before stopping
    eval_every: int | None = None  # steps between evaluations (None: once per epoch)
    classifier_dropout: float | None = None  # None: keep the model config's
    max_length: int = 4096  # longer sequences are refused (attention memory grows with length^2)
    half: bool = False  # store the classifier as float16
    threads: int = 2
    device: str = "auto"


# ---------------------------------------------------------------------------------------------
# Reading labelled sequences


@dataclass
class LabeledExamples:
    """Sequences (text), their labels (strings) and where each came from (file:line or record)."""

    sequences: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def extend(self, other: "LabeledExamples") -> None:
        self.sequences += other.sequences
        self.labels += other.labels
        self.sources += other.sources

    def __len__(self) -> int:
        return len(self.sequences)


def parse_input_spec(spec: str) -> tuple[str | None, str]:
    """`FILE` or `LABEL=FILE` -> (label or None, path). An existing file named with '=' is a file."""
    if os.path.exists(spec) or "=" not in spec:
        return None, spec
    label, path = spec.split("=", 1)
    if not label.strip():
        raise UsageError(f"input '{spec}': empty label before '='; use LABEL=FILE")
    return label.strip(), path


def input_format(path: str) -> str:
    """'table', 'fasta' or 'bed', from the file name."""
    name = Path(path).name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    if name.endswith(FASTA_SUFFIXES):
        return "fasta"
    if name.endswith(BED_SUFFIXES):
        return "bed"
    known = ", ".join(TABLE_SUFFIXES + FASTA_SUFFIXES + BED_SUFFIXES)
    raise UsageError(f"{path}: unknown input format (file name must end in {known}, optionally .gz)")


def file_stem(path: str) -> str:
    """`data/promoter.fa.gz` -> `promoter`."""
    name = Path(path).name
    lowered = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lowered.endswith(suffix):
            name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
    for suffix in TABLE_SUFFIXES + FASTA_SUFFIXES + BED_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_sequence(sequence: str, where: str) -> str:
    if not sequence:
        raise DataError(f"{where}: empty sequence")
    vocab.encode(sequence, where)  # DataError naming `where` and the position of a non-DNA letter
    return sequence


def read_table(path: str) -> LabeledExamples:
    """A CSV/TSV file with `sequence` and `label` columns (header required, any column order)."""
    check_input_file(path)
    lowered = Path(path).name.lower()
    examples = LabeledExamples()
    try:
        with open_text_input(path) as handle:
            lines = enumerate(handle, start=1)
            header_number, header = next(((n, line) for n, line in lines if line.strip()), (0, ""))
            if not header:
                raise DataError(f"{path}: empty file, expected a header with 'sequence' and 'label' columns")
            if ".tsv" in lowered:
                delimiter = "\t"
            elif ".csv" in lowered:
                delimiter = ","
            else:
                delimiter = "\t" if "\t" in header else ","
            columns = [c.strip().lower() for c in next(csv.reader([header], delimiter=delimiter))]
            if "sequence" not in columns or "label" not in columns:
                raise DataError(
                    f"{path}:{header_number}: expected a header with 'sequence' and 'label' columns, "
                    f"found {header.strip()[:60]!r}"
                )
            seq_col, label_col = columns.index("sequence"), columns.index("label")
            for number, line in lines:
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                row = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter))
                if len(row) <= max(seq_col, label_col):
                    raise DataError(f"{where}: expected {len(columns)} columns, got {len(row)}")
                sequence, label = row[seq_col].strip(), row[label_col].strip()
                if not label:
                    raise DataError(f"{where}: empty label")
                examples.sequences.append(_check_sequence(sequence, where))
                examples.labels.append(label)
                examples.sources.append(where)
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read as CSV/TSV text ({error})") from None
    if not examples.sequences:
        raise DataError(f"{path}: no sequences (only a header)")
    return examples


def read_fasta_class(path: str, label: str | None = None) -> LabeledExamples:
    """Every record of a FASTA file (plain or gzip), all with one label (default: the file name's stem).

    Unlike a genome, a labelled set may repeat record names (CNNProm's headers are gene
    descriptions), so names are not required to be unique here.
    """
    check_input_file(path)
    label = label if label is not None else file_stem(path)
    examples = LabeledExamples()
    for number, (name, sequence, quality) in enumerate(raw_entries(path), start=1):
        where = f"{path}: record {number} '{name}'"
        if quality is not None:
            raise DataError(f"{where} is FASTQ; FASTA needed")
        examples.sequences.append(_check_sequence(sequence, where))
        examples.labels.append(label)
        examples.sources.append(where)
    if not examples.sequences:
        raise DataError(f"{path}: no FASTA records found")
    return examples


def _bed_line_numbers(path: str) -> list[int]:
    """Line number of each region of a BED file, in the order `read_bed` returns them."""
    with open_text_input(path) as handle:
        return [number for number, line in enumerate(handle, start=1) if not is_skipped(line)]


def read_bed_labeled(path: str, genome: str | None, label: str | None = None) -> LabeledExamples:
    """BED regions fetched from `genome` ('-' strand reverse-complemented); label: given or column 4."""
    if genome is None:
        raise UsageError(f"{path}: a BED input needs a genome FASTA to read the sequences from (--genome)")
    regions = read_bed(path)
    numbers = _bed_line_numbers(path)
    examples = LabeledExamples()
    with IndexedFasta(genome) as fasta:
        for region, number in zip(regions, numbers):
            where = f"{path}:{number}"
            region_label = label if label is not None else region.name
            if not region_label:
                raise DataError(
                    f"{where}: no label: column 4 (name) holds the class label, or give the file as LABEL={path}"
                )
            try:
                sequence = fasta.fetch(region)
            except DataError as error:
                raise DataError(f"{where}: {error}") from None
            if region.strand == "-":
                sequence = vocab.reverse_complement(sequence)
            examples.sequences.append(_check_sequence(sequence, where))
            examples.labels.append(region_label)
            examples.sources.append(where)
    return examples


def read_labeled(specs: Sequence[str], genome: str | None = None) -> LabeledExamples:
    """Read and concatenate inputs given as FILE or LABEL=FILE (see the module docstring)."""
    examples = LabeledExamples()
    for spec in specs:
        label, path = parse_input_spec(spec)
        check_input_file(path)
        kind = input_format(path)
        if kind == "table":
            if label is not None:
                raise UsageError(f"input '{spec}': a CSV/TSV file has its own label column; give it without LABEL=")
            examples.extend(read_table(path))
        elif kind == "fasta":
            examples.extend(read_fasta_class(path, label))
        else:
            examples.extend(read_bed_labeled(path, genome, label))
    return examples


# ---------------------------------------------------------------------------------------------
# Labels and splits


def order_labels(labels: Sequence[str], explicit: Sequence[str] | None = None) -> list[str]:
    """The class order: `explicit`, else numeric when all labels are integers, else alphabetical."""
    present = set(labels)
    if explicit:
        explicit = [str(label) for label in explicit]
        if len(set(explicit)) != len(explicit):
            raise UsageError(f"labels {explicit}: a label is repeated")
        unknown = sorted(present - set(explicit))
        if unknown:
            raise DataError(f"label '{unknown[0]}' in the data is not among the given labels ({', '.join(explicit)})")
        ordered = list(explicit)
    else:
        try:
            ordered = sorted(present, key=lambda text: (int(text), text))
        except ValueError:
            ordered = sorted(present)
    if len(present) < 2:
        only = next(iter(present)) if present else "none"
        raise DataError(f"only one class in the data ('{only}'): a classifier needs at least two labels")
    missing = [label for label in ordered if label not in present]
    if missing:
        raise DataError(f"class '{missing[0]}' has no examples in the data")
    return ordered


def _carve(indices: np.ndarray, y: np.ndarray, fraction: float, rng: np.random.Generator):
    """Split `indices` into (rest, carved) with round(n_c * fraction) of each class carved."""
    rest, carved = [], []
    for label in np.unique(y[indices]):
        members = indices[y[indices] == label]
        members = members[rng.permutation(len(members))]
        take = int(math.floor(len(members) * fraction + 0.5))
        carved.append(members[:take])
        rest.append(members[take:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(carved))


def stratified_split(y: Sequence[int], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded split of example indices into train/valid/test, stratified by class.

    Each class c of n_c examples gives round(n_c * valid) to validation and round(n_c * test) to
    test; the rest trains. Returns sorted index arrays.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise UsageError(f"split {fractions}: need three fractions (train, valid, test) that sum to 1, train > 0")
    y = np.asarray(y)
    rng = np.random.default_rng([seed, 2])
    all_indices = np.arange(len(y))
    rest, test = _carve(all_indices, y, fractions[2], rng)
    # valid is a share of what is left, so that the three shares match `fractions`
    remaining = fractions[0] + fractions[1]
    train, valid = _carve(rest, y, fractions[1] / remaining if remaining else 0.0, rng)
    return {"train": train, "valid": valid, "test": test}


def class_counts(y: np.ndarray, labels: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(labels))
    return {label: int(count) for label, count in zip(labels, counts)}


def check_split_counts(counts: dict[str, dict[str, int]]) -> None:
    """DataError unless every class has at least MIN_PER_CLASS examples in every split."""
    for split, per_class in counts.items():
        for label, count in per_class.items():
            if count < MIN_PER_CLASS:
                total = sum(c[label] for c in counts.values())
                raise DataError(
                    f"class '{label}' has {count} example(s) in the {split} split ({total} in all); every class needs "
                    f"at least {MIN_PER_CLASS} in each of train, valid and test: give more examples of it, "
                    "larger split fractions, or explicit split files"
                )


@dataclass
class FinetuneData:
    labels: list[str]
    sequences: dict[str, list[str]]  # split -> sequences
    y: dict[str, np.ndarray]  # split -> class indices
    info: dict  # provenance and counts, stored in the model card

    @property
    def window(self) -> int:
        return int(self.info["window"])


def load_finetune_data(settings: FinetuneSettings) -> FinetuneData:
    """Read the inputs, order the labels, split (given or seeded stratified), check the counts."""
    given = {"train": read_labeled(settings.train, settings.genome)}
    for split in ("valid", "test"):
        specs = getattr(settings, split)
        if specs:
            given[split] = read_labeled(specs, settings.genome)
    all_labels = [label for examples in given.values() for label in examples.labels]
    labels = order_labels(all_labels, settings.labels)
    index = {label: i for i, label in enumerate(labels)}

    train = given["train"]
    y_train = np.array([index[label] for label in train.labels], dtype=np.int64)
    sequences, y = {}, {}
    fractions = tuple(settings.split)
    if "valid" in given and "test" in given:
        picks = {"train": np.arange(len(train))}
        how = "given train/valid/test inputs"
    else:
        missing = [s for s in ("valid", "test") if s not in given]
        # carve only the missing splits, keeping their share relative to train's
        wanted = {s: fractions[SPLITS.index(s)] for s in missing}
        total = fractions[0] + sum(wanted.values())
        shares = (fractions[0] / total, wanted.get("valid", 0.0) / total, wanted.get("test", 0.0) / total)
        picks = stratified_split(y_train, shares, settings.seed)
        picks = {s: p for s, p in picks.items() if s == "train" or s in missing}
        how = f"seeded stratified split of train (seed {settings.seed}) for {', '.join(missing)}; fractions {fractions}"
    for split, chosen in picks.items():
        sequences[split] = [train.sequences[i] for i in chosen]
        y[split] = y_train[chosen]
    for split in ("valid", "test"):
        if split in given:
            sequences[split] = given[split].sequences
            y[split] = np.array([index[label] for label in given[split].labels], dtype=np.int64)

    counts = {split: class_counts(y[split], labels) for split in SPLITS}
    check_split_counts(counts)
    lengths = [len(s) for split in SPLITS for s in sequences[split]]
    longest = max(lengths)
    if longest > settings.max_length:
        raise DataError(
            f"a sequence is {longest} bp long, more than max_length {settings.max_length}; "
            "cut the inputs into windows or raise max_length"
        )
    length_counts = Counter(lengths)
    train_set = set(s.upper() for s in sequences["train"])
    shared = {split: sum(s.upper() in train_set for s in sequences[split]) for split in ("valid", "test")}
    info = {
        "inputs": {"train": list(settings.train), "valid": list(settings.valid), "test": list(settings.test),
                   "genome": settings.genome},
        "split": how,
        "counts": counts,
        "window": longest,
        "lengths": {"min": min(lengths), "max": longest, "most_common": length_counts.most_common(1)[0][0]},
        "identical_to_a_train_sequence": shared,
    }
    return FinetuneData(labels=labels, sequences=sequences, y=y, info=info)


# ---------------------------------------------------------------------------------------------
# Model: build, load pretrained weights


def backbone_keys(key: str, pooling: str) -> bool:
    """Whether a pretrained tensor is copied into a classifier with this pooling."""
    if key.startswith("model."):
        return True
    return pooling == "decoder" and (key.startswith("decoder.") or key.startswith("norm."))


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


def _comparable(config: ModelConfig) -> dict:
    values = config.to_dict()
    values.pop("classifier_dropout", None)
    values.pop("name", None)
    return values


def build_classifier(settings: FinetuneSettings, num_labels: int) -> tuple[MxDNAForSequenceClassification, dict | None]:
    """A seeded classifier, from pretrained weights or (from_scratch) a preset."""
    if settings.pooling not in POOLINGS:
        raise UsageError(f"pooling '{settings.pooling}': choose from {', '.join(POOLINGS)}")
    if settings.from_scratch and settings.pretrained is not None:
        raise UsageError("give either pretrained weights or from_scratch, not both")
    if settings.from_scratch:
        config, source = ModelConfig.preset(settings.preset), None
    else:
        from mxdna_cli.weights import read_info, resolve_model

        source = resolve_model(settings.pretrained)
        config = read_info(source).config
    if settings.classifier_dropout is not None:
        config = replace(config, classifier_dropout=float(settings.classifier_dropout))
    torch.manual_seed(settings.seed)
    model = MxDNAForSequenceClassification(config, num_labels=num_labels, pooling=settings.pooling)
    provenance = None if source is None else load_pretrained_backbone(model, str(source))
    return model, provenance


# ---------------------------------------------------------------------------------------------
# Prediction and evaluation


def _ids(sequence) -> np.ndarray:
    if isinstance(sequence, np.ndarray):
        return sequence
    return vocab.encode(sequence)


@torch.no_grad()
def predict_probabilities(
    model: MxDNAForSequenceClassification,
    sequences: Sequence,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Class probabilities (N, C) float32 for DNA texts or id arrays, in input order (eval mode)."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    rows = []
    try:
        for start in range(0, len(sequences), batch_size):
            batch = [_ids(s) for s in sequences[start : start + batch_size]]
            input_ids, mask = pad_batch(batch, device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                logits = model(input_ids, mask).logits
            rows.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    finally:
        model.train(was_training)
    if not rows:
        return np.zeros((0, model.num_labels), dtype=np.float32)
    return np.concatenate(rows).astype(np.float32)


def evaluate_classifier(
    model: MxDNAForSequenceClassification,
    sequences: Sequence,
    labels: Sequence[int],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> dict:
    """accuracy, f1, mcc, auroc, auprc, n, confusion, loss (mean cross-entropy) and probabilities (N, C)."""
    probabilities = predict_probabilities(model, sequences, batch_size=batch_size, device=device,
                                          autocast_dtype=autocast_dtype)
    y = np.asarray(labels, dtype=np.int64)
    result = classification_metrics(y, probabilities)
    picked = probabilities[np.arange(len(y)), y].astype(np.float64)
    result["loss"] = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
    result["probabilities"] = probabilities
    return result


# ---------------------------------------------------------------------------------------------
# Training


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warmup from 0 to 1 over `warmup` steps, then linear or cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - progress


def class_weights(y: np.ndarray, num_labels: int, how: str) -> torch.Tensor | None:
    if how == "none":
        return None
    counts = np.bincount(y, minlength=num_labels).astype(np.float64)
    return torch.tensor(len(y) / (num_labels * counts), dtype=torch.float32)


def _check_settings(settings: FinetuneSettings) -> None:
    if settings.schedule not in SCHEDULES:
        raise UsageError(f"schedule '{settings.schedule}': choose from {', '.join(SCHEDULES)}")
    if settings.class_weighting not in CLASS_WEIGHTINGS:
        raise UsageError(f"class weighting '{settings.class_weighting}': choose from {', '.join(CLASS_WEIGHTINGS)}")
    for name in ("epochs", "batch_size", "eval_batch_size", "patience", "threads", "max_length"):
        if getattr(settings, name) < 1:
            raise UsageError(f"{name} must be at least 1")
    if settings.max_steps is not None and settings.max_steps < 1:
        raise UsageError("max_steps must be at least 1")
    if settings.eval_every is not None and settings.eval_every < 1:
        raise UsageError("eval_every must be at least 1")
    if not 0 <= settings.warmup_ratio < 1:
        raise UsageError("warmup_ratio must lie in [0, 1)")
    if settings.lr < 0 or settings.weight_decay < 0:
        raise UsageError("lr and weight_decay must not be negative")


def _clean(value):
    """JSON-friendly: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _public_metrics(result: dict) -> dict:
    return _clean({k: v for k, v in result.items() if k != "probabilities"})


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def check_out_dir(out_dir: str) -> None:
    """Refuse, before any loading, a model folder that cannot be written as a new folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out_dir}: is a file; give a new folder name for the classifier")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"-o {out_dir}: folder exists and is not empty; give a new folder name (or remove it)")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"-o {out_dir}: parent folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"-o {out_dir}: parent folder {parent} is not writable")


@contextlib.contextmanager
def staged_folder(out_dir: str):
    """A hidden folder beside `out_dir` to write into; renamed to `out_dir` when the block succeeds,
    deleted when it fails or is interrupted, so no empty or half-written model folder is left."""
    out = Path(out_dir).resolve()
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield staging
        if out.is_dir():
            out.rmdir()  # empty (checked before the run)
        os.replace(staging, out)
        os.chmod(out, 0o755)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def run_finetune(settings: FinetuneSettings, progress: Callable[[int, dict], None] | None = None) -> dict:
    """Fine-tune, early-stop on validation MCC, test, and save the classifier folder.

    `progress(step, row)` is called after every optimiser step (row kind "train": loss, lr) and
    every evaluation (row kind "validation": loss and the metrics). Returns a summary: out_dir,
    labels, window, metrics (test and best validation), best_step, steps, epochs, stopped_early,
    seconds, pretrained_from.
    """
    _check_settings(settings)
    check_out_dir(settings.out_dir)
    started = time.monotonic()
    torch.set_num_threads(settings.threads)
    device = pick_device(settings.device)
    autocast = torch.bfloat16 if device.type == "cuda" else None
    data = load_finetune_data(settings)
    num_labels = len(data.labels)
    model, pretrained_from = build_classifier(settings, num_labels)
    model.to(device).train()

    train_ids = [vocab.encode(s) for s in data.sequences["train"]]
    y_train = data.y["train"]
    weights = class_weights(y_train, num_labels, settings.class_weighting)
    weights = None if weights is None else weights.to(device)

    steps_per_epoch = math.ceil(len(train_ids) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    warmup = int(settings.warmup_ratio * total_steps)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr, betas=(0.9, 0.98), eps=1e-6,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, total_steps, settings.schedule)
    )
    order_rng = np.random.default_rng([settings.seed, 1])
    eval_every = settings.eval_every or steps_per_epoch

    log_rows: list[dict] = []

    def record(row: dict) -> None:
        row["seconds"] = time.monotonic() - started
        log_rows.append(row)
        if progress:
            progress(row["step"], row)

    def validate(step: int, epoch: float) -> dict:
        result = evaluate_classifier(model, data.sequences["valid"], data.y["valid"], settings.eval_batch_size,
                                     device, autocast)
        model.train()
        row = {"step": step, "epoch": round(epoch, 4), "kind": "validation", "loss": result["loss"],
               **{name: result[name] for name in METRIC_NAMES}}
        record(row)
        return result

    best = {"mcc": -math.inf, "step": 0, "state": None, "metrics": None}
    evaluations_since_best = 0
    stopped_early = False
    step = 0
    while step < total_steps and not stopped_early:
        order = order_rng.permutation(len(train_ids))
        for start in range(0, len(order), settings.batch_size):
            chosen = order[start : start + settings.batch_size]
            input_ids, mask = pad_batch([train_ids[i] for i in chosen], device)
            labels = torch.from_numpy(y_train[chosen]).to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                output = model(input_ids, mask, labels=labels, class_weights=weights)
            output.loss.backward()
            if settings.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            step += 1
            record({"step": step, "epoch": round(step / steps_per_epoch, 4), "kind": "train",
                    "loss": float(output.loss.detach()), "lr": lr})
            if step % eval_every == 0 or step == total_steps:
                result = validate(step, step / steps_per_epoch)
                if result["mcc"] > best["mcc"]:
                    best = {"mcc": result["mcc"], "step": step, "metrics": _public_metrics(result),
                            "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                    evaluations_since_best = 0
                else:
                    evaluations_since_best += 1
                    if evaluations_since_best >= settings.patience:
                        stopped_early = step < total_steps
                        break
            if step >= total_steps:
                break

    model.load_state_dict(best["state"])
    model.eval()
    test = evaluate_classifier(model, data.sequences["test"], data.y["test"], settings.eval_batch_size, device,
                               autocast)
    seconds = time.monotonic() - started
    metrics = {"test": _public_metrics(test), "validation": best["metrics"], "best_step": best["step"],
               "steps": step, "epochs": round(step / steps_per_epoch, 4), "stopped_early": stopped_early,
               "train_seconds": round(seconds, 1)}
    settings_dict = _clean(asdict(settings))
    extra = {
        "labels": data.labels,
        "window": data.window,
        "metrics": metrics,
        "dataset": _clean(data.info),
        "settings": settings_dict,
        "pretrained_from": pretrained_from,
    }
    from mxdna_cli.weights import save_model

    out = Path(settings.out_dir)
    with staged_folder(settings.out_dir) as staging:
        model_info = save_model(model.cpu(), staging, half=settings.half, extra=extra)
        _write_log(staging / LOG_FILE, log_rows)
        (staging / CARD_NAME).write_text(model_card(out.name, data, metrics, settings, pretrained_from, model.config))
    model.to(device)
    return {"out_dir": str(out), "labels": data.labels, "window": data.window, "metrics": metrics,
            "best_step": best["step"], "steps": step, "epochs": metrics["epochs"], "stopped_early": stopped_early,
            "seconds": seconds, "pretrained_from": pretrained_from, "sha256": model_info.sha256,
            "test_probabilities": test["probabilities"], "log": log_rows}


def _write_log(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    buffer.write("\t".join(LOG_COLUMNS) + "\n")
    for row in rows:
        buffer.write("\t".join(_fmt(row.get(column)) for column in LOG_COLUMNS) + "\n")
    path.write_text(buffer.getvalue())


def _metric_cell(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def model_card(name: str, data: FinetuneData, metrics: dict, settings: FinetuneSettings,
               pretrained_from: dict | None, config: ModelConfig) -> str:
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
        "Metrics are those of the float32 model" + (" (stored as float16)." if settings.half else "."),
        "",
    ]
    return "\n".join(lines)
