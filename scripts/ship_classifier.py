#!/usr/bin/env python
"""Copy a fine-tuned classifier into weights/ with float16 storage, and check its test metrics hold.

    python scripts/ship_classifier.py runs/ft/tair10-pre weights/promoter-arabidopsis \\
        --test data/promoter/arabidopsis_tair10_chr1/test.tsv --threads 2
    python scripts/ship_classifier.py runs/promoter_recipe/NAME/model weights/promoter-eukaryote \\
        --test data/promoter/*/test.tsv --default-for promoter --purpose TEXT --threads 2

Float16 storage halves the file (41 MB -> 21 MB for `small`); the model is loaded as float32. Each
test table is scored with the source (float32) weights and again with the stored ones, on the
strand(s) the run was validated on, and the card (`README.md`) gets a table with both, so a
rounding effect would show. `--default-for LABEL` marks the classifier as the bundled default of
`mxdna predict LABEL` (`model.json` extra `default_for`) and takes that mark off every other model
folder beside DEST (`mxdna info` shows which are marked), so that one default per label remains.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from mxdna_cli.io.labeled import read_table
from mxdna_cli.runtime import DEFAULT_FOR
from mxdna_cli.train.scoring import evaluate_classifier
from mxdna_cli.weights import CARD_FILE, load_model, save_model, write_card

METRICS = ("accuracy", "f1", "mcc", "auroc", "auprc")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="classifier folder written by `mxdna finetune`")
    parser.add_argument("dest", help="folder to write (e.g. weights/promoter-arabidopsis)")
    parser.add_argument("--test", required=True, nargs="+", help="the test table(s) the card's metrics come from")
    parser.add_argument("--default-for", action="append", default=[], metavar="LABEL",
                        help="make it the default classifier of `mxdna predict LABEL`")
    parser.add_argument("--purpose", help="what the classifier is for (`mxdna info` shows it)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    source, dest = Path(args.source), Path(args.dest)
    model, info = load_model(source)
    extra = {**info.extra, "labels": info.labels}
    if args.default_for:
        extra[DEFAULT_FOR] = sorted(set(extra.get(DEFAULT_FOR, [])) | set(args.default_for))
    if args.purpose:
        extra["purpose"] = args.purpose
    dest.mkdir(parents=True, exist_ok=True)
    save_model(model, dest, half=True, extra=extra)
    if (source / "training_log.tsv").is_file():
        shutil.copyfile(source / "training_log.tsv", dest / "training_log.tsv")
    card_text = (source / "README.md").read_text() if (source / "README.md").is_file() else ""
    (dest / "README.md").write_text(card_text.replace(f"# {source.name}:", f"# {dest.name}:", 1))

    half_model, _ = load_model(dest)
    strand = info.extra.get("eval_strand", "forward")
    rows = []
    for path in args.test:
        table = read_table(path)
        y = [info.labels.index(label) for label in table.labels]
        original = evaluate_classifier(model.eval(), table.sequences, y, strand=strand)
        stored = evaluate_classifier(half_model.eval(), table.sequences, y, strand=strand)
        cells = " | ".join(f"{original[m]:.4f} → {stored[m]:.4f}" for m in METRICS)
        rows.append(f"| `{path}` | {len(y)} | {cells} |")
        print(f"{path}: " + ", ".join(f"{m} {stored[m]:.4f}" for m in METRICS), flush=True)
    note = (f"\n## Stored weights on the test split(s)\n\nStored as float16 (loaded as float32); each "
            f"metric as float32 source → float16 stored, strand `{strand}`:\n\n"
            f"| test table | n | {' | '.join(METRICS)} |\n|---|---|{'---|' * len(METRICS)}\n"
            + "\n".join(rows) + "\n")
    with open(dest / "README.md", "a") as card:
        card.write(note)
    print(f"{dest}: card updated")
    for label in args.default_for:
        unmark_other_defaults(dest, label)
    return 0


def unmark_other_defaults(dest: Path, label: str) -> None:
    """Take `label` off the `default_for` list of every model folder beside `dest` (its model.json
    rewritten whole by `weights.write_card`; the weights and their SHA-256 are untouched)."""
    for card in sorted(dest.resolve().parent.glob(f"*/{CARD_FILE}")):
        if card.parent == dest.resolve():
            continue
        fields = json.loads(card.read_text())
        marks = fields.get("extra", {}).get(DEFAULT_FOR, [])
        if label in marks:
            fields["extra"][DEFAULT_FOR] = [m for m in marks if m != label]
            write_card(card.parent, fields)
            print(f"{card.parent}: no longer the default for {label}")


if __name__ == "__main__":
    raise SystemExit(main())
