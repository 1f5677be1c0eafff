"""Fine-tune MxDNA as a sequence classifier (`mxdna finetune`): read labelled DNA, split, train, test.

Inputs: the labelled-set formats of `mxdna_cli.io.labeled` (CSV/TSV, LABEL=FASTA, BED + genome).
Labels are ordered numerically when they are all integers, else alphabetically, unless `labels`
gives the order; with two classes the second is the positive class of F1/AUROC/AUPRC
(`nonpromoter`, `promoter` -> `promoter`).

Splits (`mxdna_cli.train.splits`). Inputs given as `valid`/`test` are used as they are; any split
not given is carved from `train` by a seeded split stratified by class (`split`, default
80/10/10). Every class needs at least 2 examples in every split, and at least two classes.

Model (`mxdna_cli.train.transfer`): from pretrained weights (`pretrained`: a masked-LM model folder
or bundled name) or from scratch (`from_scratch` with a `preset`). Training
(`mxdna_cli.train.optim`): AdamW (no decay on biases and norms), linear warmup then linear or
cosine decay to 0, class-weighted cross-entropy ("balanced" weights n / (C n_c) from the training
split), `batch_size` examples per step in `grad_accum` micro-batches (over processes under
torchrun, `mxdna_cli.train.distributed`), evaluation on the validation split every epoch (or every
`eval_every` steps), early stopping when the validation MCC has not strictly improved for
`patience` evaluations; the best model (by validation MCC) is restored, scored on the test split
and saved with `weights.save_model` plus a markdown card (`README.md`) and `training_log.tsv`.

Recipe options. `rc_augment` trains on each example's reverse complement with probability 0.5,
drawn afresh every epoch from the run's seeded generator (a promoter read on the other strand is
still a promoter). `eval_strand="both"` scores validation and test as the mean of the class
probabilities of each sequence and of its reverse complement (`mxdna predict --strand both`
scores the same way). `layer_decay` < 1 trains the head and the top layer at `lr` and each layer
below at `layer_decay` times the rate of the one above (`optim.layer_decay_groups`);
`classifier_dropout` sets the head's dropout.

Interruption. Every `checkpoint_every` steps, at an interrupt and when training ends, the whole
state (model, optimiser, schedule, RNG states, position in the data order, best validation state,
log) goes to `checkpoint.pt` in the run area `.NAME.run/` beside the output folder; `resume`
continues from it and ends with the weights the uninterrupted run would have had. The run area is
removed once the model folder is written; the model folder itself only ever appears complete.

A run is deterministic on the CPU given its seed (model initialisation, data order and router
jitter are all drawn from seeded generators). The loss of a step is the class-weighted mean over
all its examples, however they are cut into micro-batches, so accumulation (and torchrun) only
change how the floating-point sums are grouped; with `grad_accum` > 1 every micro-batch draws its
router jitter from its own seed, so that it is the same whichever process trains on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mxdna_cli import sequence as vocab
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.labeled import read_labeled
from mxdna_cli.model.mxdna import MxDNAForSequenceClassification
from mxdna_cli.runtime import pick_device, set_threads
from mxdna_cli.train.interrupts import uninterrupted
from mxdna_cli.train import distributed
from mxdna_cli.train.card import _write_log, model_card
from mxdna_cli.train.metrics import METRIC_NAMES
from mxdna_cli.train.scoring import EVAL_STRANDS, evaluate_classifier, predict_probabilities
from mxdna_cli.train.optim import (
    PRECISIONS,
    SCHEDULES,
    adamw,
    autocast,
    autocast_dtype,
    lambda_schedule,
    precision_reason,
    resolve_precision,
    warmup_decay,
)
from mxdna_cli.train.splits import (
    SPLITS,
    check_split_counts,
    class_counts,
    class_weights_for,
    order_labels,
    stratified_split,
)
from mxdna_cli.train.transfer import load_pretrained_backbone, new_classifier

__all__ = [
    "FinetuneData",
    "FinetuneSettings",
    "build_classifier",
    "check_out_dir",
    "class_weights",
    "evaluate_classifier",
    "load_finetune_data",
    "load_pretrained_backbone",
    "lr_factor",
    "predict_probabilities",
    "read_labeled",
    "run_area",
    "run_finetune",
    "stratified_split",
]

CLASS_WEIGHTINGS = ("balanced", "none")
LOG_FILE = "training_log.tsv"
CARD_NAME = "README.md"
CHECKPOINT = "checkpoint.pt"
RUN_SETTINGS = "settings.json"
# Settings that may differ when a run is resumed: where and how fast it runs, not what it computes
# (grad_accum only regroups the sums of a step; precision is recorded with every run).
RESUMABLE_CHANGES = {"threads", "device", "grad_accum", "checkpoint_every", "precision", "resume"}
lr_factor = warmup_decay  # the fine-tuning schedule (kept under its old name)

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
    batch_size: int = 16  # examples per optimiser step (over all micro-batches and processes)
    grad_accum: int = 1  # micro-batches per step, summed before the step (a multiple of the process count)
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
    rc_augment: bool = False  # train on the reverse complement of each example with probability 0.5
    eval_strand: str = "forward"  # forward, or both: validation/test average the two strands' probabilities
    layer_decay: float = 1.0  # lr multiplier per layer below the top (1: one lr for all)
    max_length: int = 4096  # longer sequences are refused (attention memory grows with length^2)
    half: bool = False  # store the classifier as float16
    threads: int = 2
    device: str = "auto"
    precision: str = "auto"  # training compute: auto (bf16 where native), float32 or bfloat16
    checkpoint_every: int = 100  # optimiser steps between checkpoints in the run area
    resume: bool = False  # continue the interrupted run whose checkpoint is in the run area



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



def data_fingerprint(data: FinetuneData) -> str:
    """SHA-256 of the splits' sequences and labels: a resumed run must train on the same data."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for sequence, label in zip(data.sequences[split], data.y[split].tolist()):
            digest.update(f"{split}\t{label}\t{sequence}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Model


def build_classifier(settings: FinetuneSettings, num_labels: int) -> tuple[MxDNAForSequenceClassification, dict | None]:
    """A seeded classifier, from pretrained weights or (from_scratch) a preset."""
    return new_classifier(num_labels, pooling=settings.pooling, pretrained=settings.pretrained,
                          from_scratch=settings.from_scratch, preset=settings.preset,
                          classifier_dropout=settings.classifier_dropout, seed=settings.seed)


# ---------------------------------------------------------------------------------------------
# Training


def class_weights(y: np.ndarray, num_labels: int, how: str) -> torch.Tensor | None:
    weights = class_weights_for(y, num_labels, how)
    return None if weights is None else torch.tensor(weights, dtype=torch.float32)


def _check_settings(settings: FinetuneSettings) -> None:
    if settings.schedule not in SCHEDULES:
        raise UsageError(f"schedule '{settings.schedule}': choose from {', '.join(SCHEDULES)}")
    if settings.precision not in PRECISIONS:
        raise UsageError(f"precision '{settings.precision}': choose from {', '.join(PRECISIONS)}")
    if settings.class_weighting not in CLASS_WEIGHTINGS:
        raise UsageError(f"class weighting '{settings.class_weighting}': choose from {', '.join(CLASS_WEIGHTINGS)}")
    for name in ("epochs", "batch_size", "eval_batch_size", "patience", "threads", "max_length", "grad_accum",
                 "checkpoint_every"):
        if getattr(settings, name) < 1:
            raise UsageError(f"{name} must be at least 1")
    if settings.grad_accum > settings.batch_size:
        raise UsageError(f"grad_accum {settings.grad_accum} is more than batch_size {settings.batch_size}: "
                         "a micro-batch needs at least one example")
    if settings.max_steps is not None and settings.max_steps < 1:
        raise UsageError("max_steps must be at least 1")
    if settings.eval_every is not None and settings.eval_every < 1:
        raise UsageError("eval_every must be at least 1")
    if not 0 <= settings.warmup_ratio < 1:
        raise UsageError("warmup_ratio must lie in [0, 1)")
    if settings.lr < 0 or settings.weight_decay < 0:
        raise UsageError("lr and weight_decay must not be negative")
    if settings.eval_strand not in EVAL_STRANDS:
        raise UsageError(f"eval strand '{settings.eval_strand}': choose from {', '.join(EVAL_STRANDS)}")
    if not 0 < settings.layer_decay <= 1:
        raise UsageError(f"layer_decay {settings.layer_decay}: must lie in (0, 1] (1 = off)")
    if settings.classifier_dropout is not None and not 0 <= settings.classifier_dropout < 1:
        raise UsageError(f"classifier dropout {settings.classifier_dropout}: must lie in [0, 1)")


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


def run_area(out_dir: str) -> Path:
    """Where a run into `out_dir` keeps its checkpoint until the model folder is written: `.NAME.run/` beside it."""
    out = Path(out_dir).resolve()
    return out.parent / f".{out.name}.run"


def check_resume(settings: FinetuneSettings) -> None:
    """--resume needs the run area's checkpoint; a fresh run must not silently replace one."""
    area = run_area(settings.out_dir)
    has_checkpoint = (area / CHECKPOINT).is_file()
    if settings.resume and not has_checkpoint:
        raise UsageError(f"--resume: no checkpoint of an interrupted run into -o {settings.out_dir} (looked in {area})")
    if not settings.resume and has_checkpoint:
        raise UsageError(f"-o {settings.out_dir}: an interrupted run left its checkpoint in {area}; "
                         "pass --resume to continue it, or remove that folder to start afresh")


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


class FinetuneTrainer:
    """The training state of one run (model, optimiser, schedule, data order, best validation
    state, log) and its steps; `state_dict` / `load_state_dict` make it resumable exactly."""

    def __init__(self, settings: FinetuneSettings, data: FinetuneData, model: MxDNAForSequenceClassification,
                 device: torch.device, precision: str, world: distributed.World) -> None:
        self.settings, self.data, self.model, self.device, self.world = settings, data, model, device, world
        self.precision = precision
        self.train_autocast = autocast_dtype(precision)
        # evaluation as before: the float32 model's metrics on the CPU, bf16 on CUDA
        self.eval_autocast = torch.bfloat16 if device.type == "cuda" else None
        self.train_ids = [vocab.encode(s) for s in data.sequences["train"]]
        self.rc_ids = [vocab.reverse_complement_ids(ids).copy() for ids in self.train_ids] if settings.rc_augment else None
        self.y_train = data.y["train"]
        weights = class_weights_for(self.y_train, len(data.labels), settings.class_weighting)
        self.example_weights = np.ones(len(data.labels)) if weights is None else weights
        self.weights = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
        self.steps_per_epoch = math.ceil(len(self.train_ids) / settings.batch_size)
        total = settings.epochs * self.steps_per_epoch
        self.total_steps = total if settings.max_steps is None else min(total, settings.max_steps)
        warmup = int(settings.warmup_ratio * self.total_steps)
        self.optimizer = adamw(model, lr=settings.lr, weight_decay=settings.weight_decay,
                               layer_decay=settings.layer_decay)
        self.scheduler = lambda_schedule(
            self.optimizer, lambda step: warmup_decay(step, warmup, self.total_steps, settings.schedule))
        self.order_rng = np.random.default_rng([settings.seed, 1])
        # its own stream: turning rc_augment on leaves the data order (and the router jitter) as they were
        self.augment_rng = np.random.default_rng([settings.seed, 2])
        self.flipped: np.ndarray | None = None  # this epoch's choice of strand per training example
        self.eval_every = settings.eval_every or self.steps_per_epoch
        self.order: np.ndarray | None = None  # this epoch's permutation of the training examples
        self.position = 0  # examples of `order` already trained on
        self.step = 0
        self.best = {"mcc": -math.inf, "step": 0, "state": None, "metrics": None}
        self.evaluations_since_best = 0
        self.stopped_early = False
        self.log_rows: list[dict] = []
        self.seconds = 0.0  # training time before this process started (resumed runs)

    @property
    def finished(self) -> bool:
        return self.stopped_early or self.step >= self.total_steps

    # -------------------------------------------------------- state

    def state_dict(self) -> dict:
        return {
            "format": 1,
            "settings": _clean(asdict(self.settings)),
            "data_sha256": data_fingerprint(self.data),
            "precision": self.precision,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "order_rng": self.order_rng.bit_generator.state,
            "order": None if self.order is None else self.order.copy(),
            "augment_rng": self.augment_rng.bit_generator.state,
            "flipped": None if self.flipped is None else self.flipped.copy(),
            "position": self.position,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "step": self.step,
            "best": self.best,
            "evaluations_since_best": self.evaluations_since_best,
            "stopped_early": self.stopped_early,
            "log": self.log_rows,
            "seconds": self.seconds,
        }

    def load_state_dict(self, state: dict, where: Path) -> None:
        old, new = state["settings"], _clean(asdict(self.settings))
        # a setting added since the checkpoint was written had, then, its default
        defaults = _clean(asdict(FinetuneSettings(train=[], out_dir="")))
        for key, value in new.items():
            before = old.get(key, defaults.get(key))
            if key not in RESUMABLE_CHANGES and before != value:
                raise UsageError(f"{where}: the interrupted run was made with {key}={before!r}, not {value!r} "
                                 "(resume with the same settings, or remove the folder to start afresh)")
        if state["data_sha256"] != data_fingerprint(self.data):
            raise DataError(f"{where}: the interrupted run was trained on other data (its inputs have changed)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.order_rng.bit_generator.state = state["order_rng"]
        self.order, self.position = state["order"], state["position"]
        if "augment_rng" in state:
            self.augment_rng.bit_generator.state = state["augment_rng"]
            self.flipped = state["flipped"]
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step, self.best = state["step"], state["best"]
        self.evaluations_since_best, self.stopped_early = state["evaluations_since_best"], state["stopped_early"]
        self.log_rows, self.seconds = state["log"], state["seconds"]

    # -------------------------------------------------------- steps

    def next_batch(self) -> np.ndarray:
        """The examples of the next step, in the seeded order of the epoch (a new order each epoch)."""
        if self.order is None or self.position >= len(self.order):
            self.order = self.order_rng.permutation(len(self.train_ids))
            self.position = 0
            if self.rc_ids is not None:
                self.flipped = self.augment_rng.random(len(self.train_ids)) < 0.5
        chosen = self.order[self.position : self.position + self.settings.batch_size]
        self.position += len(chosen)
        return chosen

    def batch_ids(self, chosen: np.ndarray) -> list[np.ndarray]:
        """The id arrays trained on for these examples: each on the strand drawn for it this epoch."""
        if self.rc_ids is None:
            return [self.train_ids[i] for i in chosen]
        return [self.rc_ids[i] if self.flipped[i] else self.train_ids[i] for i in chosen]

    def _micro_batch_loss(self, chosen: np.ndarray, total_weight: float, batch_size: int) -> torch.Tensor:
        """This micro-batch's share of the step loss: its class-weighted cross-entropy summed and
        divided by the whole step's weight, plus its size's share of the load-balancing loss."""
        input_ids, mask = _pad(self.batch_ids(chosen), self.device)
        labels = torch.from_numpy(self.y_train[chosen]).to(self.device)
        with autocast(self.device, self.train_autocast):
            out = self.model(input_ids, mask)
        cross_entropy = F.cross_entropy(out.logits.float(), labels, weight=self.weights, reduction="sum")
        balance = self.model.config.load_balancing_coef * out.load_balancing_loss
        return cross_entropy / total_weight + balance * (len(chosen) / batch_size)

    def train_step(self) -> dict:
        s = self.settings
        chosen = self.next_batch()
        total_weight = float(self.example_weights[self.y_train[chosen]].sum())
        micro_batches = np.array_split(chosen, s.grad_accum)
        self.optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for index in distributed.my_micro_batches(s.grad_accum, self.world):
            part = micro_batches[index]
            if len(part) == 0:  # the last, short step of an epoch
                continue
            if s.grad_accum == 1:  # one micro-batch: the global RNG stream, as without accumulation
                part_loss = self._micro_batch_loss(part, total_weight, len(chosen))
                part_loss.backward()
            else:
                devices = [self.device] if self.device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices, device_type=self.device.type):
                    torch.manual_seed(distributed.micro_batch_seed(s.seed, self.step, index))
                    part_loss = self._micro_batch_loss(part, total_weight, len(chosen))
                    part_loss.backward()
            loss += float(part_loss.detach())
        distributed.sum_gradients(self.model, self.world)
        (loss,) = distributed.sum_values([loss], self.world, self.device)
        if s.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip)
        lr = max(group["lr"] for group in self.optimizer.param_groups)  # the head's (peak) rate
        with uninterrupted():  # an interrupt lands before or after the step, never inside it
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
        return {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "kind": "train",
                "loss": loss, "lr": lr}

    def validate(self) -> tuple[dict, dict] | tuple[None, None]:
        """Rank 0 scores the validation split and keeps the best state; every process learns
        whether to stop (rank 0 decides, so that all stop at the same step)."""
        row = result = None
        stop = False
        if self.world.main:
            result = evaluate_classifier(self.model, self.data.sequences["valid"], self.data.y["valid"],
                                         self.settings.eval_batch_size, self.device, self.eval_autocast,
                                         strand=self.settings.eval_strand)
            self.model.train()
            row = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "kind": "validation",
                   "loss": result["loss"], **{name: result[name] for name in METRIC_NAMES}}
            if result["mcc"] > self.best["mcc"]:
                self.best = {"mcc": result["mcc"], "step": self.step, "metrics": _public_metrics(result),
                             "state": {k: v.detach().clone().cpu() for k, v in self.model.state_dict().items()}}
                self.evaluations_since_best = 0
            else:
                self.evaluations_since_best += 1
                stop = self.evaluations_since_best >= self.settings.patience and self.step < self.total_steps
        self.stopped_early = distributed.broadcast_flag(stop, self.world, self.device)
        return row, result


def _pad(id_arrays: list[np.ndarray], device: torch.device):
    from mxdna_cli.model.mxdna import pad_batch

    return pad_batch(id_arrays, device)


def save_checkpoint(trainer: FinetuneTrainer, area: Path) -> None:
    """Write the state atomically (a cut-off write leaves the previous checkpoint whole)."""
    if not trainer.world.main:
        return
    area.mkdir(parents=True, exist_ok=True)
    tmp = area / (CHECKPOINT + ".tmp")
    torch.save(trainer.state_dict(), tmp)
    os.replace(tmp, area / CHECKPOINT)


def run_finetune(
    settings: FinetuneSettings,
    progress: Callable[[int, dict], None] | None = None,
    say: Callable[[str], None] | None = None,
    stop_after_steps: int | None = None,
) -> dict:
    """Fine-tune, early-stop on validation MCC, test, and save the classifier folder.

    `progress(step, row)` is called after every optimiser step (row kind "train": loss, lr) and
    every evaluation (row kind "validation": loss and the metrics); `say(text)` gets one-line
    notes (the precision, a resume, an interrupt). `stop_after_steps` stops (as an interrupt would,
    leaving a resumable checkpoint) after that many steps of this call; returns {"interrupted":
    True, "step": ...} then. Otherwise returns a summary: out_dir, labels, window, metrics (test
    and best validation), best_step, steps, epochs, stopped_early, seconds, pretrained_from,
    precision. Under torchrun, processes other than rank 0 return {"rank": r, "steps": ...}.
    """
    say = say or (lambda text: None)
    _check_settings(settings)
    check_out_dir(settings.out_dir)
    check_resume(settings)
    started = time.monotonic()
    set_threads(settings.threads)
    world, device = distributed.join_world(pick_device(settings.device))
    try:
        distributed.check_micro_batches(settings.grad_accum, world)
        return _run(settings, progress, say, stop_after_steps, started, world, device)
    finally:
        distributed.leave_world(world)


def _run(settings, progress, say, stop_after_steps, started, world, device) -> dict:
    area = run_area(settings.out_dir)
    state = None
    if settings.resume:
        state = torch.load(area / CHECKPOINT, map_location="cpu", weights_only=False)
    precision = resolve_precision(settings.precision, device)
    if state is not None and settings.precision == "auto" and state.get("precision") in ("float32", "bfloat16"):
        precision = resolve_precision(state["precision"], device)  # carry on as the run began
    data = load_finetune_data(settings)
    num_labels = len(data.labels)
    model, pretrained_from = build_classifier(settings, num_labels)
    model.to(device).train()
    trainer = FinetuneTrainer(settings, data, model, device, precision, world)
    if state is not None:
        trainer.load_state_dict(state, area)
        del state
        say(f"resumed the run in {area} at step {trainer.step}")
    asked = "auto" if settings.precision == "auto" else settings.precision
    say(f"training in {precision_reason(precision, device, asked)} on {device}"
        + (f", {world.size} processes" if world.distributed else ""))
    if world.main:
        area.mkdir(parents=True, exist_ok=True)
        run_settings = {**_clean(asdict(settings)), "precision_used": precision, "world_size": world.size}
        (area / RUN_SETTINGS).write_text(json.dumps(run_settings, indent=2) + "\n")
    resumed_seconds = trainer.seconds

    def record(row: dict) -> None:
        row["seconds"] = resumed_seconds + time.monotonic() - started
        trainer.log_rows.append(row)
        if progress and world.main:
            progress(row["step"], row)

    target = trainer.total_steps if stop_after_steps is None else trainer.step + stop_after_steps
    try:
        while not trainer.finished and trainer.step < target:
            record(trainer.train_step())
            if trainer.step % trainer.eval_every == 0 or trainer.step == trainer.total_steps:
                row, _ = trainer.validate()
                if row is not None:
                    record(row)
            trainer.seconds = resumed_seconds + time.monotonic() - started
            if trainer.step % settings.checkpoint_every == 0 or trainer.finished:
                save_checkpoint(trainer, area)
        if not trainer.finished:  # stopped by stop_after_steps: as an interrupt, without the signal
            save_checkpoint(trainer, area)
            return {"interrupted": True, "step": trainer.step, "run_area": str(area)}
    except KeyboardInterrupt:
        trainer.seconds = resumed_seconds + time.monotonic() - started
        save_checkpoint(trainer, area)
        if world.main:
            saved = (area / CHECKPOINT).is_file()
            say(f"interrupted at step {trainer.step}; " + (
                f"checkpoint saved in {area}; run the same command with --resume to continue" if saved
                else "no checkpoint was written yet"))
        raise
    if not world.main:
        return {"rank": world.rank, "steps": trainer.step}
    return _finish(trainer, settings, data, model, device, precision, pretrained_from, area, started, resumed_seconds)


def _finish(trainer, settings, data, model, device, precision, pretrained_from, area, started, resumed_seconds) -> dict:
    """Restore the best state, test it, write the model folder (staged), then drop the run area."""
    best = trainer.best
    model.load_state_dict(best["state"])
    model.eval()
    test = evaluate_classifier(model, data.sequences["test"], data.y["test"], settings.eval_batch_size, device,
                               trainer.eval_autocast, strand=settings.eval_strand)
    seconds = resumed_seconds + time.monotonic() - started
    metrics = {"test": _public_metrics(test), "validation": best["metrics"], "best_step": best["step"],
               "steps": trainer.step, "epochs": round(trainer.step / trainer.steps_per_epoch, 4),
               "stopped_early": trainer.stopped_early, "train_seconds": round(seconds, 1)}
    extra = {
        "labels": data.labels,
        "window": data.window,
        "metrics": metrics,
        "dataset": _clean(data.info),
        "settings": _clean(asdict(settings)),
        "precision": precision,
        "pretrained_from": pretrained_from,
        # how its metrics were scored: `mxdna predict` and `evaluate` read this strand by default
        "eval_strand": settings.eval_strand,
    }
    from mxdna_cli.weights import save_model

    out = Path(settings.out_dir)
    with staged_folder(settings.out_dir) as staging:
        model_info = save_model(model.cpu(), staging, half=settings.half, extra=extra)
        _write_log(staging / LOG_FILE, trainer.log_rows)
        (staging / CARD_NAME).write_text(model_card(out.name, data, metrics, settings, pretrained_from, model.config,
                                                    precision))
    shutil.rmtree(area, ignore_errors=True)  # the model folder is complete: the checkpoint is not needed
    model.to(device)
    return {"out_dir": str(out), "labels": data.labels, "window": data.window, "metrics": metrics,
            "best_step": best["step"], "steps": trainer.step, "epochs": metrics["epochs"],
            "stopped_early": trainer.stopped_early, "seconds": seconds, "pretrained_from": pretrained_from,
            "sha256": model_info.sha256, "test_probabilities": test["probabilities"], "log": trainer.log_rows,
            "precision": precision}
