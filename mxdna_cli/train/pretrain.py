"""Masked-LM pretraining with exact checkpoint/resume, and masked-nucleotide evaluation.

One run lives in one folder: `checkpoint.pt` (model, optimiser, scheduler, sampler and RNG states,
written atomically so a run cut off at any moment resumes from its last checkpoint), `log.tsv`
(one row per step, plus validation rows), and `settings.json`. Starting a run in a folder that has
a checkpoint resumes it; the resumed run repeats exactly the losses the uninterrupted run would
have had, because every random draw (window sampling, masking, router jitter) is restored.

Masking: BERT's 15% of nucleotides, 80% [MASK] / 10% random base / 10% unchanged, never at N.
Single-nucleotide masking is what the reference decoder reconstructs (one prediction per
nucleotide), it is the strategy the baselines in the model card are scored on, and it lets the
tokenizer learn units without the unit boundaries being given away by span edges.

Precision (`mxdna_cli.train.optim`): `auto` trains in bf16 autocast where the hardware runs bf16
natively, else float32; a resumed run keeps the precision it began with. Under `torchrun` the
`grad_accum` micro-batches of a step are shared out over the processes (`mxdna_cli.train.distributed`):
every process draws all of them, so that the sampler and masking states stay the same everywhere,
and trains on its own share; only rank 0 writes the run folder. With `grad_accum` > 1 each
micro-batch's router jitter has its own seed, the same whichever process trains on it.

`run_pretrain` is the `mxdna pretrain` verb: train (or resume), then plot and export.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mxdna_cli import sequence as vocab
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.windows import TRAINING_WINDOW
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.train.interrupts import uninterrupted
from mxdna_cli.train.transfer import preset_config
from mxdna_cli.model.mxdna import MxDNAForMaskedLM
from mxdna_cli.runtime import pick_device, set_threads
from mxdna_cli.train import distributed
from mxdna_cli.train.data import (
    HELDOUT_SEQUENCES,
    HELDOUT_SHARE,
    WindowSampler,
    find_fasta_files,
    fixed_validation_windows,
    load_genomes,
    mask_tokens,
    split_heldout,
    split_heldout_share,
)
from mxdna_cli.train.optim import (
    adamw,
    autocast,
    autocast_dtype,
    lambda_schedule,
    precision_reason,
    resolve_precision,
    warmup_cosine_floor,
)

DEFAULT_HELDOUT = [list(item) if isinstance(item, tuple) else item for item in HELDOUT_SEQUENCES]
CHECKPOINT = "checkpoint.pt"
LOG = "log.tsv"
SETTINGS = "settings.json"
LOG_COLUMNS = ("step", "kind", "loss", "mlm_loss", "lb_loss", "accuracy", "lr", "nucleotides", "mean_unit_length", "seconds")
# Settings that may change when a run is resumed (the rest must match the checkpoint).
RESUMABLE_CHANGES = {"steps", "eval_every", "checkpoint_minutes", "threads", "device", "log_every", "precision"}


@dataclass
class PretrainSettings:
    inputs: list[str]
    out_dir: str
    preset: str = "small"
    window: int = TRAINING_WINDOW
    batch_size: int = 16
    grad_accum: int = 1
    steps: int = 20000
    lr: float = 5e-4
    min_lr_ratio: float = 0.1
    warmup: int = 500
    weight_decay: float = 0.01
    clip: float = 1.0
    mask_prob: float = 0.15
    seed: int = 0
    eval_every: int = 250
    eval_windows: int = 64
    checkpoint_minutes: float = 5.0
    threads: int = 2
    device: str = "auto"
    log_every: int = 1
    init_from: str | None = None  # a model folder to start from (warm start; ignored when resuming)
    precision: str = "auto"  # training compute: auto (bf16 where native), float32 or bfloat16
    heldout: list = field(default_factory=lambda: list(DEFAULT_HELDOUT))


lr_factor = warmup_cosine_floor  # the pretraining schedule (kept under its old name)


def with_cls_sep(ids: torch.Tensor, labels: torch.Tensor | None = None):
    """(B, n) nucleotide ids -> (B, n+2) input ids with [CLS]/[SEP], mask, and labels (-100 at specials)."""
    batch = ids.shape[0]
    cls = torch.full((batch, 1), vocab.CLS, dtype=ids.dtype, device=ids.device)
    sep = torch.full((batch, 1), vocab.SEP, dtype=ids.dtype, device=ids.device)
    input_ids = torch.cat([cls, ids, sep], dim=1)
    mask = torch.ones_like(input_ids, dtype=torch.bool)
    if labels is None:
        return input_ids, mask, None
    ignore = torch.full((batch, 1), -100, dtype=labels.dtype, device=labels.device)
    return input_ids, mask, torch.cat([ignore, labels, ignore], dim=1)


def mean_unit_length(center_expert: torch.Tensor, kernel_sizes) -> float:
    centres = center_expert[center_expert >= 0]
    if centres.numel() == 0:
        return float("nan")
    return float(torch.tensor(kernel_sizes, device=centres.device)[centres].float().mean())


def masked_batches(windows: np.ndarray, *, seed: int, mask_prob: float = 0.15, batch_size: int = 16):
    """Seeded (masked ids, labels) batches of fixed windows: the positions every evaluation scores,
    so the model and the count baselines can be compared on exactly the same nucleotides."""
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(windows), batch_size):
        ids = torch.from_numpy(np.asarray(windows[start : start + batch_size], dtype=np.int64))
        yield mask_tokens(ids, generator, mask_prob)


@torch.no_grad()
def evaluate_masked_lm(
    model: MxDNAForMaskedLM,
    windows: np.ndarray,
    *,
    seed: int = 1234,
    mask_prob: float = 0.15,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> dict:
    """Masked-nucleotide loss (nats) and accuracy over fixed windows, with seeded masking."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for masked, labels in masked_batches(windows, seed=seed, mask_prob=mask_prob, batch_size=batch_size):
        input_ids, mask, labels = with_cls_sep(masked, labels)
        with torch.autocast(torch.device(device).type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            out = model(input_ids.to(device), mask.to(device))
        logits = out.logits.float()
        labels = labels.to(device)
        chosen = labels != -100
        # Only the four bases can be right answers: restrict the softmax to them.
        base_logits = logits[chosen][:, vocab.BASE_IDS]
        target = labels[chosen] - vocab.A
        total_loss += float(torch.nn.functional.cross_entropy(base_logits, target, reduction="sum"))
        correct += int((base_logits.argmax(-1) == target).sum())
        count += int(chosen.sum())
    model.train(was_training)
    if count == 0:
        raise DataError("no maskable nucleotides in the evaluation windows")
    return {"loss": total_loss / count, "accuracy": correct / count, "masked": count}


class Pretrainer:
    """Owns one run folder: builds or resumes the state, trains, validates, checkpoints."""

    def __init__(self, settings: PretrainSettings, *, restart: bool = False, say: Callable[[str], None] = print):
        self.settings = settings
        self.say = say
        self.out = Path(settings.out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {settings.out_dir}: is a file; give a run folder")
        preset_config(settings.preset)  # a bad preset is a usage error before anything is read or made
        set_threads(settings.threads)
        self.world, self.device = distributed.join_world(pick_device(settings.device))
        distributed.check_micro_batches(settings.grad_accum, self.world)
        self.precision = resolve_precision(settings.precision, self.device)
        self.autocast = autocast_dtype(self.precision)

        files = find_fasta_files(settings.inputs)
        heldout = [tuple(item) if isinstance(item, list) else item for item in settings.heldout]
        genomes = load_genomes(files)
        train, held = split_heldout(genomes, heldout)
        self.heldout_note = "named held-out sequences"
        if len(held) == 0 and settings.heldout == DEFAULT_HELDOUT:
            # a user's own data: the default held-out genomes are the project's, so hold out its own share
            train, held = split_heldout_share(genomes, settings.window, settings.seed)
            self.heldout_note = (f"a seeded {HELDOUT_SHARE:.0%} of the input ({sum(len(r) for r in held):,} nt "
                                 f"in {len(held)} piece(s), seed {settings.seed})")
            if len(held):
                say(f"validation on {self.heldout_note}: none of the default held-out sequences is in the input")
        if train.total_length == 0:
            raise DataError("no training sequence left after holding out the validation sequences")
        self.train_genomes, self.heldout_genomes = train, held
        self.sampler = WindowSampler(train, settings.window, seed=settings.seed)
        self.validation = fixed_validation_windows(held, settings.window) if len(held) else np.zeros((0, settings.window))
        if len(self.validation) > settings.eval_windows:
            pick = np.linspace(0, len(self.validation) - 1, settings.eval_windows).round().astype(int)
            self.validation = self.validation[pick]

        torch.manual_seed(settings.seed)
        self.config = preset_config(settings.preset)
        self.model = MxDNAForMaskedLM(self.config).to(self.device).train()
        self.optimizer = adamw(self.model, lr=settings.lr, weight_decay=settings.weight_decay)
        self.scheduler = lambda_schedule(
            self.optimizer, lambda step: warmup_cosine_floor(step, settings.warmup, settings.steps, settings.min_lr_ratio)
        )
        self.mask_generator = torch.Generator().manual_seed(settings.seed + 1)
        self.step = 0
        self.nucleotides = 0
        self.seconds = 0.0
        self.warm_start: dict | None = None  # the training history of the model this run started from
        created = not self.out.exists()
        main = self.world.main  # only rank 0 writes the run folder
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        try:
            if (self.out / CHECKPOINT).is_file() and not restart:
                self._resume()
            else:
                if settings.init_from:
                    self._warm_start(settings.init_from)
                if main:
                    self._write_log_header()
            say(f"training in {precision_reason(self.precision, self.device, settings.precision)} on {self.device}"
                + (f", {self.world.size} processes" if self.world.distributed else ""))
            if main:
                (self.out / SETTINGS).write_text(json.dumps(
                    {**asdict(settings), "validation": self.heldout_note, "precision_used": self.precision,
                     "world_size": self.world.size}, indent=2) + "\n")
        except BaseException:
            if created and main:  # never leave an empty or half-made run folder behind a failed start
                shutil.rmtree(self.out, ignore_errors=True)
            raise

    # ------------------------------------------------------------ state

    def _write_log_header(self) -> None:
        with open(self.out / LOG, "w") as handle:
            handle.write("\t".join(LOG_COLUMNS) + "\n")

    def _state(self) -> dict:
        return {
            "settings": asdict(self.settings),
            "validation": self.heldout_note,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "mask_generator": self.mask_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "step": self.step,
            "nucleotides": self.nucleotides,
            "seconds": self.seconds,
            "warm_start": self.warm_start,
            "precision": self.precision,
        }

    def save_checkpoint(self) -> None:
        if not self.world.main:
            return
        tmp = self.out / (CHECKPOINT + ".tmp")
        torch.save(self._state(), tmp)
        os.replace(tmp, self.out / CHECKPOINT)

    def _resume(self) -> None:
        state = torch.load(self.out / CHECKPOINT, map_location="cpu", weights_only=False)
        old = state["settings"]
        for key, value in asdict(self.settings).items():
            if key not in RESUMABLE_CHANGES and key not in ("inputs", "out_dir") and old.get(key) != value:
                raise UsageError(
                    f"{self.out}: the checkpoint was made with {key}={old.get(key)!r}, not {value!r} "
                    "(use the same settings to resume, or --restart)"
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.mask_generator.set_state(state["mask_generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step, self.nucleotides, self.seconds = state["step"], state["nucleotides"], state["seconds"]
        self.warm_start = state.get("warm_start")
        if self.settings.precision == "auto":  # carry on in the precision the run began with
            began = state.get("precision") or ("bfloat16" if self.device.type == "cuda" else "float32")
            self.precision = resolve_precision(began, self.device)
            self.autocast = autocast_dtype(self.precision)
        if self.world.main:
            self._truncate_log(self.step)
        self.say(f"resumed {self.out} at step {self.step}")

    def _warm_start(self, folder: str) -> None:
        """Start from a saved model's weights (fresh optimiser and schedule), e.g. the bundled model
        when a run's checkpoint was lost with its machine."""
        from mxdna_cli.weights import load_model, resolve_model

        model, info = load_model(resolve_model(folder))  # a path or a bundled name (mxdna-small)
        if info.task != "masked_lm" or info.config != self.config:
            raise UsageError(f"{folder}: a {info.task} model with another config cannot seed a '{self.settings.preset}' run")
        self.model.load_state_dict(model.state_dict())
        self.warm_start = training_history(info)
        self.say(f"starting from the weights of {folder}")

    def _truncate_log(self, step: int) -> None:
        """Drop log rows written after the checkpoint: they will be recomputed identically."""
        path = self.out / LOG
        if not path.is_file():
            self._write_log_header()
            return
        lines = path.read_text().splitlines()
        kept = [lines[0]] + [line for line in lines[1:] if int(line.split("\t", 1)[0]) <= step]
        path.write_text("\n".join(kept) + "\n")

    def _log(self, row: dict) -> None:
        if not self.world.main:
            return
        with open(self.out / LOG, "a") as handle:
            handle.write("\t".join(_fmt(row.get(column, "")) for column in LOG_COLUMNS) + "\n")

    # ------------------------------------------------------------ training

    def train_step(self) -> dict:
        s = self.settings
        self.optimizer.zero_grad(set_to_none=True)
        totals = [0.0, 0.0, 0.0, 0.0]  # loss, mlm_loss, lb_loss, mean unit length (step means)
        mine = set(distributed.my_micro_batches(s.grad_accum, self.world))
        for index in range(s.grad_accum):
            # every process draws every micro-batch, so that the sampler and masking states agree
            ids = torch.from_numpy(self.sampler.next_batch(s.batch_size))
            masked, labels = mask_tokens(ids, self.mask_generator, s.mask_prob)
            self.nucleotides += ids.numel()
            if index not in mine:
                continue
            input_ids, mask, labels = with_cls_sep(masked, labels)
            if s.grad_accum == 1:  # one micro-batch: the global RNG stream, as without accumulation
                out = self._micro_batch(input_ids, mask, labels)
            else:
                devices = [self.device] if self.device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices, device_type=self.device.type):
                    torch.manual_seed(distributed.micro_batch_seed(s.seed, self.step, index))
                    out = self._micro_batch(input_ids, mask, labels)
            parts = (out.loss, out.mlm_loss, out.load_balancing_loss)
            for position, value in enumerate(parts):
                totals[position] += float(value.detach()) / s.grad_accum
            totals[3] += mean_unit_length(out.tokenization.center_expert, self.config.expert_kernel_sizes) / s.grad_accum
        distributed.sum_gradients(self.model, self.world)
        totals = distributed.sum_values(totals, self.world, self.device)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip)
        lr = self.optimizer.param_groups[0]["lr"]
        with uninterrupted():  # an interrupt lands before or after the step, never inside it
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
        return {"step": self.step, "kind": "train", "loss": totals[0], "mlm_loss": totals[1],
                "lb_loss": totals[2], "lr": lr, "nucleotides": self.nucleotides,
                "mean_unit_length": totals[3]}

    def _micro_batch(self, input_ids, mask, labels):
        """Forward and backward of one micro-batch, its loss scaled to its share of the step."""
        with autocast(self.device, self.autocast):
            out = self.model(input_ids.to(self.device), mask.to(self.device), labels=labels.to(self.device))
        (out.loss / self.settings.grad_accum).backward()
        return out

    def validate(self) -> dict:
        result = evaluate_masked_lm(
            self.model, self.validation, mask_prob=self.settings.mask_prob, device=self.device,
            autocast_dtype=self.autocast,
        )
        return {"step": self.step, "kind": "validation", "loss": result["loss"], "mlm_loss": result["loss"],
                "accuracy": result["accuracy"], "nucleotides": self.nucleotides}

    def run(self, progress: Callable[[int, dict], None] | None = None, stop_after_steps: int | None = None) -> list[dict]:
        """Train until settings.steps (or `stop_after_steps` more steps); returns the rows logged."""
        s = self.settings
        rows = []
        last_save = time.monotonic()
        target = s.steps if stop_after_steps is None else min(s.steps, self.step + stop_after_steps)
        try:
            while self.step < target:
                started = time.monotonic()
                row = self.train_step()
                self.seconds += time.monotonic() - started
                row["seconds"] = self.seconds
                new_rows = [row]
                if (self.world.main and len(self.validation)
                        and (self.step % s.eval_every == 0 or self.step == s.steps)):
                    new_rows.append({**self.validate(), "seconds": self.seconds})
                for new in new_rows:  # every row reaches the log and the progress display
                    if new["kind"] == "validation" or self.step % s.log_every == 0:
                        self._log(new)
                    if progress and self.world.main:
                        progress(self.step, new)
                rows.extend(new_rows)
                if time.monotonic() - last_save > s.checkpoint_minutes * 60:
                    self.save_checkpoint()
                    last_save = time.monotonic()
        finally:
            # Also on Ctrl-C: the partial step never reached the optimiser, so the state is consistent.
            self.save_checkpoint()
        return rows


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_log(path: str | Path) -> list[dict]:
    lines = Path(path).read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line]


def chain_logs(log_paths) -> tuple[list[dict], list[int]]:
    """Rows of consecutive training stages (a run warm-started from the previous stage's export) on
    one axis: each stage's steps and nucleotides continue from where the previous stage ended.
    Returns the rows and the nucleotide counts where each later stage began."""
    rows, boundaries = [], []
    step_offset = nucleotide_offset = 0
    for index, path in enumerate(log_paths):
        stage = read_log(path)
        if index:
            boundaries.append(nucleotide_offset)
        for row in stage:
            rows.append({**row, "step": str(int(row["step"]) + step_offset),
                         "nucleotides": str(int(float(row["nucleotides"])) + nucleotide_offset)})
        if stage:
            step_offset = int(rows[-1]["step"])
            nucleotide_offset = int(rows[-1]["nucleotides"])
    return rows, boundaries


def plot_log(log_paths: str | Path | list, png_path: str | Path) -> None:
    """Training and validation loss against nucleotides seen, as a PNG; several logs are drawn as
    consecutive stages, split by dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, boundaries = chain_logs([log_paths] if isinstance(log_paths, (str, Path)) else log_paths)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for kind, style in (("train", "-"), ("validation", "o-")):
        picked = [r for r in rows if r["kind"] == kind]
        if not picked:
            continue
        x = [float(r["nucleotides"]) / 1e6 for r in picked]
        y = [float(r["mlm_loss"]) for r in picked]
        if kind == "train" and len(y) > 50:  # a running mean of the noisy per-step training loss
            width = max(1, len(y) // 50)
            y = np.convolve(y, np.ones(width) / width, mode="valid").tolist()
            x = x[width - 1 :]
        ax_loss.plot(x, y, style, label=f"{kind} masked-LM loss", markersize=3)
        if kind == "validation":
            ax_acc.plot(x, [float(r["accuracy"]) for r in picked], "o-", markersize=3)
    for axis in (ax_loss, ax_acc):
        for boundary in boundaries:
            axis.axvline(boundary / 1e6, color="grey", linestyle="--", linewidth=0.8)
        axis.set_xlabel("nucleotides seen (millions)")
    ax_loss.set_ylabel("cross-entropy (nats)")
    ax_loss.legend()
    ax_acc.set_ylabel("held-out masked-nucleotide accuracy")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def training_history(info) -> dict:
    """What a saved masked-LM model's card says about how it was trained (for a run warm-started from it)."""
    extra = info.extra
    # A card exported before stages were recorded describes one stage; a model never pretrained, none.
    single_stage = {k: extra[k] for k in ("steps", "nucleotides_seen", "train_seconds", "settings") if k in extra}
    return {
        "model": str(info.path), "sha256": info.sha256,
        "steps": extra.get("total_steps", extra.get("steps", 0)),
        "nucleotides_seen": extra.get("total_nucleotides_seen", extra.get("nucleotides_seen", 0)),
        "train_seconds": extra.get("total_train_seconds", extra.get("train_seconds", 0)),
        "stages": extra.get("stages", [single_stage] if "steps" in extra else []),
    }


def export_checkpoint(run_dir: str | Path, folder: str | Path, *, half: bool = True, extra: dict | None = None):
    """Write the run's current model as a model folder (safetensors + card) for `embed`/`tokenize`.

    A run warm-started from another model adds that model's training to the totals and lists every
    stage, so the card counts all the nucleotides the weights have seen."""
    from mxdna_cli.weights import save_model

    state = torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=False)
    model = MxDNAForMaskedLM(ModelConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    this_stage = {"steps": state["step"], "nucleotides_seen": state["nucleotides"], "train_seconds": round(state["seconds"]),
                  "settings": {k: v for k, v in state["settings"].items() if k not in ("out_dir",)},
                  "validation": state.get("validation", "named held-out sequences")}
    warm_start = state.get("warm_start")
    earlier = warm_start or {"steps": 0, "nucleotides_seen": 0, "train_seconds": 0, "stages": []}
    info = {**this_stage,
            "total_steps": earlier["steps"] + this_stage["steps"],
            "total_nucleotides_seen": earlier["nucleotides_seen"] + this_stage["nucleotides_seen"],
            "total_train_seconds": earlier["train_seconds"] + this_stage["train_seconds"],
            "stages": [*earlier["stages"], this_stage]}
    if warm_start:
        info["warm_start"] = {k: warm_start[k] for k in ("model", "sha256")}
    return save_model(model.eval(), folder, half=half, extra={**info, **(extra or {})})


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or a signal after saving its checkpoint; `message` says where it is
    (empty on torchrun processes other than rank 0), `signum` which signal it was."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.message, self.signum = message, signum


def _chain(first: Callable | None, second: Callable) -> Callable:
    if first is None:
        return second
    return lambda step, row: (first(step, row), second(step, row))


def run_pretrain(
    settings: PretrainSettings,
    progress: Callable[[int, dict], None] | None = None,
    *,
    restart: bool = False,
    plot: str | None = None,
    export: str | None = None,
    say: Callable[[str], None] = print,
    stop_after_steps: int | None = None,
    display: Callable[[Pretrainer], Any] | None = None,
) -> dict:
    """The `mxdna pretrain` verb: start or resume the run in settings.out_dir, train to
    settings.steps, then draw the curves (`plot`, a PNG) and write the model folder (`export`).

    `progress(step, row)` gets every logged row (train and validation; rows carry `nucleotides`);
    `say(text)` one-line notes and warnings (not the interrupt, which is RunInterrupted's message); `display(trainer)`, if given, makes a context manager
    to train inside (a progress bar) whose `update(step, row)` gets the rows too. An interrupt (KeyboardInterrupt, or SIGINT/SIGTERM
    raised as one) leaves the checkpoint resumable and raises RunInterrupted. Returns run_dir,
    step, steps, precision, world_size, first_step (where this call began), last (the latest train
    loss and validation accuracy) and outputs (the paths written)."""
    if plot is not None:
        from mxdna_cli.extras import require

        require("matplotlib", "--plot")
    trainer = Pretrainer(settings, restart=restart, say=say)
    world = trainer.world
    try:
        if plot is not None:  # checked once the run folder exists: the plot often goes inside it
            folder = Path(plot).resolve().parent
            if not os.access(folder, os.W_OK):
                raise UsageError(f"--plot {plot}: output folder {folder} is not writable")
        if len(trainer.validation) == 0:
            say(f"warning: no held-out sequence matched {settings.heldout} (or none is {settings.window} nt long); "
                "training runs without validation (see --heldout)")
        first_step = trainer.step
        last: dict = {}

        def on_row(step: int, row: dict) -> None:
            if row["kind"] == "train":
                last["loss"] = row["loss"]
            else:
                last["accuracy"] = row.get("accuracy")
            if progress:
                progress(step, row)

        shown = display(trainer) if display is not None and world.main else None
        try:
            with shown if shown is not None else contextlib.nullcontext():
                if shown is not None:
                    progress = _chain(progress, shown.update)
                trainer.run(progress=on_row, stop_after_steps=stop_after_steps)
        except KeyboardInterrupt as interrupt:
            message = (f"interrupted at step {trainer.step}; checkpoint saved in {settings.out_dir}; "
                       "run the same command again to resume") if world.main else ""
            raise RunInterrupted(message, getattr(interrupt, "signum", signal.SIGINT)) from None
        run_dir = Path(settings.out_dir)
        outputs = [str(run_dir)]
        if world.main and trainer.step >= settings.steps:
            if plot is not None:
                plot_log(run_dir / LOG, plot)
                outputs.append(plot)
            if export is not None:
                export_checkpoint(run_dir, export, extra={"precision": trainer.precision})
                outputs.append(export)
        return {"run_dir": str(run_dir), "step": trainer.step, "steps": settings.steps, "first_step": first_step,
                "precision": trainer.precision, "world_size": world.size, "is_main": world.main, "last": last,
                "outputs": outputs}
    finally:
        distributed.leave_world(world)
