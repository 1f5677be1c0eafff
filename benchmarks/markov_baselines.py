"""Markov-chain baselines (order 0..8) for masked-nucleotide prediction on the held-out sequences.

Fits the chains on all pretraining genomes minus the held-out sequences (HELDOUT_SEQUENCES:
D. melanogaster chr4 and H. pylori Puno120), both strands, add-0.5 smoothing, then scores:

  * "whole": a seeded 15% of the A/C/G/T positions of each whole held-out sequence, each
    predicted from both flanks (contexts stop only at N);
  * "windows": the MxDNA validation protocol: `fixed_validation_windows(held-out, --window)`
    masked by `mask_tokens` with torch.Generator().manual_seed(--seed); contexts stop at the
    window edges, exactly the positions a model evaluated the same way is scored on.

Usage (single thread, a few minutes):
    OMP_NUM_THREADS=1 python benchmarks/markov_baselines.py [--data /work/shared/data/pretrain]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import numpy as np
import torch

from mxdna_cli.train.baselines import (
    evaluate_baseline,
    evaluate_masked_windows,
    fit_markov,
    sample_positions,
)
from mxdna_cli.train.data import (
    find_fasta_files,
    fixed_validation_windows,
    load_genomes,
    mask_tokens,
    split_heldout,
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["/work/shared/data/pretrain"])
    ap.add_argument("--max-k", type=int, default=8)
    ap.add_argument("--mask-prob", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--window", type=int, default=1024)
    args = ap.parse_args()
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    files = find_fasta_files(args.data)
    genomes = load_genomes(files)
    train, held = split_heldout(genomes, strict=True)
    t_load = time.perf_counter() - t0
    print(f"loaded {len(files)} files, {len(genomes)} records, {genomes.total_length / 1e6:.1f} Mb "
          f"in {t_load:.1f} s; peak RSS {rss_mb():.0f} MB")
    print(f"train: {len(train)} records {train.total_length / 1e6:.1f} Mb; held out: "
          + ", ".join(f"{Path(r.file).name}:{r.name} ({len(r) / 1e6:.2f} Mb)" for r in held))

    t0 = time.perf_counter()
    full = fit_markov(train, args.max_k)
    t_fit = time.perf_counter() - t0
    print(f"counted all 1..{args.max_k + 1}-mers (both strands) in {t_fit:.1f} s; peak RSS {rss_mb():.0f} MB")

    positions = sample_positions(held, args.mask_prob, seed=args.seed)
    windows = fixed_validation_windows(held, args.window)
    inp, labels = mask_tokens(torch.from_numpy(windows), torch.Generator().manual_seed(args.seed),
                              mask_prob=args.mask_prob)
    n_whole = sum(len(p) for p in positions)
    n_win = int((labels != -100).sum())
    short = [Path(r.file).name.split("_")[0] for r in held]
    print(f"whole: {n_whole} masked positions; windows: {len(windows)} x {args.window} nt, {n_win} masked positions\n")

    head = (["k", "acc_whole", "CE_whole"] + [f"acc_{s}" for s in short]
            + ["acc_windows", "CE_windows", "eval_s"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for k in range(args.max_k + 1):
        model = full.restrict(k)
        t0 = time.perf_counter()
        acc, ce = evaluate_baseline(model, held, positions)
        per = [evaluate_baseline(model, [r], [p])[0] for r, p in zip(held, positions)]
        acc_w, ce_w = evaluate_masked_windows(model, [(inp, labels)])
        dt = time.perf_counter() - t0
        row = [str(k), f"{acc:.4f}", f"{ce:.4f}"] + [f"{a:.4f}" for a in per] + [f"{acc_w:.4f}", f"{ce_w:.4f}", f"{dt:.1f}"]
        print("| " + " | ".join(row) + " |", flush=True)
    print(f"\nuniform guess: acc 0.25, CE {np.log(4):.4f} nats; peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
