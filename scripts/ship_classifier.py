#!/usr/bin/env python
"""Copy a fine-tuned classifier into weights/ with float16 storage, and check its test metrics hold.

    python scripts/ship_classifier.py runs/ft/tair10-pre weights/promoter-arabidopsis \\
        --test data/promoter/arabidopsis_tair10_chr1/test.tsv --threads 2

Float16 storage halves the file (41 MB -> 21 MB for `small`); the model is loaded as float32. The
test split is scored again with the stored weights and the card (`README.md`) gets a line with
both sets of metrics, so a rounding effect would show.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from mxdna_cli.io.labeled import read_table
from mxdna_cli.train.scoring import evaluate_classifier
from mxdna_cli.weights import load_model, save_model

METRICS = ("accuracy", "f1", "mcc", "auroc", "auprc")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="classifier folder written by `mxdna finetune`")
    parser.add_argument("dest", help="folder to write (e.g. weights/promoter-arabidopsis)")
    parser.add_argument("--test", required=True, help="the test table the card's metrics come from")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    source, dest = Path(args.source), Path(args.dest)
    model, info = load_model(source)
    dest.mkdir(parents=True, exist_ok=True)
    save_model(model, dest, half=True, extra={**info.extra, "labels": info.labels})
    if (source / "training_log.tsv").is_file():
        shutil.copyfile(source / "training_log.tsv", dest / "training_log.tsv")
    card_text = (source / "README.md").read_text() if (source / "README.md").is_file() else ""
    (dest / "README.md").write_text(card_text.replace(f"# {source.name}:", f"# {dest.name}:", 1))

    half_model, _ = load_model(dest)
    table = read_table(args.test)
    y = [info.labels.index(label) for label in table.labels]
    stored = evaluate_classifier(half_model.eval(), table.sequences, y)
    original = info.extra.get("metrics", {}).get("test", {})
    line = ", ".join(f"{m} {original.get(m, float('nan')):.4f} -> {stored[m]:.4f}" for m in METRICS)
    note = f"\nStored as float16 (loaded as float32); test metrics float32 -> float16-stored: {line}.\n"
    with open(dest / "README.md", "a") as card:
        card.write(note)
    print(f"{dest}: {note.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
