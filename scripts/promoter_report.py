#!/usr/bin/env python
"""Collect the promoter test metrics of every model on every dataset into one table.

    python scripts/promoter_report.py [--runs runs/ft] [--baselines docs/promoter_baselines.tsv] \\
        [--out docs/promoter_results.tsv]

MxDNA rows come from the `model.json` that `mxdna finetune` wrote in `<runs>/<dataset>-pre`
(started from the pretrained model) and `<runs>/<dataset>-scratch` (same architecture, random
start), and `<runs>/<dataset>-pre-lr3e-4` where a longer run was made; baseline rows from the TSV of scripts/promoter_baselines.py. Prints a markdown table per
dataset (the best value of each column in bold) and writes every row as a TSV.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from build_promoter_datasets import DATASETS  # scripts/ is on the path when run as a script

METRICS = ("accuracy", "f1", "mcc", "auroc", "auprc")
MXDNA_RUNS = (("pre", "MxDNA pretrained → fine-tuned"), ("scratch", "MxDNA from scratch"),
              ("pre-lr3e-4", "MxDNA pretrained → fine-tuned, lr 3e-4, 3 epochs (shipped)"))
HEADERS = {"accuracy": "accuracy", "f1": "F1", "mcc": "MCC", "auroc": "AUROC", "auprc": "AUPRC"}
BASELINE_NAMES = {"6mer_lr": "6-mer logistic regression", "cnn": "CNN from scratch"}


def mxdna_row(folder: Path) -> dict | None:
    card = folder / "model.json"
    if not card.is_file():
        return None
    metrics = json.loads(card.read_text())["extra"]["metrics"]
    test = metrics["test"]
    row = {m: test[m] for m in METRICS}
    row["n_test"] = test["n"]
    row["notes"] = f"best step {metrics['best_step']} of {metrics['steps']}"
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/ft")
    parser.add_argument("--baselines", default="docs/promoter_baselines.tsv")
    parser.add_argument("--out", default="docs/promoter_results.tsv")
    args = parser.parse_args(argv)
    with open(args.baselines) as handle:
        baselines = list(csv.DictReader(handle, delimiter="\t"))
    rows = []
    for dataset in DATASETS:
        for suffix, name in MXDNA_RUNS:
            row = mxdna_row(Path(args.runs) / f"{dataset}-{suffix}")
            if row is not None:
                rows.append({"dataset": dataset, "model": name, **row})
        for b in baselines:
            if b["dataset"] == dataset:
                rows.append({"dataset": dataset, "model": BASELINE_NAMES.get(b["model"], b["model"]),
                             "n_test": int(b["n_test"]), **{m: float(b[m]) for m in METRICS}, "notes": b["notes"]})
    columns = ["dataset", "model", "n_test", *METRICS, "notes"]
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    Path(args.out).write_text("\t".join(columns) + "\n"
                              + "".join("\t".join(cell(r[c]) for c in columns) + "\n" for r in rows))
    for dataset in DATASETS:
        chosen = [r for r in rows if r["dataset"] == dataset]
        if not chosen:
            continue
        best = {m: max(r[m] for r in chosen) for m in METRICS}
        print(f"\n**{dataset}** (test n = {chosen[0]['n_test']})\n")
        print("| model | " + " | ".join(HEADERS[m] for m in METRICS) + " |")
        print("|---|" + "---|" * len(METRICS))
        for r in chosen:
            cells = [f"**{r[m]:.4f}**" if r[m] == best[m] else f"{r[m]:.4f}" for m in METRICS]
            print(f"| {r['model']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
