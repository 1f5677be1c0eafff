#!/usr/bin/env python
"""FLOPs per kb of mxdna and its peers, counted by torch's bare FlopCounterMode and by
`peers.flop_counter` (which also counts attention on the CPU; see its docstring).

Run: python benchmarks/count_flops.py [--threads 1]
Same inputs as the models table of benchmarks/run.py (batches of 8 x 1 kb of the same seeded DNA);
counting runs each forward once (no timing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
from run import dna_ids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", nargs="+", default=["small", "base"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, batch, window = torch.device("cpu"), 8, 1024
    genome = dna_ids(batch * window, window)
    print("| model | size | GFLOP per kb, bare counter | with CPU attention counted | ratio |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        for bench in peers.benches(size, batch, window, device, genome, compiled=False):
            with torch.inference_mode(), FlopCounterMode(display=False) as bare:
                bench.forward()
            counted = peers.count_flops(bench.forward)
            per_kb = 1000 / bench.nucleotides / 1e9
            print(f"| {bench.name} | {size} | {bare.get_total_flops() * per_kb:.2f} | {counted * per_kb:.2f} | "
                  f"{counted / bare.get_total_flops():.3f} |", flush=True)


if __name__ == "__main__":
    main()
