"""The evaluate verb: seeded masked-nucleotide loss and accuracy of a masked-LM model on fixed
windows of any FASTA files, or a classifier's metrics on any labelled sequences.

`evaluate` returns an `Evaluation`: the TSV columns of its task and the one row of values the
`mxdna evaluate` command writes under them (plus `seconds`, which is shown but not written)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.windows import TRAINING_WINDOW
from mxdna_cli.runtime import LoadedModel


@dataclass
class EvaluateSettings:
    window: int = TRAINING_WINDOW
    max_windows: int = 256
    seed: int = 1234
    mask_prob: float = 0.15
    batch_size: int = 16
    genome: str | None = None  # FASTA that BED inputs of a classifier refer to
    strand: str = "forward"  # classifier: "forward" (as given) or "both" (the two strands' mean probability)


CLASSIFIER_METRICS = ("accuracy", "f1", "mcc", "auroc", "auprc", "loss")
CLASSIFIER_COLUMNS = ("model", "input", "n", "strand", *CLASSIFIER_METRICS)
MASKED_LM_COLUMNS = ("model", "input", "window", "windows", "masked", "loss", "accuracy", "seed")


@dataclass
class Evaluation:
    """One evaluation: its task ('masked_lm' or 'classification'), the TSV columns, and the row
    (a value for every column, and a few more: model_sha256, seconds)."""

    task: str
    columns: tuple[str, ...]
    row: dict[str, Any]

    def values(self) -> list[Any]:
        """The row's values in column order, as written to the TSV."""
        return [self.row[column] for column in self.columns]

    def __getitem__(self, key: str) -> Any:
        return self.row[key]


def evaluate(paths: Sequence[str], loaded: LoadedModel, settings: EvaluateSettings) -> Evaluation:
    """Seeded masked-nucleotide loss and accuracy on fixed windows of the FASTA files (a masked-LM
    model), or accuracy, F1, MCC, AUROC and AUPRC on labelled sequences (a classifier)."""
    if loaded.info.task == "classification":
        return evaluate_classifier_on(paths, loaded, settings)
    from mxdna_cli.train.data import (
        find_fasta_files,
        fixed_validation_windows,
        load_genomes,
    )
    from mxdna_cli.train.pretrain import evaluate_masked_lm

    s = settings
    if s.strand != "forward":
        raise UsageError("--strand both scores a classifier; a masked-LM model is scored on the given strand")
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
    row = {"model": loaded.name, "model_sha256": loaded.info.sha256, "input": ",".join(map(str, paths)),
           "window": s.window, "windows": len(windows), "masked": result["masked"],
           "loss": round(result["loss"], 6), "accuracy": round(result["accuracy"], 6), "seed": s.seed,
           "seconds": round(seconds, 2)}
    return Evaluation("masked_lm", MASKED_LM_COLUMNS, row)


def evaluate_classifier_on(specs: Sequence[str], loaded: LoadedModel, settings: EvaluateSettings) -> Evaluation:
    """A classifier's test metrics on labelled inputs (the formats `mxdna finetune` reads), on the
    given strand or both averaged; every label must be one of the model's classes."""
    from mxdna_cli.io.labeled import read_labeled
    from mxdna_cli.train.scoring import evaluate_classifier

    examples = read_labeled(list(specs), settings.genome)
    if len(examples) == 0:
        raise DataError(f"no labelled sequences in {', '.join(specs)}")
    labels = loaded.info.labels
    unknown = sorted(set(examples.labels) - set(labels))
    if unknown:
        raise DataError(f"{', '.join(map(str, specs))}: label(s) {', '.join(unknown)} are not classes of "
                        f"model '{loaded.name}' (its classes: {', '.join(labels)})")
    started = time.perf_counter()
    result = evaluate_classifier(loaded.module, examples.sequences, [labels.index(y) for y in examples.labels],
                                 batch_size=settings.batch_size, device=loaded.device,
                                 autocast_dtype=loaded.autocast, strand=settings.strand)
    row = {"model": loaded.name, "model_sha256": loaded.info.sha256, "input": ",".join(map(str, specs)),
           "n": int(result["n"]), "strand": settings.strand}
    row.update({m: round(float(result[m]), 6) for m in CLASSIFIER_METRICS})
    row["seconds"] = round(time.perf_counter() - started, 2)
    return Evaluation("classification", CLASSIFIER_COLUMNS, row)
