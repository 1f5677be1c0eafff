"""The training verbs: `pretrain`, `evaluate` and `finetune`, over `mxdna_cli.train`. Each parses its options, runs the library and reports on stderr."""

# ruff: noqa: B008 -- an option group's default is a frozen dataclass: immutable

from __future__ import annotations

import signal
from typing import Annotated

import typer

from mxdna_cli import engine
from mxdna_cli.cli.options import (
    ClassWeighting,
    DeviceOpt,
    DropoutOpt,
    EvalStrand,
    EvalStrandOpt,
    GradAccumOpt,
    LayerDecayOpt,
    ModelOptions,
    Pooling,
    PrecisionOpt,
    Preset,
    QuietOpt,
    RcAugmentOpt,
    ScoreStrandOpt,
    TrainThreadsOpt,
    check_paths,
    example,
    option_groups,
    window_option,
)
from mxdna_cli.cli.progress import PROG, StderrReporter
from mxdna_cli.cli.progress import TrainProgress as _TrainProgress
from mxdna_cli.cli.progress import say as _stderr
from mxdna_cli.errors import UsageError
from mxdna_cli.windows import TRAINING_WINDOW

# `_TrainProgress` and `_stderr`: the names the verbs' bodies had in the one-file cli.py.

commands = typer.Typer()  # merged into the top-level app by main.py


def _heldout(items: list[str] | None) -> list | None:
    """--heldout RECORD or FILE_GLOB//RECORD_GLOB into PretrainSettings.heldout entries."""
    if not items:
        return None
    result: list = []
    for item in items:
        if "//" in item:
            file_glob, record_glob = item.split("//", 1)
            if not file_glob or not record_glob:
                raise UsageError(f"--heldout {item}: expected RECORD or FILE_GLOB//RECORD_GLOB")
            result.append([file_glob, record_glob])
        else:
            result.append(item)
    return result


@commands.command(
    epilog=example(
        "mxdna pretrain genomes/ --out runs/small --preset small --steps 20000 "
        "--plot runs/small/loss.png --export weights/my-model",
        "mxdna pretrain genome.fa --out runs/tiny --preset tiny --steps 200 --window 256",
    ),
)
def pretrain(
    inputs: Annotated[
        list[str],
        typer.Argument(metavar="INPUTS...", help="FASTA files or folders (searched for .fa/.fasta/.fna/.fas[.gz]).",
                       show_default=False),
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", metavar="RUN_DIR", help="Run folder: checkpoint.pt, log.tsv, "
                          "settings.json. A folder with a checkpoint is resumed.", show_default=False)
    ],
    preset: Annotated[Preset, typer.Option("--preset", help="Model size (presets of mxdna_cli.model.config).")] = Preset.small,
    window: Annotated[int, window_option("Nucleotides per training window.", min=8)] = TRAINING_WINDOW,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per step (per accumulation).", min=1)] = 16,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Batches accumulated per step (under torchrun "
                          "shared out over the processes: a multiple of their number).", min=1)] = 1,
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps in total.", min=1)] = 20000,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW; cosine decay).")] = 5e-4,
    warmup: Annotated[int, typer.Option("--warmup", help="Linear warm-up steps.", min=0)] = 500,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sampling, masking and initialisation.")] = 0,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Steps between validations.", min=1)] = 250,
    eval_windows: Annotated[int, typer.Option("--eval-windows", help="Held-out windows per validation.", min=1)] = 64,
    checkpoint_minutes: Annotated[
        float, typer.Option("--checkpoint-minutes", help="Minutes between checkpoints.")
    ] = 5.0,
    heldout: Annotated[
        list[str] | None,
        typer.Option("--heldout", metavar="RECORD|FILE_GLOB//RECORD_GLOB", help="Held-out validation sequences; "
                     "repeatable.", show_default="D. melanogaster chr4 and H. pylori Puno120"),
    ] = None,
    threads: TrainThreadsOpt = 2,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    restart: Annotated[bool, typer.Option("--restart", help="Start afresh even if RUN_DIR has a checkpoint.")] = False,
    init_from: Annotated[
        str | None,
        typer.Option("--init-from", metavar="MODEL", help="Start from a saved masked-LM model's weights (fresh "
                     "optimiser), e.g. when a run's checkpoint is lost. Ignored when resuming.", show_default=False),
    ] = None,
    plot: Annotated[
        str | None, typer.Option("--plot", metavar="PNG", help="Write the loss/accuracy curves at the end.",
                                    show_default=False)
    ] = None,
    export: Annotated[
        str | None,
        typer.Option("--export", metavar="FOLDER", help="Write the final model as a model folder (for --weights).",
                     show_default=False),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Pretrain a masked-LM MxDNA model; stop at any time (Ctrl-C) and rerun to resume exactly.

    Validation = masked-nucleotide accuracy on held-out sequences (see --heldout).
    """
    from mxdna_cli.train.pretrain import PretrainSettings, run_pretrain

    values = dict(
        inputs=list(inputs), out_dir=out, preset=preset.value, window=window, batch_size=batch_size, grad_accum=grad_accum,
        steps=steps, lr=lr, warmup=warmup, seed=seed, eval_every=eval_every, eval_windows=eval_windows,
        checkpoint_minutes=checkpoint_minutes, threads=threads, device=device, init_from=init_from, precision=precision,
    )
    held = _heldout(heldout)
    if held is not None:
        values["heldout"] = held
    settings = PretrainSettings(**values)
    engine.pick_device(device)
    try:
        result = run_pretrain(settings, restart=restart, plot=plot, export=export,
                              say=lambda text: None if quiet else _stderr(f"{PROG}: {text}"),
                              display=lambda trainer: _TrainProgress(trainer, quiet))
    except KeyboardInterrupt as interrupt:  # RunInterrupted: the checkpoint is saved; say where, even with -q
        if getattr(interrupt, "message", ""):
            _stderr(f"{PROG}: {interrupt.message}")
        raise typer.Exit(128 + getattr(interrupt, "signum", signal.SIGINT)) from None
    if not quiet and result["is_main"]:  # (other torchrun processes than rank 0 stay quiet)
        last = result["last"]
        parts = [f"step {result['step']}/{settings.steps}"]
        if last.get("loss") is not None:
            parts.append(f"loss {last['loss']:.4f}")
        if last.get("accuracy") is not None:
            parts.append(f"val acc {last['accuracy']:.4f}")
        _stderr(f"{PROG} pretrain: " + ", ".join(parts) + " -> " + ", ".join(result["outputs"]))


@commands.command(
    epilog=example(
        "mxdna evaluate held_out.fa --model mxdna-small",
        "mxdna evaluate held_out.fa -m runs/export --window 510 --max-windows 512 --seed 1",
        "mxdna evaluate labelled_test.tsv -m promoter-arabidopsis",
        "mxdna evaluate promoter=tss.bed nonpromoter=random.bed --genome genome.fa -m my-classifier",
    ),
)
@option_groups
def evaluate(
    inputs: Annotated[
        list[str], typer.Argument(metavar="INPUT...", help="FASTA files or folders (masked-LM model), or labelled "
                                  "sequences (classifier: CSV/TSV, LABEL=FASTA, or BED with --genome).",
                                  show_default=False)
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="TSV with one result row; '-' = stdout.")] = "-",
    window: Annotated[int, window_option("Nucleotides per evaluation window.")] = TRAINING_WINDOW,
    max_windows: Annotated[
        int, typer.Option("--max-windows", help="At most this many windows, evenly spread over the input.", min=1)
    ] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the masking (same seed = same masked positions).")] = 1234,
    mask_prob: Annotated[float, typer.Option("--mask-prob", help="Share of nucleotides masked.")] = 0.15,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows (sequences) per batch.", min=1)] = 16,
    genome: Annotated[str | None, typer.Option("--genome", help="FASTA that BED inputs refer to (classifier).",
                      show_default=False)] = None,
    strand: ScoreStrandOpt = None,
    model: ModelOptions = ModelOptions(),
    quiet: QuietOpt = False,
) -> None:
    """Score a model: masked-nucleotide accuracy (masked LM, any FASTA) or classifier metrics (labelled sets).

    A masked-LM model gets its masked-nucleotide accuracy and loss (seeded, reproducible); a
    classifier its accuracy, F1, MCC, AUROC and AUPRC on labelled sequences.

    Masked LM: windows tile each record from its start without overlap (windows with > 10% N are
    skipped); 15% of nucleotides are masked BERT-style and the model predicts them (softmax over
    A/C/G/T). Classifier: every sequence is classified whole, as given or (--strand both) as the mean
    of it and its reverse complement (without --strand: as its model card's metrics were scored);
    labels must be the model's classes.
    """
    from mxdna_cli.io.writers import TsvWriter

    engine.check_suffix(output, "tsv", "--output")
    check_paths({"--output": output}, *inputs, genome, weights=model.weights)
    engine.check_output(output)
    reporter = StderrReporter(quiet)
    loaded = model.load(reporter)
    from mxdna_cli.train.evaluate import CLASSIFIER_METRICS, EvaluateSettings, evaluate

    scored_strand = strand.value if strand is not None else engine.card_strand(loaded)
    settings = EvaluateSettings(window=window, max_windows=max_windows, seed=seed, mask_prob=mask_prob,
                                batch_size=batch_size, genome=genome, strand=scored_strand)
    result = evaluate(inputs, loaded, settings)
    if result.task == "classification":
        summary = ", ".join(f"{m} {result[m]:.4f}" for m in CLASSIFIER_METRICS)
        summary += f" on {result['n']:,} sequences" + (" (both strands averaged)" if scored_strand == "both" else "")
        meta = engine.run_meta("evaluate", loaded, None)
    else:
        summary = (f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} nats on "
                   f"{result['masked']:,} masked nucleotides ({result['windows']} windows)")
        meta = engine.run_meta("evaluate", loaded, None, mask_prob=mask_prob)
    with TsvWriter(output, result.columns, meta) as writer:
        writer.write_row(result.values())
    if not quiet:
        _stderr(f"{PROG} evaluate: {summary} in {result['seconds']} s")


@commands.command(
    epilog=example(
        "mxdna finetune train.tsv --valid valid.tsv --test test.tsv --pretrained mxdna-small -o my-promoter-model",
        "mxdna finetune promoter=prom.fa.gz nonpromoter=background.fa.gz -o my-classifier --epochs 5",
        "mxdna finetune promoter=tss.bed nonpromoter=random.bed --genome genome.fa -o my-classifier",
        "mxdna finetune train.tsv --valid valid.tsv --test test.tsv -o my-classifier --rc-augment "
        "--eval-strand both --layer-decay 0.9 --dropout 0.1",
    )
)
def finetune(
    train: Annotated[
        list[str],
        typer.Argument(metavar="INPUTS...", help="Labelled sequences: CSV/TSV with sequence,label columns; "
                       "LABEL=FASTA (one file per class); or BED (+ --genome) with LABEL= or a label column.",
                       show_default=False),
    ],
    out: Annotated[str, typer.Option("--out", "-o", metavar="FOLDER", help="Classifier model folder to write.",
                                     show_default=False)],
    valid: Annotated[list[str] | None, typer.Option("--valid", help="Given validation inputs (else a seeded "
                     "split of INPUTS).", show_default=False)] = None,
    test: Annotated[list[str] | None, typer.Option("--test", help="Given test inputs (else a seeded split).",
                    show_default=False)] = None,
    genome: Annotated[str | None, typer.Option("--genome", help="FASTA that BED inputs refer to.",
                      show_default=False)] = None,
    pretrained: Annotated[str | None, typer.Option("--pretrained", metavar="MODEL", help="Masked-LM model to "
                          "start from (default: the bundled model).", show_default=False)] = None,
    from_scratch: Annotated[bool, typer.Option("--from-scratch", help="Random initialisation of --preset "
                            "instead of pretrained weights (a baseline).")] = False,
    preset: Annotated[Preset, typer.Option("--preset", help="Model size with --from-scratch.")] = Preset.small,
    pooling: Annotated[Pooling, typer.Option("--pooling", help="decoder ([CLS] through the cross-attention decoder, "
                       "as the reference) or mean (over tokens).")] = Pooling.decoder,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training set (at most).")] = 10,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="Stop after this many steps.",
                         show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per optimiser step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, warm-up then linear decay).")] = 1e-4,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Evaluations without a better validation "
                        "MCC before stopping.")] = 3,
    eval_every: Annotated[int | None, typer.Option("--eval-every", min=1, help="Steps between validations "
                          "(default: once per epoch).", show_default=False)] = None,
    class_weighting: Annotated[ClassWeighting, typer.Option("--class-weighting", help="balanced (loss weights "
                               "against class imbalance) or none.")] = ClassWeighting.balanced,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, the initialisation and the order.")] = 0,
    rc_augment: RcAugmentOpt = False,
    eval_strand: EvalStrandOpt = EvalStrand.forward,
    layer_decay: LayerDecayOpt = 1.0,
    dropout: DropoutOpt = None,
    grad_accum: GradAccumOpt = 1,
    precision: PrecisionOpt = "auto",
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints "
                                "(kept in .FOLDER.run/ beside the output until the model folder is written).")] = 100,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run (same inputs and options) "
                      "from its checkpoint in .FOLDER.run/.")] = False,
    threads: TrainThreadsOpt = 2,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a sequence classifier (e.g. promoters) and write it as a model folder with its card.

    Early stopping on validation MCC; test accuracy, F1, MCC, AUROC and AUPRC go into the card.
    """
    from mxdna_cli.train.finetune import FinetuneSettings, check_out_dir, run_finetune

    if not 0 < layer_decay <= 1:
        raise UsageError(f"--layer-decay {layer_decay}: must lie in (0, 1] (1 = off)")
    check_out_dir(out)
    engine.pick_device(device)
    settings = FinetuneSettings(
        train=list(train), out_dir=out, valid=list(valid or []), test=list(test or []), genome=genome,
        pretrained=pretrained, from_scratch=from_scratch, preset=preset.value, pooling=pooling.value, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, lr=lr, patience=patience, eval_every=eval_every,
        class_weighting=class_weighting.value, seed=seed, threads=threads, device=device, grad_accum=grad_accum,
        precision=precision, checkpoint_every=checkpoint_every, resume=resume, rc_augment=rc_augment,
        eval_strand=eval_strand.value, layer_decay=layer_decay, classifier_dropout=dropout,
    )

    def progress(step: int, row: dict) -> None:
        if not quiet and row.get("kind") == "validation":
            _stderr(f"{PROG}: step {step} val loss {row.get('loss', float('nan')):.4f} "
                    f"val MCC {row.get('mcc', float('nan')):.4f} val AUROC {row.get('auroc', float('nan')):.4f}")

    result = run_finetune(settings, progress=progress, say=lambda text: None if quiet else _stderr(f"{PROG}: {text}"))
    if not quiet and "metrics" in result:  # (other torchrun processes than rank 0 write nothing)
        test_metrics = result["metrics"].get("test", {})
        shown = ", ".join(f"{k} {test_metrics[k]:.4f}" for k in ("accuracy", "f1", "mcc", "auroc", "auprc") if k in test_metrics)
        _stderr(f"{PROG} finetune: best step {result['best_step']} of {result['steps']}; test {shown} -> {out}")
