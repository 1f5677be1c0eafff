"""Model-card numbers for a pretrained masked-LM model: held-out accuracy next to count baselines,
and the length distribution of the learnt basic units per species.

Usage:
    python scripts/pretrain_report.py weights/mxdna-small [--data ../shared/data/pretrain]
        [--window 510] [--max-windows 0] [--threads 2] [--png docs/unit_lengths.png] [--no-baselines]

Scores the model and the unigram / k-th order Markov baselines (k = 1..8, fitted on the same
training genomes, both flanks) on exactly the same masked positions of the held-out sequences
(D. melanogaster chr4, H. pylori Puno120): non-overlapping windows, BERT masking seeded 1234,
the same batches as `mxdna evaluate`. Prints markdown tables. The baselines depend only on the
data and the masking seed, not on the model: `--no-baselines` skips their count pass (minutes) when
only a new model is to be scored.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from mxdna_cli.model.mxdna import pad_batch
from mxdna_cli.model.selection import unit_spans
from mxdna_cli.train.baselines import evaluate_masked_windows, fit_markov
from mxdna_cli.train.data import (
    WindowSampler,
    find_fasta_files,
    fixed_validation_windows,
    load_genomes,
    split_heldout,
)
from mxdna_cli.train.pretrain import evaluate_masked_lm, masked_batches
from mxdna_cli.weights import load_model

EVAL_SEED = 1234
EVAL_BATCH = 16
SPECIES_FOLDERS = ("arabidopsis", "bacteria", "drosophila", "yeast", "human")


@torch.no_grad()
def unit_lengths(model, windows: np.ndarray, batch_size: int = 8) -> Counter:
    counts: Counter = Counter()
    kernels = model.config.expert_kernel_sizes
    for start in range(0, len(windows), batch_size):
        ids, mask = pad_batch([w.astype(np.uint8) for w in windows[start : start + batch_size]])
        out = model.model(ids, mask)
        _, _, lengths, _ = unit_spans(out.tokenization.center_expert, kernels)
        counts.update(lengths.tolist())
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--data", default="../shared/data/pretrain")
    ap.add_argument("--window", type=int, default=510)
    ap.add_argument("--max-windows", type=int, default=0, help="0 = every held-out window")
    ap.add_argument("--species-windows", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--png", default="docs/unit_lengths.png")
    ap.add_argument("--no-baselines", action="store_true", help="score the model only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, info = load_model(args.model)
    genomes = load_genomes(find_fasta_files([args.data]))
    train, held = split_heldout(genomes, strict=True)
    windows = fixed_validation_windows(held, args.window)
    if args.max_windows and len(windows) > args.max_windows:
        windows = windows[np.linspace(0, len(windows) - 1, args.max_windows).round().astype(int)]

    started = time.time()
    result = evaluate_masked_lm(model, windows, seed=EVAL_SEED, batch_size=EVAL_BATCH)
    print(f"held-out: {len(held)} sequences, {len(windows)} windows of {args.window} nt, "
          f"{result['masked']} masked positions ({time.time() - started:.0f} s)\n")
    print("| model | masked-nucleotide accuracy | cross-entropy (nats) |")
    print("|---|---|---|")
    print(f"| MxDNA `{info.name}` | {result['accuracy']:.4f} | {result['loss']:.4f} |")
    if not args.no_baselines:
        largest = fit_markov(train, 8)  # one count pass; lower orders are restrictions of it
        for k in range(0, 9):
            accuracy, entropy = evaluate_masked_windows(
                largest.restrict(k), masked_batches(windows, seed=EVAL_SEED, batch_size=EVAL_BATCH)
            )
            name = "unigram" if k == 0 else f"Markov k={k}"
            print(f"| {name} | {accuracy:.4f} | {entropy:.4f} |")

    print("\nLearnt basic-unit lengths per species (random windows, seeded):\n")
    per_species = {}
    for folder in SPECIES_FOLDERS:
        files = [f for f in find_fasta_files([args.data]) if f.parent.name == folder]
        species_train, _ = split_heldout(load_genomes(files))
        sample = WindowSampler(species_train, args.window, seed=7, reverse_complement_p=0.0).next_batch(args.species_windows)
        per_species[folder] = unit_lengths(model, sample)
    lengths = sorted({k for c in per_species.values() for k in c})
    print("| species | units | mean length | " + " | ".join(f"{k} nt" for k in lengths) + " |")
    print("|---" * (len(lengths) + 3) + "|")
    for folder, counts in per_species.items():
        total = sum(counts.values())
        mean = sum(k * v for k, v in counts.items()) / total
        print(f"| {folder} | {total} | {mean:.2f} | " + " | ".join(f"{counts[k] / total:.1%}" for k in lengths) + " |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(per_species)
    for i, (folder, counts) in enumerate(per_species.items()):
        total = sum(counts.values())
        ax.bar([k + (i - len(per_species) / 2) * width for k in lengths], [counts[k] / total for k in lengths], width, label=folder)
    ax.set_xlabel("basic-unit length (nt)")
    ax.set_ylabel("share of units")
    ax.set_xticks(lengths)
    ax.set_title(f"Learnt basic units of {info.name}, by species")
    ax.legend()
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=120)
    print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
