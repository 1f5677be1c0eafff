#!/usr/bin/env python
"""Score the promoter baselines (6-mer logistic regression, small CNN) on every built dataset.

    python scripts/build_promoter_datasets.py          # first: data/promoter/<dataset>/{train,valid,test}.tsv
    python scripts/promoter_baselines.py [--data data/promoter] [--out docs/promoter_baselines.tsv]
                                         [--cnn-epochs 20] [--threads 1] [--seed 0] [--datasets ...]

Prints a table (test accuracy, F1, MCC, AUROC, AUPRC per dataset and model) and writes it as a TSV.
The splits are those `mxdna finetune` gets with `--train train.tsv --valid valid.tsv --test test.tsv`,
so these rows compare directly with a fine-tuned MxDNA (and with `--from-scratch`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from mxdna_cli.train.baselines_promoter import CNNSettings, load_split_tables, run_promoter_baselines
from mxdna_cli.train.metrics import METRIC_NAMES

COLUMNS = ("dataset", "model", "n_train", "n_test", *METRIC_NAMES, "seconds", "notes")


def _cell(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/promoter")
    parser.add_argument("--out", default="docs/promoter_baselines.tsv")
    parser.add_argument("--datasets", nargs="*", help="dataset folder names (default: every folder with train.tsv)")
    parser.add_argument("--models", nargs="*", default=["kmer_lr", "cnn"], choices=["kmer_lr", "cnn"])
    parser.add_argument("--cnn-epochs", type=int, default=20)
    parser.add_argument("--cnn-patience", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    names = args.datasets or sorted(p.name for p in data.iterdir() if (p / "train.tsv").is_file())
    if not names:
        print(f"no datasets in {data}; run scripts/build_promoter_datasets.py first", file=sys.stderr)
        return 1
    rows = []
    started = time.monotonic()
    for name in names:
        split_data = load_split_tables(data / name)
        n_train, n_test = len(split_data.y["train"]), len(split_data.y["test"])
        cnn = CNNSettings(epochs=args.cnn_epochs, patience=args.cnn_patience, seed=args.seed)
        progress = lambda epoch, scores: print(  # noqa: E731
            f"  {name} cnn epoch {epoch}: valid MCC {scores['mcc']:.4f}", file=sys.stderr)
        results = run_promoter_baselines(split_data, seed=args.seed, cnn=cnn, models=args.models, progress=progress)
        for model, metrics in results.items():
            if model == "cnn":
                notes = f"epochs {metrics['epochs']}, best {metrics['best_epoch']}"
            else:
                notes = f"C {metrics['C']}"
            notes += f", valid MCC {metrics['validation_mcc']:.4f}"
            row = {"dataset": name, "model": model, "n_train": n_train, "n_test": n_test,
                   **{m: metrics[m] for m in METRIC_NAMES}, "seconds": f"{metrics['seconds']:.1f}", "notes": notes}
            rows.append(row)
            print(f"{name} {model}: " + " ".join(f"{m} {_cell(metrics[m])}" for m in METRIC_NAMES)
                  + f" ({row['seconds']} s)", file=sys.stderr)
    widths = {c: max(len(c), *(len(_cell(r[c])) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for row in rows:
        print("  ".join(_cell(row[c]).ljust(widths[c]) for c in COLUMNS))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\t".join(COLUMNS) + "\n" + "".join("\t".join(_cell(r[c]) for c in COLUMNS) + "\n" for r in rows))
    print(f"wrote {out} ({time.monotonic() - started:.0f} s in all, {args.threads} thread(s))", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
