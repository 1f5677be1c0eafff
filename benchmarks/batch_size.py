#!/usr/bin/env python
"""The bundled model's forward over the same 16 windows in batches of 1 to 16: nt/s by batch size.

Run: python benchmarks/batch_size.py [--threads 2] [--windows 1024 512] [--repeats 3]
On a CPU the rate peaks at a few thousand positions a batch and falls beyond (activations leave
the caches), which is what the engine's `--batch-tokens` default should follow; see
docs/benchmarks.md. Prints the best of the repeats per batch size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import best_seconds, dna_ids  # noqa: E402

from mxdna_cli.model.mxdna import pad_batch  # noqa: E402
from mxdna_cli.runtime import load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", nargs="+", type=int, default=[1024, 512])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model = load("mxdna-small", device="cpu").module.eval()
    count = max(args.batches)
    print("| window | batch | positions a batch | nt/s (best of repeats) |\n|---|---|---|---|")
    for window in args.windows:
        windows = [w[: window - 2] for w in dna_ids(count * window, window)]
        for batch in args.batches:
            batches = [pad_batch(windows[i:i + batch], device) for i in range(0, count, batch)]
            with torch.inference_mode():
                best = best_seconds(device, lambda: [model(ids, mask) for ids, mask in batches], args.repeats)
            print(f"| {window:,} | {batch} | {batch * window:,} | {count * window / best:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
